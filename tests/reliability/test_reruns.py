"""Reruns: the same ds run three times, and a 7-day backfill run twice, give identical table content (sorted
rows compared value by value) and exactly one partition per ds. Ingest alone, then the whole daily chain:
ingest + featurize over the backfill, and featurize + score + publish of one ds on the pipeline's lake.

Columns stamped with the run's own clock are left out of the comparison: ingest_stats.ingested_at and
recommendations(_latest).generated_at. Everything else must match exactly.
"""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path

import pytest

from featurization.featurize import featurize
from featurization.ingest import ingest
from lake import Config, Lake
from lake.schemas import spec
from scoring.publish import publish
from scoring.score import score
from tests.conftest import TAOBAO_SAMPLE
from tests.pipeline import DS_A, DS_B, FEATURIZE_TABLES, Pipeline
from tests.reliability.harness import sorted_rows

pytestmark = [pytest.mark.spark, pytest.mark.slow]
NOW = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
BACKFILL = [(dt.date(2017, 11, 25) + dt.timedelta(days=d)).isoformat() for d in range(4)]
INGEST_TABLES = ["events", "events_quarantine", "ingest_stats"]
RUN_CLOCK = ("ingested_at", "generated_at")


def content(lake: Lake, names: list[str]) -> dict[str, list]:
    return {name: sorted_rows(lake, name, drop=tuple(c for c in RUN_CLOCK if c in lake.read(name).schema.names))
            for name in names if lake.exists(name)}


def days_with_rows(rows: list[dict]) -> list[str]:
    """A partition holds at least one row, so a ds with none (no abnormal users that day) has none."""
    return sorted({row["ds"] for row in rows})


def dirty_sample(tmp_path: Path) -> str:
    """The shipped sample plus rows ingest quarantines, so events_quarantine has content to compare."""
    source = tmp_path / "sample.csv"
    shutil.copy(TAOBAO_SAMPLE, source)
    with source.open("a") as out:
        out.write("1,2268318,2520377,teleport,1511544070\nx,2268318,2520377,pv,1511544070\n1,2,3\n")
    return str(source)


def test_the_same_ds_ingested_three_times_is_identical(config: Config, spark, tmp_path: Path):
    source = dirty_sample(tmp_path)
    lake = Lake.from_config(config)
    seen = []
    for run in range(3):
        ingest(config, BACKFILL[2], source, spark=spark, now=NOW + dt.timedelta(hours=run))
        seen.append(content(lake, INGEST_TABLES))
        assert lake.partitions("ingest_stats") == [BACKFILL[2]]
        # the sample spans many days: each row is in its own day's partition, under the one drop
        assert lake.partitions("events") == days_with_rows(seen[0]["events"])
        assert len(lake.partitions("events_quarantine")) == 1
    assert seen[0] == seen[1] == seen[2]
    assert len(seen[0]["ingest_stats"]) == 1 and len(seen[0]["events_quarantine"]) == 3 and seen[0]["events"]


def test_featurize_score_and_publish_of_the_same_ds_three_times_are_identical(pipeline: Pipeline, spark,
                                                                             tmp_path: Path):
    """The pipeline ran DS_B once; two more runs on a copy of its lake must change nothing."""
    config = pipeline.clone("final", tmp_path)
    lake = Lake.from_config(config)
    tables = [*FEATURIZE_TABLES, "recommendations", "recommendations_latest"]
    first = content(pipeline.lake("final"), tables)
    for run in (1, 2):
        featurize(config, DS_B, spark=spark)
        score(config, DS_B, spark=spark, now=NOW + dt.timedelta(hours=run))
        publish(config, DS_B, spark=spark)
        assert content(lake, tables) == first, f"rerun {run}"
        for name in tables:
            if spec(name).partition_by:
                assert lake.partitions(name) == days_with_rows(first[name]), name
    assert {r["ds"] for r in first["recommendations_latest"]} == {DS_B}
    for name in ("user_sequences", "train_examples", "featurize_stats", "recommendations"):
        assert days_with_rows(first[name]) == [DS_A, DS_B], name


def test_a_four_day_ingest_and_featurize_backfill_run_twice_is_identical(config: Config, spark, tmp_path: Path):
    source = dirty_sample(tmp_path)
    # the sample's settings (scripts/sample_config.yaml): items seen twice survive k-core
    config = config.with_overrides({"featurize": {"kcore_item_min_events": 2}})
    lake = Lake.from_config(config)
    tables = [*INGEST_TABLES, *FEATURIZE_TABLES]
    for ds in BACKFILL:
        ingest(config, ds, source, spark=spark, now=NOW)
        featurize(config, ds, spark=spark)
    first = content(lake, tables)
    versions = {name: lake.version(name) for name in INGEST_TABLES}
    for ds in BACKFILL:
        ingest(config, ds, source, spark=spark, now=NOW + dt.timedelta(days=1))
        featurize(config, ds, spark=spark)

    assert content(lake, tables) == first
    for name in ["events", "ingest_stats", *(n for n in FEATURIZE_TABLES if spec(n).partition_by)]:
        assert lake.partitions(name) == days_with_rows(first[name]), name
    for name in ["ingest_stats", "user_sequences", "train_examples", "featurize_stats"]:
        assert days_with_rows(first[name]) == BACKFILL, name
    assert len(first["events_quarantine"]) == 3, "the drop's bad rows once, not once per day's run"
    for name in INGEST_TABLES:
        assert lake.version(name) == versions[name] + len(BACKFILL), "one commit per rerun ds"
    accepted = {r["ds"]: r["accepted"] for r in first["ingest_stats"]}
    assert sorted(accepted) == BACKFILL
    assert {ds: sum(e["ds"] == ds for e in first["events"]) for ds in BACKFILL} == accepted
    assert len({r["item_index"] for r in first["item_vocab"]}) == len(first["item_vocab"]), "no index twice"
