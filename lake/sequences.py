"""The sequence-input contract every stage that feeds a model shares: the columns, left padding, and how
indexes the model has never seen are mapped.

A sequence is oldest first; models take the most recent ``max_len`` steps right-aligned, with
``PAD_INDEX`` before them. Vocabularies only grow (lake/vocab.py), so an index at or beyond a model's
vocabulary size belongs to an item (or category) added after the model was trained: the model sees it as
``UNKNOWN_INDEX``.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from lake.schemas import PAD_INDEX, UNKNOWN_INDEX

__all__ = ["FIRST_ITEM_INDEX", "INPUT_COLUMNS", "as_unknown_beyond", "has_known_item", "left_pad"]

# The per-step list columns of user_sequences and train_examples, in the order models take them.
INPUT_COLUMNS: tuple[str, ...] = ("items", "behaviours", "categories", "gap_buckets")
# The first index that is a real item (0 pads, 1 is unknown).
FIRST_ITEM_INDEX = UNKNOWN_INDEX + 1


def left_pad(lists: pa.Array | pa.ChunkedArray, max_len: int) -> np.ndarray:
    """Variable-length lists (oldest first; null = empty) -> int64 ``[B, max_len]``, the last ``max_len``
    values of each list right-aligned and ``PAD_INDEX`` before them."""
    if isinstance(lists, pa.ChunkedArray):
        lists = lists.combine_chunks() if lists.num_chunks != 1 else lists.chunk(0)
    lengths = pc.fill_null(pc.list_value_length(lists), 0).to_numpy().astype(np.int64)  # [B]
    values = pc.list_flatten(lists).to_numpy(zero_copy_only=False).astype(np.int64)
    out = np.full((len(lengths), max_len), PAD_INDEX, dtype=np.int64)
    kept = np.minimum(lengths, max_len)
    total = int(kept.sum())
    if total == 0:
        return out
    rows = np.repeat(np.arange(len(lengths)), kept)
    offset_in_row = np.arange(total) - np.repeat(np.cumsum(kept) - kept, kept)
    first_kept = np.cumsum(lengths) - kept  # where each row's kept tail starts in ``values``
    source = np.repeat(first_kept, kept) + offset_in_row
    out[rows, max_len - np.repeat(kept, kept) + offset_in_row] = values[source]
    return out


def as_unknown_beyond(indexes: np.ndarray, vocab_size: int) -> np.ndarray:
    """``indexes`` with every index ``>= vocab_size`` (newer than the model) set to ``UNKNOWN_INDEX``, in place."""
    indexes[indexes >= vocab_size] = UNKNOWN_INDEX
    return indexes


def has_known_item(items: np.ndarray) -> np.ndarray:
    """``[B]`` bool: the row of padded item indexes ``[B, L]`` holds at least one item the model knows.
    A row without one is served the popularity fallback."""
    return (items >= FIRST_ITEM_INDEX).any(axis=1)
