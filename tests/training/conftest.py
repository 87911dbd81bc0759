"""Tiny, learnable training data: vocabularies and train_examples written through the lake, as featurize would.

Users walk a ring of items (the next item is usually the one after), so a model that learns anything ranks
the held-out item far above chance.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pytest

from lake import Config, Lake
from lake.schemas import spec
from training.settings import TrainSettings

DS = "2017-12-03"
DAY_NUMBER = 17503  # DS in days since 1970-01-01
FIRST_ITEM = 2


@dataclass(frozen=True)
class TinyData:
    ds: str
    users: int
    items: int  # real items; the vocabulary size is items + 2
    categories: int

    @property
    def item_vocab_size(self) -> int:
        return self.items + FIRST_ITEM


def walk(rng: np.random.Generator, length: int, items: int) -> list[int]:
    """Item indexes of one user: mostly the next item on the ring, sometimes a jump."""
    steps = [int(rng.integers(0, items))]
    for _ in range(length - 1):
        steps.append((steps[-1] + 1) % items if rng.random() < 0.85 else int(rng.integers(0, items)))
    return [s + FIRST_ITEM for s in steps]


def write_tiny_lake(lake: Lake, *, ds: str = DS, users: int = 48, items: int = 30, categories: int = 5,
                    seed: int = 0, lengths: tuple[int, int] = (5, 14)) -> TinyData:
    """Write item_vocab, category_vocab and one ds of train_examples (a train and a valid row per user)."""
    rng = np.random.default_rng(seed)
    lake.write("item_vocab", pa.table({
        "item_id": pa.array([1000 + i for i in range(items)], pa.int64()),
        "item_index": pa.array([FIRST_ITEM + i for i in range(items)], pa.int32()),
        "first_seen_ds": [ds] * items,
    }), mode="overwrite")
    lake.write("category_vocab", pa.table({
        "category_id": pa.array([500 + c for c in range(categories)], pa.int64()),
        "category_index": pa.array([FIRST_ITEM + c for c in range(categories)], pa.int32()),
        "first_seen_ds": [ds] * categories,
    }), mode="overwrite")
    rows = []
    for user in range(users):
        sequence = walk(rng, int(rng.integers(*lengths)), items)
        behaviours = rng.integers(1, 6, len(sequence)).tolist()
        categories_of = [FIRST_ITEM + (item % categories) for item in sequence]
        gaps = rng.integers(1, 12, len(sequence)).tolist()
        train_inputs = slice(0, len(sequence) - 2)
        valid_inputs = slice(0, len(sequence) - 1)
        for split, inputs, targets in (
            ("train", train_inputs, sequence[1:-1]),
            ("valid", valid_inputs, [0] * (len(sequence) - 2) + [sequence[-1]]),
        ):
            rows.append({"user_id": 7 * user + 3, "split": split, "items": sequence[inputs],
                         "behaviours": behaviours[inputs], "categories": categories_of[inputs],
                         "gap_buckets": gaps[inputs], "days": [DAY_NUMBER] * len(sequence[inputs]),
                         "targets": targets,
                         "target_behaviours": [b if t else 0 for t, b in zip(targets, behaviours[1:], strict=False)],
                         "ds": ds})
    lake.write("train_examples", pa.Table.from_pylist(rows, schema=spec("train_examples").schema), partition=ds)
    return TinyData(ds, users, items, categories)


def tiny_config(config: Config, **train: object) -> Config:
    """Settings small enough for a test: a few epochs of a small model, one thread."""
    defaults = {"hidden_size": 16, "num_heads": 2, "inner_size": 32, "num_layers": 1, "max_len": 16,
                "epochs": 3, "batch_size": 16, "learning_rate": 0.005, "dropout": 0.1, "torch_threads": 1,
                "max_gap_bucket": 16}
    return config.with_overrides({"train": {**defaults, **train}})


@pytest.fixture
def tiny_data(lake: Lake) -> TinyData:
    return write_tiny_lake(lake)


@pytest.fixture
def settings(config: Config) -> TrainSettings:
    return TrainSettings.from_config(tiny_config(config))
