"""A small real pipeline (every stage on the shipped sample), built once per test session and saved after
each stage, for tests that need a real lake and a real model to start from (loaded by tests/conftest.py)."""

from __future__ import annotations

import datetime as dt
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest

from lake import Config, Lake

DS_A, DS_B = "2017-11-29", "2017-11-30"
NOW = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
FEATURIZE_TABLES = ["item_vocab", "category_vocab", "item_categories", "user_sequences", "train_examples",
                    "abnormal_users", "featurize_stats"]


@dataclass(frozen=True)
class Pipeline:
    """The shipped sample run through every stage, with the lake saved after each one.

    Stages, in order: ``featurized_a`` (DS_A and DS_B ingested, DS_A featurized), ``featurized_b``, a tiny
    SASRec trained on DS_A and promoted to champion (in the session's MLflow registry), ``published_a``
    (DS_A scored and published), ``scored_b`` (DS_B scored with the same model) and ``final`` (DS_B
    published). Tests work on copies: ``clone(stage, folder)``.
    """

    config: Config
    stages: dict[str, Path]
    model_version: str

    def clone(self, stage: str, folder: Path) -> Config:
        """A config whose lake is a copy of the lake after ``stage``; the MLflow registry is shared (read-only)."""
        shutil.copytree(self.stages[stage], folder / "lake")
        return self.config.with_overrides({"lake": {"root": str(folder / "lake"),
                                                    "reports_dir": str(folder / "reports")}})

    def lake(self, stage: str) -> Lake:
        return Lake.from_config(self.config.with_overrides({"lake": {"root": str(self.stages[stage])}}))


@pytest.fixture(scope="session")
def pipeline(tmp_path_factory: pytest.TempPathFactory, spark) -> Pipeline:
    from featurization.featurize import featurize
    from featurization.ingest import ingest
    from lake import registry
    from scoring.publish import publish
    from scoring.score import score
    from tests.conftest import TAOBAO_SAMPLE, _config_for
    from tests.training.conftest import tiny_config
    from training.launch import launch

    root = tmp_path_factory.mktemp("pipeline")
    config = tiny_config(_config_for(root), epochs=2).with_overrides({
        # the sample's settings (scripts/sample_config.yaml): items seen twice survive k-core
        "featurize": {"kcore_item_min_events": 2},
        "serve": {"top_n": 5}, "score": {"partitions": 2},
    })
    lake_root = Path(config.lake.root)
    stages: dict[str, Path] = {}

    def save(stage: str) -> None:
        stages[stage] = root / "stages" / stage
        shutil.copytree(lake_root, stages[stage])

    for ds in (DS_A, DS_B):
        ingest(config, ds, str(TAOBAO_SAMPLE), spark=spark, now=NOW)
    featurize(config, DS_A, spark=spark)
    save("featurized_a")
    featurize(config, DS_B, spark=spark)
    save("featurized_b")
    card = launch(config, DS_A)
    registry.promote(config, card.version)
    score(config, DS_A, spark=spark, now=NOW)
    publish(config, DS_A, spark=spark)
    save("published_a")
    score(config, DS_B, spark=spark, now=NOW)
    save("scored_b")
    publish(config, DS_B, spark=spark)
    save("final")
    return Pipeline(config, stages, card.version)
