"""The held-out rows of one split of one ds, streamed from the ``train_examples`` snapshot in batches.

A batch keeps the lake's indexes (a model clips them to its own vocabulary when it builds its inputs), so
the champion and a candidate with different vocabularies rank the very same rows. Memory is one batch.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from lake import InputError, Lake
from lake.sequences import FIRST_ITEM_INDEX, INPUT_COLUMNS
from lake.user_sample import in_user_sample

__all__ = ["HeldOut", "heldout_batches", "split_rows", "training_popularity"]

_COLUMNS = ["user_id", *INPUT_COLUMNS, "days", "targets", "target_behaviours"]


@dataclass(frozen=True)
class HeldOut:
    """Held-out rows: each row's inputs (oldest first) and the one item that followed them."""

    user_ids: np.ndarray  # [B] int64
    inputs: dict[str, pa.Array]  # INPUT_COLUMNS -> [B] lists, oldest first
    targets: np.ndarray  # [B] item index of the held-out item (lake vocabulary)
    target_behaviours: np.ndarray  # [B] its behaviour index
    lengths: np.ndarray  # [B] inputs in the row
    repeat: np.ndarray  # [B] bool: the held-out item is among the row's inputs (seen before)
    input_rows: np.ndarray  # [P] row of every input step
    input_items: np.ndarray  # [P] its item index
    input_behaviours: np.ndarray  # [P] its behaviour index
    input_days: np.ndarray  # [P] its local day, days since 1970-01-01
    last_days: np.ndarray  # [B] the day of each row's most recent input

    def __len__(self) -> int:
        return len(self.user_ids)


def _flat(lists: pa.Array) -> np.ndarray:
    return np.asarray(pc.list_flatten(lists).to_numpy(zero_copy_only=False), dtype=np.int64)


def _ends(lists: pa.Array) -> np.ndarray:
    """Each list's end in the flattened values (``_flat``), whatever the array's slice offset."""
    offsets = np.asarray(lists.offsets, dtype=np.int64)
    return offsets[1:] - offsets[0]


def _heldout(batch: pa.RecordBatch) -> tuple[HeldOut | None, int]:
    """A batch of split rows -> (the rows with a real held-out item, how many rows had none)."""
    ends = _ends(batch.column("targets"))
    flat_targets = _flat(batch.column("targets"))
    flat_behaviours = _flat(batch.column("target_behaviours"))
    nonempty = np.diff(np.concatenate([[0], ends])) > 0
    last = np.where(nonempty, ends - 1, 0)
    targets = np.where(nonempty, flat_targets[last] if flat_targets.size else 0, 0)
    keep = targets >= FIRST_ITEM_INDEX
    skipped = int((~keep).sum())
    if not keep.any():
        return None, skipped
    if not keep.all():
        batch = batch.filter(pa.array(keep))
    behaviours = np.where(nonempty, flat_behaviours[last] if flat_behaviours.size else 0, 0)[keep]
    targets = targets[keep]
    user_ids = np.asarray(batch.column("user_id").to_numpy(), dtype=np.int64)
    if len(np.unique(user_ids)) != len(user_ids):
        raise InputError("train_examples holds several rows of one split for one user; featurization must "
                         "write one held-out row per user and split (rerun `seqrec featurize`)")
    items = batch.column("items")
    lengths = np.asarray(pc.fill_null(pc.list_value_length(items), 0).to_numpy(), dtype=np.int64)
    rows = np.repeat(np.arange(len(lengths)), lengths)
    input_items = _flat(items)
    input_days = _flat(batch.column("days"))
    repeat = np.zeros(len(lengths), dtype=bool)
    repeat[rows[input_items == targets[rows]]] = True
    last_days = np.full(len(lengths), np.iinfo(np.int64).min, dtype=np.int64)
    np.maximum.at(last_days, rows, input_days)
    return HeldOut(
        user_ids=user_ids, inputs={name: batch.column(name) for name in INPUT_COLUMNS}, targets=targets,
        target_behaviours=behaviours, lengths=lengths, repeat=repeat, input_rows=rows, input_items=input_items,
        input_behaviours=_flat(batch.column("behaviours")), input_days=input_days, last_days=last_days,
    ), skipped


def split_rows(lake: Lake, ds: str, split: str, *, version: int | None = None) -> int:
    """How many ``split`` rows partition ds of ``train_examples`` holds (one per user), counted in a stream."""
    return sum(batch.num_rows for batch in lake.read_batches(
        "train_examples", version=version, partition=ds, columns=["user_id"], equal={"split": split},
        batch_rows=65_536))


def heldout_batches(lake: Lake, ds: str, split: str, *, version: int | None = None, batch_rows: int = 512,
                    skipped: list[int] | None = None, user_share: float = 1.0, seed: int = 0) -> Iterator[HeldOut]:
    """Stream the ``split`` rows of ``train_examples`` partition ds (at ``version``) in batches.

    Args:
        skipped: when given, one count is appended per batch: its rows whose held-out item is padding or
            unknown (nothing to rank; featurization writes none, so this stays 0 on a healthy lake).
        user_share: below 1, only the users ``in_user_sample`` picks (with ``seed``) are read on.
    """
    for batch in lake.read_batches("train_examples", version=version, partition=ds, columns=_COLUMNS,
                                   equal={"split": split}, batch_rows=batch_rows):
        if user_share < 1.0:
            batch = batch.filter(pa.array(in_user_sample(batch.column("user_id").to_numpy(), user_share, seed)))
            if not batch.num_rows:
                continue
        rows, dropped = _heldout(batch)
        if skipped is not None:
            skipped.append(dropped)
        if rows is not None:
            yield rows


def training_popularity(lake: Lake, ds: str, size: int, *, version: int | None = None) -> np.ndarray:
    """``[size]`` training interactions per item index: each train row's inputs plus its last target (the
    user's training sequence), counted in one streamed pass. Indexes beyond ``size`` are left out."""
    counts = np.zeros(size, dtype=np.int64)
    for batch in lake.read_batches("train_examples", version=version, partition=ds, columns=["items", "targets"],
                                   equal={"split": "train"}, batch_rows=8192):
        ends = _ends(batch.column("targets"))
        flat_targets = _flat(batch.column("targets"))
        last = flat_targets[ends[np.diff(np.concatenate([[0], ends])) > 0] - 1] if flat_targets.size else []
        items = np.concatenate([_flat(batch.column("items")), np.asarray(last, dtype=np.int64)])
        items = items[(items >= 0) & (items < size)]
        counts += np.bincount(items, minlength=size)
    return counts
