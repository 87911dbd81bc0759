"""Vocabularies: their size (the one definition every stage uses), and which item-index mapping a model was
trained on, checked again at scoring time."""

from __future__ import annotations

import hashlib

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from lake.tables import Lake

__all__ = ["item_vocab_fingerprint", "size_of", "vocab_fingerprint", "vocab_size"]

INDEX_COLUMNS = {"item_vocab": "item_index", "category_vocab": "category_index"}
FINGERPRINT_SLICE_ROWS = 1 << 20


def size_of(indexes: pa.Array | pa.ChunkedArray) -> int:
    """A vocabulary's size from its dense indexes: the largest + 1 (2 when empty: padding and unknown only)."""
    return (pc.max(indexes).as_py() or 1) + 1


def vocab_size(lake: Lake, name: str, *, version: int | None = None) -> int:
    """The size of vocabulary table ``name`` (``item_vocab`` or ``category_vocab``) at ``version``."""
    return size_of(lake.read(name, version=version, columns=[INDEX_COLUMNS[name]]).column(0))


def vocab_fingerprint(vocab: pa.Table, size: int) -> str:
    """sha256 over the (item_index, item_id) pairs with index < ``size``, in index order.

    Vocabularies are append-only, so a later vocabulary keeps an earlier one's fingerprint for the same
    ``size``: a model stays valid while that prefix is unchanged.
    """
    prefix = vocab.filter(pc.less(vocab.column("item_index"), size)).sort_by("item_index")
    digest = hashlib.sha256()
    # The digest of the text "index:item;" per pair, built a slice at a time in Arrow (a string array's data
    # buffer is its values back to back), so memory stays flat however large the catalogue.
    for start in range(0, prefix.num_rows, FINGERPRINT_SLICE_ROWS):
        part = prefix.slice(start, FINGERPRINT_SLICE_ROWS)
        pairs = pc.binary_join_element_wise(
            pc.cast(part.column("item_index"), pa.string()), pc.cast(part.column("item_id"), pa.string()), ":")
        text = pc.binary_join_element_wise(pairs, "", ";").combine_chunks()
        _, offsets, values = text.buffers()
        first, last = np.frombuffer(offsets, np.int32, count=len(text) + 1, offset=4 * text.offset)[[0, -1]]
        digest.update(memoryview(values)[first:last])
    return digest.hexdigest()


def item_vocab_fingerprint(lake: Lake, *, size: int | None = None, version: int | None = None) -> tuple[int, str]:
    """(size, fingerprint) of the ``item_vocab`` table; size = max index + 1 unless given."""
    vocab = lake.read("item_vocab", version=version, columns=["item_id", "item_index"])
    if size is None:
        size = size_of(vocab.column("item_index"))
    return size, vocab_fingerprint(vocab, size)
