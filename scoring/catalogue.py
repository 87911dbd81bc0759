"""The recommendable catalogue as dense arrays indexed by item index, built on the driver and broadcast.

Only indexes below the model's ``item_vocab_size`` exist for scoring: items added to the vocabulary after
training have no embedding, so they are never recommended (not even by the popularity fallback).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from lake.schemas import PAD_INDEX, UNKNOWN_INDEX

__all__ = ["Catalogue", "build_catalogue"]


@dataclass(frozen=True)
class Catalogue:
    """Per item index ``< size``: its item id, category and popularity, and the indexes never recommended."""

    item_ids: np.ndarray  # [V] int64; -1 where the vocabulary has no item at that index
    categories: np.ndarray  # [V] int32; UNKNOWN_INDEX where the category is not known
    popularity: np.ndarray  # [V] float32; events in the popularity window
    blocked: np.ndarray  # [K] int64 indexes: padding, unknown, holes, deny-listed

    @property
    def size(self) -> int:
        return len(self.item_ids)


def build_catalogue(
    vocab: pa.Table,
    size: int,
    *,
    denied_item_ids: Iterable[int] = (),
    item_categories: pa.Table | None = None,
    popularity: pa.Table | None = None,
) -> Catalogue:
    """Dense arrays over item indexes ``0..size-1``.

    Args:
        vocab: ``item_vocab`` rows (item_id, item_index).
        size: the model's item vocabulary size V.
        denied_item_ids: item ids never to recommend (the deny list).
        item_categories: (item_index, category_index) rows; None when no category cap is applied.
        popularity: (item_index, events) rows counted over the popularity window.
    """
    item_ids = np.full(size, -1, dtype=np.int64)
    indexes = vocab.column("item_index").to_numpy().astype(np.int64)
    known = indexes < size
    item_ids[indexes[known]] = vocab.column("item_id").to_numpy()[known]

    categories = np.full(size, UNKNOWN_INDEX, dtype=np.int32)
    if item_categories is not None and item_categories.num_rows:
        cat_items = item_categories.column("item_index").to_numpy().astype(np.int64)
        cat_known = cat_items < size
        categories[cat_items[cat_known]] = item_categories.column("category_index").to_numpy()[cat_known]

    counts = np.zeros(size, dtype=np.float32)
    if popularity is not None and popularity.num_rows:
        pop_items = popularity.column("item_index").to_numpy().astype(np.int64)
        pop_known = pop_items < size
        counts[pop_items[pop_known]] = popularity.column("events").to_numpy()[pop_known]

    blocked = item_ids < 0
    blocked[[i for i in (PAD_INDEX, UNKNOWN_INDEX) if i < size]] = True
    denied = pa.array(list(denied_item_ids), type=pa.int64())
    if len(denied):
        blocked |= pc.is_in(pa.array(item_ids), value_set=denied).to_numpy(zero_copy_only=False)
    return Catalogue(item_ids, categories, counts, np.flatnonzero(blocked).astype(np.int64))
