"""Publishing: only a validated partition replaces recommendations_latest, in one commit; never an older day
or an unapproved model's output unless asked; and only then does an approved model become the champion."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest

from lake import Config, Lake, ValidationError
from lake.registry import CHAMPION, approve, champion_as_of, find
from lake.schemas import spec
from scoring.publish import publish
from scoring.score import score
from tests.scoring.conftest import DS, STANDARD_SEQUENCES, register_model, write_sequences, write_world

pytestmark = [pytest.mark.spark, pytest.mark.slow]


def test_publish_copies_the_validated_partition_whole(scoring_config: Config, spark):
    lake = Lake.from_config(scoring_config)
    write_world(lake, deny=[106])
    scored = score(scoring_config, DS, spark=spark)

    result = publish(scoring_config, DS, spark=spark)

    assert (result.rows, result.model_version, result.source_version) == (12, "1", scored.table_version)
    latest = lake.read("recommendations_latest").sort_by([("user_id", "ascending"), ("rank", "ascending")])
    partition = lake.read("recommendations", partition=DS).sort_by([("user_id", "ascending"), ("rank", "ascending")])
    assert latest.equals(partition.cast(latest.schema))
    assert result.table_version == lake.version("recommendations_latest")


def test_a_failing_partition_is_refused_and_latest_left_untouched(scoring_config: Config, spark):
    lake = Lake.from_config(scoring_config)
    write_world(lake)
    score(scoring_config, DS, spark=spark)
    publish(scoring_config, DS, spark=spark)
    latest_version = lake.version("recommendations_latest")
    latest = lake.read("recommendations_latest")
    # someone hand-edits the partition: user 11 now gets the item they bought, twice
    rows = lake.read("recommendations", partition=DS).to_pylist()
    for row in rows:
        if row["user_id"] == 11:
            row["item_id"] = 105
    lake.write("recommendations", pa.Table.from_pylist(rows, schema=spec("recommendations").schema), partition=DS)

    with pytest.raises(ValidationError, match="excluded for that user"):
        publish(scoring_config, DS, spark=spark)

    assert lake.version("recommendations_latest") == latest_version
    assert lake.read("recommendations_latest").equals(latest)


def test_publishing_a_ds_that_was_not_scored_is_refused(scoring_config: Config, spark):
    lake = Lake.from_config(scoring_config)
    write_world(lake)
    with pytest.raises(ValidationError, match="seqrec score --ds 2017-12-01"):
        publish(scoring_config, "2017-12-01", spark=spark)
    assert not lake.exists("recommendations_latest")


# -- publish only moves forward, and it is where an approved model becomes the champion -----------------
NEXT = "2017-12-04"


def test_publishing_an_older_ds_than_the_published_one_is_refused_unless_forced(scoring_config: Config, spark):
    lake = Lake.from_config(scoring_config)
    write_world(lake)
    write_sequences(lake, STANDARD_SEQUENCES, ds=NEXT)  # the next day: the same users, nothing new
    score(scoring_config, DS, spark=spark)
    score(scoring_config, NEXT, spark=spark)
    publish(scoring_config, NEXT, spark=spark)
    latest = lake.version("recommendations_latest")

    with pytest.raises(ValidationError, match=r"holds ds=2017-12-04, newer than ds=2017-12-03.*--force"):
        publish(scoring_config, DS, spark=spark)
    assert lake.version("recommendations_latest") == latest

    forced = publish(scoring_config, DS, spark=spark, force=True)
    assert set(lake.read("recommendations_latest")["ds"].to_pylist()) == {DS} and not forced.promoted


@pytest.fixture
def own_registry(scoring_config: Config, tmp_path: Path) -> Config:
    """A registry of this test's own (version 1 approved and champion; version 2 registered, not approved)."""
    config = scoring_config.with_overrides({"lake": {
        "mlflow_tracking_uri": f"sqlite:///{tmp_path / 'mlflow.db'}", "mlflow_artifact_root": str(tmp_path / "art")}})
    register_model(config, tmp_path / "model-1")
    register_model(config, tmp_path / "model-2", champion=False)
    return config


def _champion(config: Config) -> str:
    return find(config, alias=CHAMPION).version


def test_an_approved_model_becomes_champion_only_when_its_output_is_published(own_registry: Config, spark):
    config = own_registry
    lake = Lake.from_config(config)
    write_world(lake)

    score(config, DS, spark=spark, model_version="2")
    with pytest.raises(ValidationError, match="version 2, which is neither the champion nor approved"):
        publish(config, DS, spark=spark)
    assert _champion(config) == "1" and not lake.exists("recommendations_latest")

    approve(config, "2", DS)  # the gate said yes; publish has not run yet
    assert _champion(config) == "1"
    rows = lake.read("recommendations", partition=DS).to_pylist()
    for row in rows:
        if row["user_id"] == 11:
            row["item_id"] = 105  # an excluded item: validation fails
    lake.write("recommendations", pa.Table.from_pylist(rows, schema=spec("recommendations").schema), partition=DS)
    with pytest.raises(ValidationError, match="excluded for that user"):
        publish(config, DS, spark=spark)
    assert _champion(config) == "1" and not lake.exists("recommendations_latest") and not lake.exists("models")

    score(config, DS, spark=spark, model_version="2")
    result = publish(config, DS, spark=spark)
    assert result.promoted and _champion(config) == "2"
    assert find(config, version="2").champion_since_ds == DS
    assert champion_as_of(config, DS).version == "2" and champion_as_of(config, "2017-12-01") is None
    mirror = {row["model_version"]: (row["aliases"], row["approved"]) for row in lake.read("models").to_pylist()}
    assert mirror == {"1": ("", True), "2": ("champion", True)}
