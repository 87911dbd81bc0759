"""The dense catalogue arrays: ids, categories, popularity and the never-recommended indexes."""

from __future__ import annotations

import pyarrow as pa

from lake.serving import build_catalogue


def test_catalogue_covers_the_model_vocabulary_only():
    vocab = pa.table({"item_id": [102, 103, 104, 105, 109], "item_index": [2, 3, 4, 5, 9]})
    catalogue = build_catalogue(
        vocab, 6,
        denied_item_ids=[104, 777],
        item_categories=pa.table({"item_index": [2, 3, 9], "category_index": [5, 6, 7]}),
        popularity=pa.table({"item_index": [3, 9], "events": [4, 8]}),
    )
    assert catalogue.size == 6
    assert catalogue.item_ids.tolist() == [-1, -1, 102, 103, 104, 105], "index 9 arrived after training"
    assert catalogue.categories.tolist() == [1, 1, 5, 6, 1, 1]
    assert catalogue.popularity.tolist() == [0, 0, 0, 4, 0, 0]
    assert catalogue.blocked.tolist() == [0, 1, 4], "padding, unknown and the denied item"


def test_holes_in_the_vocabulary_are_blocked():
    catalogue = build_catalogue(pa.table({"item_id": [102, 104], "item_index": [2, 4]}), 5)
    assert catalogue.blocked.tolist() == [0, 1, 3]
