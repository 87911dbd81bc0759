"""A tiny world with a hand-checkable top-N: 6 items on a plane, a sum-of-embeddings encoder, a few users.

Item index i (2..7) is item id 100 + i. Item embeddings E (H = 2) and the encoder's user vector
u = sum of E[item] over the sequence, so a user who saw only item i ranks items by E[i] . E[j]:

    index  2: ( 1.0,  0.0)   3: ( 0.9,  0.1)   4: ( 0.5,  0.5)
           5: ( 0.1,  0.9)   6: ( 0.0,  1.0)   7: (-1.0, -0.2)

Index 8 (item 108) joined the vocabulary after training: the model (V = 8) does not know it.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pyarrow as pa
import pytest

from lake import Config, Lake, load_config
from lake.artifacts import META, digests, save
from lake.registry import ModelCard
from lake.schemas import BEHAVIOUR_INDEX, spec
from lake.vocab import vocab_fingerprint
from scoring.model import ShippedModel

DS = "2017-12-03"
MODEL_VOCAB_SIZE = 8
MAX_LEN = 4
EMBEDDINGS = [[0.0, 0.0], [0.0, 0.0], [1.0, 0.0], [0.9, 0.1], [0.5, 0.5], [0.1, 0.9], [0.0, 1.0], [-1.0, -0.2]]
VOCAB = {"item_id": [100 + i for i in range(2, 9)], "item_index": list(range(2, 9))}
CATEGORY_OF_INDEX = {2: 2, 3: 2, 4: 3, 5: 3, 6: 4, 7: 4, 8: 4}


def item_id(index: int) -> int:
    return 100 + index


def vocab_table() -> pa.Table:
    return pa.table({**VOCAB, "first_seen_ds": ["2017-11-25"] * len(VOCAB["item_id"])})


def build_model_dir(folder: Path, embeddings: list[list[float]] = EMBEDDINGS) -> dict:
    """A model folder (lake.artifacts): sum of item embeddings over the sequence; returns the meta."""
    import torch

    class SumOfItems(torch.nn.Module):
        def __init__(self, table: torch.Tensor) -> None:
            super().__init__()
            self.items = torch.nn.Embedding.from_pretrained(table)

        def forward(self, items, behaviours, categories, gap_buckets):  # [B, L] each -> [B, H]
            return self.items(items).sum(dim=1)

    table = torch.tensor(embeddings, dtype=torch.float32)
    example = tuple(torch.zeros(2, MAX_LEN, dtype=torch.int64) + k for k in range(4))  # distinct tensors
    batch = torch.export.Dim("batch")
    program = torch.export.export(SumOfItems(table), example, dynamic_shapes=({0: batch},) * 4)
    save(folder, program, table, {"items.weight": table})
    return {"model_type": "sum_of_items", "max_len": MAX_LEN, "item_vocab_size": MODEL_VOCAB_SIZE,
            "vocab_fingerprint": vocab_fingerprint(vocab_table(), MODEL_VOCAB_SIZE), "trained_ds": "2017-12-02"}


def local_model(folder: Path) -> ShippedModel:
    """The tiny model in a local folder, without a registry or Spark (for executor-side unit tests)."""
    meta = build_model_dir(folder)
    (folder / META).write_text(json.dumps(meta))
    card = ModelCard(name="seqrec", version="1", run_id="", meta=meta,
                     tags={"seqrec.sha256": json.dumps(digests(folder))})
    return ShippedModel(card, prefix="", folder=str(folder))


def register_model(config: Config, folder: Path, *, champion: bool = True) -> str:
    import mlflow

    from lake.registry import approve, experiment_id, promote, register, tracking

    meta = build_model_dir(folder)
    with tracking(config):
        run = mlflow.MlflowClient().create_run(experiment_id(config))
    card = register(config, folder, meta, run_id=run.info.run_id)
    if champion:
        approve(config, card.version, meta["trained_ds"])
        promote(config, card.version)
    return card.version


@pytest.fixture(scope="session")
def registry_config(tmp_path_factory: pytest.TempPathFactory) -> Config:
    """An MLflow registry holding the tiny model as version 1, promoted to champion (built once)."""
    root = tmp_path_factory.mktemp("scoring-registry")
    config = load_config(environ={}).with_overrides({"lake": {
        "mlflow_tracking_uri": f"sqlite:///{root / 'mlflow.db'}",
        "mlflow_artifact_root": str(root / "mlflow-artifacts"),
    }})
    register_model(config, root / "model")
    return config


@pytest.fixture
def scoring_config(registry_config: Config, tmp_path: Path, spark_backend: str) -> Config:
    """A fresh lake root per test over the shared registry; Spark as in tests/conftest.py; N = 3."""
    return registry_config.with_overrides({
        "lake": {"root": str(tmp_path / "lake"), "reports_dir": str(tmp_path / "reports"),
                 "spark_backend": spark_backend},
        "spark": {"master": "local[1]", "conf": {"spark.sql.shuffle.partitions": "2"}},
        "serve": {"top_n": 3}, "score": {"partitions": 2},
    })


T = dt.datetime(2017, 12, 3, 4, tzinfo=dt.UTC)


def event(user: int, index: int, behaviour: str = "click", ds: str = DS) -> dict:
    return {"user_id": user, "item_id": item_id(index), "category_id": 7, "behaviour": behaviour,
            "event_time": T, "source_file": "test.csv", "drop_id": "test", "ds": ds}


def write_events(lake: Lake, rows: list[dict]) -> None:
    by_ds: dict[str, list[dict]] = {}
    for row in rows:
        by_ds.setdefault(row["ds"], []).append(row)
    for ds, day in by_ds.items():
        lake.write("events", pa.Table.from_pylist(day, schema=spec("events").schema), partition=ds)


def sequence(user: int, indexes: list[int], ds: str = DS) -> dict:
    return {"user_id": user, "items": indexes, "behaviours": [BEHAVIOUR_INDEX["click"]] * len(indexes),
            "categories": [CATEGORY_OF_INDEX.get(i, 1) for i in indexes], "gap_buckets": [1] * len(indexes),
            "length": len(indexes), "truncated": 0, "last_event_time": T, "ds": ds}


def write_sequences(lake: Lake, rows: list[dict], ds: str = DS) -> None:
    rows = [{**row, "ds": ds} for row in rows]
    lake.write("user_sequences", pa.Table.from_pylist(rows, schema=spec("user_sequences").schema), partition=ds)


# The standard world (30-day activity window, 7-day popularity window, purchases excluded). Popularity
# (events in the window, model items only): 107: 5, 106: 4, 105: 3, 102: 2, 103: 1, 104: 0.
#   10 saw 103, 102            u = (1.9, 0.1)  -> model: 102 (1.9), 103 (1.72), 104 (1.0), 105 (0.28), ...
#   11 saw 105, 106, bought 105 u = (0.1, 1.9) -> model: 106 (1.9), 104 (1.0), 103 (0.28), 102 (0.1), ...
#   12 no sequence                              -> popular: 107, 106, 105, 102, 103
#   13 saw only 108 (unknown to the model), bought 107 -> popular: 106, 105, 102, 103
#   14 saw 103, last active two months ago      -> not scored
STANDARD_EVENTS = [
    event(10, 3), event(10, 2), event(10, 2),
    event(11, 5), event(11, 5, "purchase"), event(11, 6),
    event(13, 8), event(13, 7, "purchase"),
    *[event(12, 7)] * 4, *[event(12, 6)] * 3, event(12, 5),
    event(14, 3, ds="2017-10-01"),
]
STANDARD_SEQUENCES = [sequence(10, [3, 2]), sequence(11, [5, 6]), sequence(13, [8]), sequence(14, [3])]
EXPECTED_TOP3 = {
    10: ("model", [(102, 1.9), (103, 1.72), (104, 1.0)]),
    11: ("model", [(106, 1.9), (104, 1.0), (103, 0.28)]),
    12: ("popular", [(107, 5.0), (106, 4.0), (105, 3.0)]),
    13: ("popular", [(106, 4.0), (105, 3.0), (102, 2.0)]),
}


def write_world(lake: Lake, *, events: list[dict] = STANDARD_EVENTS,
                sequences: list[dict] = STANDARD_SEQUENCES, deny: list[int] | None = None) -> None:
    lake.write("item_vocab", vocab_table(), mode="overwrite")
    lake.write("item_categories", pa.table({
        "item_index": list(CATEGORY_OF_INDEX), "category_index": list(CATEGORY_OF_INDEX.values()),
        "ds": [DS] * len(CATEGORY_OF_INDEX)}, schema=spec("item_categories").schema), partition=DS)
    write_events(lake, events)
    write_sequences(lake, sequences)
    if deny is not None:
        lake.write("deny_list", pa.table({"item_id": deny, "reason": ["test"] * len(deny)},
                                         schema=spec("deny_list").schema), mode="overwrite")
