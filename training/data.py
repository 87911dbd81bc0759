"""Training examples from the Delta snapshot's Parquet files, read by Petastorm into a torch DataLoader.

Each worker reads its own shard: Petastorm assigns whole row groups (``cur_shard`` / ``shard_count``).
When a snapshot has fewer row groups than workers (tiny data: one small file), some shard would be empty,
so every worker reads all row groups and keeps the users that hash to it instead (row-level sharding).
Either way a worker that finds no rows in a full pass raises instead of training on an empty epoch.

Petastorm's batch reader stacks list columns into matrices, so the reader's transform selects the split,
cuts each sequence to its most recent ``max_len`` steps and left-pads it to exactly ``max_len``; the
collate function then drops the columns that are padding in every row of a batch.
"""

from __future__ import annotations

import logging
import random
import warnings
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from itertools import count
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import torch
from petastorm import make_batch_reader
from petastorm.errors import NoDataAvailableError
from petastorm.transform import TransformSpec
from torch.utils.data import DataLoader, IterableDataset

from lake import EmptyInputError, InputError, Lake
from lake.schemas import PAD_INDEX
from lake.sequences import left_pad
from lake.storage import petastorm_filesystem
from lake.user_sample import in_user_sample
from training.batch import SEQUENCE_COLUMNS, Batch

__all__ = ["ExampleSource", "LengthBuckets", "Shard", "TrainExamples", "batches", "collate"]

log = logging.getLogger(__name__)
# petastorm 0.13 drives pyarrow 14's legacy ParquetDataset and warns, and logs at INFO, on every reader it opens
warnings.filterwarnings("ignore", category=FutureWarning, module=r"petastorm\.")
logging.getLogger("petastorm").setLevel(logging.WARNING)


@dataclass(frozen=True)
class ExampleSource:
    """Where one ds of ``train_examples`` lives (a pinned Delta version's files) and how to read it."""

    ds: str
    version: int
    urls: tuple[str, ...]
    max_len: int
    reader_pool: str = "dummy"
    reader_workers: int = 2
    storage_options: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_lake(cls, lake: Lake, ds: str, *, version: int, max_len: int, reader_pool: str = "dummy",
                  reader_workers: int = 2) -> ExampleSource:
        """The files of partition ``ds`` in version ``version`` of ``train_examples``."""
        # not Path.as_uri(): petastorm does not undo its percent-encoding of the '=' in ds=... folders
        urls = tuple(uri if "://" in uri else f"file://{Path(uri).absolute()}"
                     for uri in lake.file_uris("train_examples", version=version, partition=ds))
        return cls(ds=ds, version=version, urls=urls, max_len=max_len, reader_pool=reader_pool,
                   reader_workers=reader_workers, storage_options=lake.storage_options)

    def split_rows(self, lake: Lake) -> dict[str, int]:
        """Rows per split (train, valid, test) in this snapshot, counted in a stream (a day can hold millions)."""
        counts: Counter[str] = Counter()
        for batch in lake.read_batches("train_examples", version=self.version, partition=self.ds,
                                       columns=["split"], batch_rows=65_536):
            counts.update({entry["values"]: entry["counts"]
                           for entry in pc.value_counts(batch.column("split")).to_pylist()})
        return dict(counts)


@dataclass(frozen=True)
class Shard:
    """This worker's share of the data: shard ``index`` of ``count``."""

    index: int = 0
    count: int = 1


WHOLE = Shard()


class _SelectAndPad:
    """Petastorm transform (runs in the reader's workers, so it must pickle): one split, this worker's users
    when sharding by row, sequences cut and left-padded to ``max_len``."""

    def __init__(self, split: str, max_len: int, row_shard: Shard | None, user_share: float = 1.0,
                 user_seed: int = 0) -> None:
        self.split = split
        self.max_len = max_len
        self.row_shard = row_shard
        self.user_share = user_share
        self.user_seed = user_seed

    def __call__(self, frame: pd.DataFrame) -> pd.DataFrame:
        keep = (frame["split"] == self.split).to_numpy()
        if self.row_shard is not None:
            keep &= user_shard(frame["user_id"].to_numpy(), self.row_shard.count) == self.row_shard.index
        keep &= frame["items"].map(len).to_numpy() > 0
        if self.user_share < 1.0:
            keep &= in_user_sample(frame["user_id"].to_numpy(), self.user_share, self.user_seed)
        chosen = frame[keep]
        return pd.DataFrame({column: list(left_pad(pa.array(chosen[column].tolist(), pa.list_(pa.int64())),
                                                   self.max_len))
                             for column in SEQUENCE_COLUMNS})


def user_shard(user_ids: np.ndarray, shard_count: int) -> np.ndarray:
    """A stable shard per user id (Fibonacci hashing spreads consecutive ids)."""
    mixed = (user_ids.astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15)) >> np.uint64(32)
    return (mixed % np.uint64(shard_count)).astype(np.int64)


class TrainExamples(IterableDataset):
    """One split's rows for this worker as ``max_len`` int64 arrays, one tuple per sequence.

    Args:
        source: the pinned snapshot.
        split: ``train``, ``valid`` or ``test``.
        shard: this worker's shard.
        passes: full passes over the shard; ``None`` repeats forever (the trainer takes a fixed number of
            steps per epoch, so every worker steps in lockstep whatever its shard's size).
        shuffle: shuffle row groups and rows, with a new seed per pass.
        seed: the first pass's seed; identical on every worker so row-group shards stay disjoint.
        user_share: below 1, only the users ``lake.user_sample.in_user_sample`` picks with ``user_seed``.
    """

    def __init__(self, source: ExampleSource, split: str, shard: Shard = WHOLE, *, passes: int | None = 1,
                 shuffle: bool = False, seed: int = 0, user_share: float = 1.0, user_seed: int = 0) -> None:
        super().__init__()
        self.user_share = user_share
        self.user_seed = user_seed
        self.source = source
        self.split = split
        self.shard = shard
        self.passes = passes
        self.shuffle = shuffle
        self.seed = seed
        self._row_sharding: bool | None = None if shard.count > 1 else False

    def __iter__(self) -> Iterator[tuple[np.ndarray, ...]]:
        for run in range(self.passes) if self.passes is not None else count():
            rows = 0
            reader = self._open_reader(self.seed + run)
            try:
                for columns in reader:
                    matrix = [getattr(columns, name) for name in SEQUENCE_COLUMNS]
                    for row in range(len(matrix[0])):
                        rows += 1
                        yield tuple(values[row] for values in matrix)
            finally:
                # not `with reader`: its exit prints to stdout, where the job's last line must be model_version
                reader.stop()
                reader.join()
            if rows == 0 and (self.split == "train" or self.passes is None):
                raise EmptyInputError(
                    f"worker {self.shard.index} of {self.shard.count} found no '{self.split}' rows in "
                    f"train_examples ds={self.source.ds} (version {self.source.version}); run featurize for this "
                    f"ds, or use fewer workers (--np) than there are users"
                )

    def _open_reader(self, seed: int) -> Any:
        if self._row_sharding is None:
            try:
                reader = self._reader(seed, row_sharding=False)
                self._row_sharding = False
                return reader
            except NoDataAvailableError:
                log.info("train_examples has fewer row groups than the %d workers: sharding by user instead",
                         self.shard.count)
                self._row_sharding = True
        return self._reader(seed, row_sharding=self._row_sharding)

    def _reader(self, seed: int, *, row_sharding: bool) -> Any:
        source = self.source
        transform = TransformSpec(
            _SelectAndPad(self.split, source.max_len, self.shard if row_sharding else None, self.user_share,
                          self.user_seed),
            edit_fields=[(name, np.int64, (source.max_len,), False) for name in SEQUENCE_COLUMNS],
            selected_fields=list(SEQUENCE_COLUMNS),
        )
        by_row_group = self.shard.count > 1 and not row_sharding
        return make_batch_reader(
            list(source.urls),
            schema_fields=["user_id", "split", *SEQUENCE_COLUMNS],
            reader_pool_type=source.reader_pool,
            workers_count=source.reader_workers,
            num_epochs=1,
            shuffle_row_groups=self.shuffle,
            shuffle_rows=self.shuffle,
            seed=seed,
            cur_shard=self.shard.index if by_row_group else None,
            shard_count=self.shard.count if by_row_group else None,
            transform_spec=transform,
            filesystem=petastorm_filesystem(source.urls[0], source.storage_options),
        )


Row = tuple[np.ndarray, ...]


class LengthBuckets(IterableDataset):
    """Batches of rows of similar length: ``pool`` batches' worth of rows at a time, sorted by length, cut
    into batches that are yielded in a shuffled order (so an epoch does not run from short to long).

    Args:
        rows: the shuffled rows (a TrainExamples).
        batch_size: rows per batch.
        pool: batches drawn together; 1 = no grouping.
        seed: seeds the order the batches of each pool are yielded in.
    """

    def __init__(self, rows: Iterable[Row], batch_size: int, *, pool: int, seed: int) -> None:
        super().__init__()
        self.rows = rows
        self.batch_size = batch_size
        self.pool = pool
        self.seed = seed

    def __iter__(self) -> Iterator[list[Row]]:
        order = random.Random(self.seed)
        pooled: list[Row] = []
        for row in self.rows:
            pooled.append(row)
            if len(pooled) == self.batch_size * self.pool:
                yield from self._cut(pooled, order)
                pooled = []
        yield from self._cut(pooled, order)

    def _cut(self, pooled: list[Row], order: random.Random) -> list[list[Row]]:
        pooled.sort(key=lambda row: int(np.count_nonzero(row[0])))  # column 0: items, PAD_INDEX = 0
        cut = [pooled[start:start + self.batch_size] for start in range(0, len(pooled), self.batch_size)]
        order.shuffle(cut)
        return cut


def collate(rows: list[Row]) -> Batch:
    """Stack left-padded rows into a Batch, dropping leading columns that are padding in every row.

    Positions count from the most recent step, so dropping shared padding changes no score; it saves the
    work of attending over it when a batch's sequences are all shorter than ``max_len``.
    """
    columns = [torch.from_numpy(np.stack(values)) for values in zip(*rows, strict=True)]  # each [B, L]
    occupied = (columns[0] != PAD_INDEX).any(dim=0)  # [L]
    first = int(occupied.nonzero()[0]) if bool(occupied.any()) else columns[0].shape[1] - 1
    return Batch(*(column[:, first:] for column in columns))


def batches(dataset: TrainExamples, batch_size: int, *, item_vocab_size: int, length_buckets: int = 1,
            seed: int = 0) -> Iterator[Batch]:
    """Batches from a torch DataLoader over ``dataset``, checked against the model's item vocabulary;
    ``length_buckets`` > 1 groups rows of similar length (``LengthBuckets``, seeded by ``seed``)."""
    if length_buckets > 1:
        grouped = LengthBuckets(dataset, batch_size, pool=length_buckets, seed=seed)
        loader = DataLoader(grouped, batch_size=None, collate_fn=collate)
    else:
        loader = DataLoader(dataset, batch_size=batch_size, collate_fn=collate)
    for batch in loader:
        largest = max(int(batch.items.max()), int(batch.targets.max()))
        if largest >= item_vocab_size:
            raise InputError(
                f"train_examples ds={dataset.source.ds} holds item index {largest} but item_vocab "
                f"has {item_vocab_size} indexes; rerun featurize so examples and vocabulary agree"
            )
        yield batch
