"""The item-vocabulary fingerprint: sha256 of "index:item;" per pair in index order, computed a slice at a time."""

import hashlib

import numpy as np
import pyarrow as pa
import pytest

from lake import vocab
from lake.vocab import size_of, vocab_fingerprint


def text_fingerprint(pairs: list[tuple[int, int]], size: int) -> str:
    """The definition, written out: the pairs below ``size`` in index order as text."""
    return hashlib.sha256("".join(f"{index}:{item};" for index, item in sorted(pairs) if index < size).encode()
                          ).hexdigest()


@pytest.mark.parametrize("slice_rows", [1, 7, 1 << 20])
def test_fingerprint_is_the_digest_of_the_pairs_text_whatever_the_slice(monkeypatch, slice_rows: int):
    rng = np.random.default_rng(3)
    indexes = rng.permutation(500) + 2
    items = rng.choice(10**12, 500, replace=False)
    # two chunks and a shuffled order: the fingerprint sorts by index and crosses chunk boundaries
    table = pa.concat_tables([
        pa.table({"item_id": pa.array(items[:200]), "item_index": pa.array(indexes[:200], pa.int32())}),
        pa.table({"item_id": pa.array(items[200:]), "item_index": pa.array(indexes[200:], pa.int32())}),
    ])
    monkeypatch.setattr(vocab, "FINGERPRINT_SLICE_ROWS", slice_rows)
    pairs = list(zip(indexes.tolist(), items.tolist(), strict=True))
    for size in (2, 3, 100, size_of(table.column("item_index")), 10_000):
        assert vocab_fingerprint(table, size) == text_fingerprint(pairs, size)
    # the prefix property a model relies on: appending items leaves an earlier size's fingerprint alone
    longer = pa.concat_tables([table, pa.table({"item_id": pa.array([5]), "item_index": pa.array([502], pa.int32())})])
    assert vocab_fingerprint(longer, 502) == vocab_fingerprint(table, 502)
    assert vocab_fingerprint(longer, 503) != vocab_fingerprint(table, 503)
