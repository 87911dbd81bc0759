"""Reading train_examples with Petastorm: split selection, left padding, sharding and the empty-shard guard."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
import torch

from lake import EmptyInputError, InputError, Lake
from lake.schemas import spec
from lake.user_sample import in_user_sample
from tests.training.conftest import DS, TinyData, write_tiny_lake
from training.batch import SEQUENCE_COLUMNS
from training.data import ExampleSource, LengthBuckets, Shard, TrainExamples, batches, collate


def source_of(lake: Lake, max_len: int = 8) -> ExampleSource:
    return ExampleSource.from_lake(lake, DS, version=lake.version("train_examples"), max_len=max_len)


def rows_of(examples: TrainExamples) -> list[tuple[np.ndarray, ...]]:
    return list(examples)


def test_rows_are_one_split_cut_and_left_padded(lake: Lake, tiny_data: TinyData) -> None:
    source = source_of(lake, max_len=8)
    assert source.split_rows(lake) == {"train": tiny_data.users, "valid": tiny_data.users}
    stored = [r for r in lake.read("train_examples", partition=DS).to_pylist() if r["split"] == "valid"]
    expected = sorted(tuple(tuple(r[c][-8:]) for c in SEQUENCE_COLUMNS) for r in stored)
    rows = rows_of(TrainExamples(source, "valid"))
    unpadded = []
    for row in rows:
        items = row[0]
        assert all(c.dtype == np.int64 and c.shape == (8,) for c in row)
        real = int((items != 0).sum())
        assert not items[: 8 - real].any() and items[8 - real :].all()  # padding only on the left
        assert all(not c[: 8 - real].any() for c in row)
        targets = row[SEQUENCE_COLUMNS.index("targets")]
        assert targets[-1] >= 2 and not targets[:-1].any()  # valid: only the last position has a target
        unpadded.append(tuple(tuple(c[8 - real :].tolist()) for c in row))
    assert sorted(unpadded) == expected


def test_a_user_share_reads_only_the_users_the_shared_sample_picks(lake: Lake, tiny_data: TinyData) -> None:
    source = source_of(lake, max_len=8)
    stored = [r for r in lake.read("train_examples", partition=DS).to_pylist() if r["split"] == "valid"]
    picked = in_user_sample(np.array([r["user_id"] for r in stored], dtype=np.int64), 0.5, seed=3)
    expected = sorted(tuple(r["items"][-8:]) for r, keep in zip(stored, picked, strict=True) if keep)
    rows = rows_of(TrainExamples(source, "valid", user_share=0.5, user_seed=3))
    assert 0 < len(rows) == len(expected) < tiny_data.users
    assert sorted(tuple(int(i) for i in row[0] if i) for row in rows) == expected


@pytest.mark.parametrize("appends", [0, 3])
def test_two_shards_split_the_users_between_them(lake: Lake, appends: int) -> None:
    # appends > 0: several files, so row groups >= workers and petastorm shards by row group;
    # 0: one file, fewer row groups than workers, so the dataset shards by user
    data = write_tiny_lake(lake, users=30)
    stored = lake.read("train_examples", partition=DS)
    for extra in range(appends):
        more = stored.to_pylist()
        for row in more:
            row["user_id"] += 100_000 * (extra + 1)
        lake.write("train_examples", pa.Table.from_pylist(more, schema=spec("train_examples").schema), mode="append")
    source = source_of(lake)
    assert len(source.urls) == appends + 1
    shards = [rows_of(TrainExamples(source, "train", Shard(index, 2))) for index in range(2)]
    assert all(shards)
    seen = [sorted(tuple(r[0].tolist()) for r in shard) for shard in shards]
    everything = sorted(tuple(r[0].tolist()) for r in rows_of(TrainExamples(source, "train")))
    assert sorted(seen[0] + seen[1]) == everything
    assert len(everything) == data.users * (appends + 1)


def test_a_worker_without_rows_stops_with_a_clear_error(lake: Lake) -> None:
    write_tiny_lake(lake, users=1)
    source = source_of(lake)
    shards = [TrainExamples(source, "train", Shard(index, 2)) for index in range(2)]
    outcomes = []
    for examples in shards:
        try:
            outcomes.append(len(rows_of(examples)))
        except EmptyInputError as exc:
            assert "found no 'train' rows" in str(exc) and "--np" in str(exc)
            outcomes.append("empty")
    assert sorted(outcomes, key=str) == [1, "empty"]


def test_endless_stream_repeats_and_reshuffles(lake: Lake, tiny_data: TinyData) -> None:
    examples = TrainExamples(source_of(lake), "train", passes=None, shuffle=True, seed=5)
    stream = iter(examples)
    first = [tuple(next(stream)[0].tolist()) for _ in range(tiny_data.users)]
    second = [tuple(next(stream)[0].tolist()) for _ in range(tiny_data.users)]
    assert sorted(first) == sorted(second) and first != second


def test_process_reader_pool_reads_the_same_rows(lake: Lake, tiny_data: TinyData) -> None:
    dummy = source_of(lake)
    process = ExampleSource(**{**dummy.__dict__, "reader_pool": "process", "reader_workers": 1})
    assert sorted(tuple(r[0].tolist()) for r in rows_of(TrainExamples(process, "valid"))) == \
        sorted(tuple(r[0].tolist()) for r in rows_of(TrainExamples(dummy, "valid")))


def test_collate_drops_padding_shared_by_the_whole_batch() -> None:
    rows = [tuple(np.array(values, dtype=np.int64) for _ in SEQUENCE_COLUMNS)
            for values in ([0, 0, 0, 3, 4], [0, 0, 5, 6, 7])]
    batch = collate(rows)
    assert batch.items.tolist() == [[0, 3, 4], [5, 6, 7]]
    assert batch.targets.shape == (2, 3) and batch.items.dtype == torch.int64


def test_batches_refuse_items_beyond_the_vocabulary(lake: Lake, tiny_data: TinyData) -> None:
    examples = TrainExamples(source_of(lake), "train")
    assert sum(len(b) for b in batches(examples, 7, item_vocab_size=tiny_data.item_vocab_size)) == tiny_data.users
    with pytest.raises(InputError, match="rerun featurize"):
        list(batches(examples, 7, item_vocab_size=tiny_data.item_vocab_size - 3))


def test_length_buckets_batch_similar_lengths_and_keep_every_row() -> None:
    lengths = [1, 9, 2, 8, 3, 7, 4, 6, 5, 10, 2, 4]
    rows = [tuple(np.array([0] * (12 - n) + list(range(2, 2 + n))) for _ in range(2)) for n in lengths]
    grouped = list(LengthBuckets(rows, 2, pool=3, seed=0))  # pools of 6 rows, sorted, cut in pairs
    seen = sorted(int(np.count_nonzero(row[0])) for batch in grouped for row in batch)
    assert seen == sorted(lengths) and all(len(batch) == 2 for batch in grouped)
    pools = [sorted(lengths[:6]), sorted(lengths[6:])]
    for first, pool in ((grouped[:3], pools[0]), (grouped[3:], pools[1])):
        pairs = sorted(sorted(int(np.count_nonzero(row[0])) for row in batch) for batch in first)
        assert pairs == [pool[0:2], pool[2:4], pool[4:6]]  # neighbours in length share a batch
    again = list(LengthBuckets(rows, 2, pool=3, seed=0))
    assert [[r[0].tolist() for r in b] for b in again] == [[r[0].tolist() for r in b] for b in grouped]


def test_length_buckets_leave_less_padding_in_the_trainers_batches(lake: Lake, tiny_data: TinyData) -> None:
    source = source_of(lake, max_len=20)
    vocab = tiny_data.item_vocab_size
    plain = list(batches(TrainExamples(source, "train", shuffle=True, seed=3), 4, item_vocab_size=vocab))
    grouped = list(batches(TrainExamples(source, "train", shuffle=True, seed=3), 4, item_vocab_size=vocab,
                           length_buckets=8, seed=3))
    assert sum(len(b) for b in grouped) == sum(len(b) for b in plain)
    assert sum(b.items.numel() for b in grouped) < sum(b.items.numel() for b in plain)
