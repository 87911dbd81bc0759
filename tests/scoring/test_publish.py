"""Publishing: only a validated partition replaces recommendations_latest, in one commit."""

from __future__ import annotations

import pyarrow as pa
import pytest

from lake import Config, Lake, ValidationError
from lake.schemas import spec
from scoring.publish import publish
from scoring.score import score
from tests.scoring.conftest import DS, write_world

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
