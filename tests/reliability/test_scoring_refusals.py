"""Scoring a day with a missing model, a model whose vocabulary does not match, or an unknown version is
refused with a clear error before anything is written: the recommendations already there and the published
table read exactly as before. The unit-level refusals, and scoring over a vocabulary that grew after
training, are in tests/scoring/test_score.py and test_model.py; these run on the real pipeline's lake and
model.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pyarrow as pa
import pytest

from lake import Config, Lake, ModelNotFoundError
from scoring.score import score
from tests.pipeline import DS_B, Pipeline
from tests.reliability.harness import snapshot

pytestmark = [pytest.mark.spark, pytest.mark.slow]
OUTPUTS = ["recommendations", "recommendations_latest"]


def no_model_registered(config: Config, lake: Lake, tmp_path: Path) -> tuple[Config, str | None]:
    return config.with_overrides({"lake": {"mlflow_tracking_uri": f"sqlite:///{tmp_path / 'empty.db'}",
                                           "mlflow_artifact_root": str(tmp_path / "empty-artifacts")}}), None


def vocabulary_reindexed(config: Config, lake: Lake, tmp_path: Path) -> tuple[Config, str | None]:
    vocab = lake.read("item_vocab").sort_by("item_index").to_pydict()
    vocab["item_id"][0], vocab["item_id"][1] = vocab["item_id"][1], vocab["item_id"][0]
    lake.write("item_vocab", pa.table(vocab, schema=lake.read("item_vocab").schema), mode="overwrite")
    return config, None


def unknown_version(config: Config, lake: Lake, tmp_path: Path) -> tuple[Config, str | None]:
    return config, "99"


@pytest.mark.parametrize(("damage", "message"), [
    (no_model_registered, "no model was champion or approved on 2017-11-30"),
    (vocabulary_reindexed, "trained on a different item vocabulary"),
    (unknown_version, "no registered model with version 99"),
])
def test_a_refused_score_leaves_the_previous_recommendations_untouched(
    pipeline: Pipeline, spark, tmp_path: Path,
    damage: Callable[[Config, Lake, Path], tuple[Config, str | None]], message: str,
):
    config = pipeline.clone("final", tmp_path)
    lake = Lake.from_config(config)
    before = snapshot(lake, OUTPUTS)
    config, version = damage(config, lake, tmp_path)

    with pytest.raises(ModelNotFoundError, match=message):
        score(config, DS_B, spark=spark, model_version=version)

    assert snapshot(lake, OUTPUTS) == before

