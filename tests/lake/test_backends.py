"""The two Spark backends (lake.spark_backend) on one table: delta-spark reads what delta-rs wrote and back."""

from collections import Counter

import pytest

from lake import Lake
from tests.conftest import BACKENDS
from tests.lake.test_spark_io import spark_events

pytestmark = pytest.mark.spark


def test_tables_round_trip_between_backends(config, spark):
    """Commits alternate between the backends on one table; each backend reads, lists and time-travels
    every version the other wrote, and both see one contiguous history."""
    from delta.tables import DeltaTable

    lakes = [Lake.from_config(config.with_overrides({"lake": {"spark_backend": backend}}), spark=spark)
             for backend in BACKENDS]
    writes = [("2017-11-25", 4), ("2017-11-26", 3), ("2017-11-25", 2), ("2017-11-26", 1)]
    expected: dict[int, dict[str, int]] = {}
    current: dict[str, int] = {}
    for turn, (ds, rows) in enumerate(writes):
        version = lakes[turn % 2].write("events", spark_events(spark, ds, rows, partitions=2), partition=ds)
        current[ds] = rows
        expected[version] = dict(current)

    for lake in lakes:
        assert lake.partitions("events") == ["2017-11-25", "2017-11-26"]
        for version, counts in expected.items():
            by_ds = Counter(row.ds for row in lake.read_spark("events", version=version).select("ds").collect())
            assert by_ds == counts, (lake.settings.spark_backend, version)
            assert lake.read("events", version=version).num_rows == sum(counts.values())
    delta_rs_versions = sorted(h["version"] for h in lakes[0].history("events"))
    jvm_versions = sorted(r["version"] for r in DeltaTable.forPath(spark, lakes[0].uri("events")).history().collect())
    assert delta_rs_versions == jvm_versions == list(range(len(writes) + 1))  # CREATE TABLE, then one per write
