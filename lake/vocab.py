"""Vocabularies: their size (the one definition every stage uses), and which item-index mapping a model was
trained on, checked again at scoring time."""

from __future__ import annotations

import hashlib

import pyarrow as pa
import pyarrow.compute as pc

from lake.tables import Lake

__all__ = ["item_vocab_fingerprint", "size_of", "vocab_fingerprint", "vocab_size"]

INDEX_COLUMNS = {"item_vocab": "item_index", "category_vocab": "category_index"}


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
    for index, item in zip(prefix.column("item_index").to_pylist(), prefix.column("item_id").to_pylist(), strict=True):
        digest.update(f"{index}:{item};".encode())
    return digest.hexdigest()


def item_vocab_fingerprint(lake: Lake, *, size: int | None = None, version: int | None = None) -> tuple[int, str]:
    """(size, fingerprint) of the ``item_vocab`` table; size = max index + 1 unless given."""
    vocab = lake.read("item_vocab", version=version, columns=["item_id", "item_index"])
    if size is None:
        size = size_of(vocab.column("item_index"))
    return size, vocab_fingerprint(vocab, size)
