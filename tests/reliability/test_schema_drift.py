"""Schema drift in the raw source (a renamed, new, dropped or retyped column): the run stops with a message
saying what changed, and no table is modified (versions and rows as before). Reordered CSV columns are read by
name."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from featurization.ingest import ingest
from lake import Config, InputError, Lake
from tests.conftest import _config_for
from tests.reliability.harness import snapshot, write_lines

pytestmark = pytest.mark.spark
NOW = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
DAY1, DAY2 = 1511575200, 1511661600  # 2017-11-25 and 2017-11-26, 10:00 Asia/Shanghai
INGEST_TABLES = ["events", "events_quarantine", "ingest_stats"]
HEADER = "user_id,item_id,category_id,behaviour,event_time"
GENERIC = {"ingest": {"format": "generic"}}


@pytest.fixture(scope="module")
def settled(tmp_path_factory: pytest.TempPathFactory, spark) -> tuple[Config, dict]:
    """A lake where 2017-11-25 was ingested, and the snapshot of its ingest tables."""
    root = tmp_path_factory.mktemp("drift")
    # one bad row of three: above the quarantine guard rail, which is not what these tests are about
    config = _config_for(root).with_overrides({"ingest": {"max_quarantined_share": 1.0}})
    source = write_lines(root / "day1.csv", [f"1,100,7,pv,{DAY1}", f"2,101,7,buy,{DAY1}", "3,x,7,pv,1"])
    ingest(config, "2017-11-25", source, spark=spark, now=NOW)
    return config, snapshot(Lake.from_config(config), INGEST_TABLES)


def assert_untouched(config: Config, before: dict) -> None:
    assert snapshot(Lake.from_config(config), INGEST_TABLES) == before


def refused(config: Config, source: str, spark) -> str:
    with pytest.raises(InputError) as caught:
        ingest(config, "2017-11-26", source, spark=spark, now=NOW)
    return str(caught.value)


@pytest.mark.parametrize(("rows", "example"), [
    ([f"{u},100,7,pv,{DAY2},0.99" for u in range(4)], f"0,100,7,pv,{DAY2},0.99"),   # a price column appended
    ([f"{u},100,pv,{DAY2}" for u in range(4)], f"0,100,pv,{DAY2}"),                  # the category column dropped
])
def test_taobao_column_added_or_dropped_stops_the_run(settled, spark, tmp_path: Path, rows, example: str):
    config, before = settled
    # one well-formed row does not make a changed file pass
    message = refused(config, write_lines(tmp_path / "day2.csv", [f"9,100,7,pv,{DAY2}", *rows]), spark)
    assert message.startswith(f"{(tmp_path / 'day2.csv').as_uri()}: 4 of 5 rows have a different number of fields")
    assert f"(e.g. {example!r})" in message
    assert "layout changed" in message
    assert_untouched(config, before)


def test_generic_csv_renamed_column_is_named_old_and_new(settled, spark, tmp_path: Path):
    config, before = settled
    source = write_lines(tmp_path / "day2.csv", ["user_id,sku,category_id,behaviour,event_time",
                                                 f"1,100,7,pv,{DAY2}"])
    message = refused(config.with_overrides(GENERIC), source, spark)
    assert message.startswith(f"{source}: column(s) ['item_id'] named in ingest.columns are missing and ['sku'] "
                              f"are new (renamed?)")
    assert_untouched(config, before)


def test_generic_csv_new_column_is_named(settled, spark, tmp_path: Path):
    config, before = settled
    source = write_lines(tmp_path / "day2.csv", [f"{HEADER},coupon", f"1,100,7,pv,{DAY2},X1"])
    message = refused(config.with_overrides(GENERIC), source, spark)
    assert message.startswith(f"{source}: unexpected column(s) ['coupon'] beside")
    assert_untouched(config, before)


def test_generic_csv_file_with_reordered_columns_is_read_by_name(settled, spark, tmp_path: Path):
    config, _ = settled
    folder = tmp_path / "day2"
    folder.mkdir()
    write_lines(folder / "a.csv", [HEADER, f"1,100,7,pv,{DAY2}"])
    write_lines(folder / "b.csv", ["item_id,user_id,category_id,behaviour,event_time", f"100,2,7,pv,{DAY2}"])
    lake_config = config.with_overrides({**GENERIC, "lake": {"root": str(tmp_path / "lake")}})
    ingest(lake_config, "2017-11-26", str(folder), spark=spark, now=NOW)
    rows = Lake.from_config(lake_config).read("events").to_pylist()
    assert sorted((r["user_id"], r["item_id"]) for r in rows) == [(1, 100), (2, 100)]


def _parquet(path: Path, **columns) -> None:
    data = {"user_id": [1], "item_id": [100], "category_id": [7], "behaviour": ["pv"], "event_time": [DAY2]}
    data.update(columns)
    pq.write_table(pa.table(data), path)


def test_parquet_file_with_a_renamed_column_is_named(settled, spark, tmp_path: Path):
    config, before = settled
    folder = tmp_path / "day2"
    folder.mkdir()
    _parquet(folder / "a.parquet")
    pq.write_table(pq.read_table(folder / "a.parquet").rename_columns(
        ["uid", "item_id", "category_id", "behaviour", "event_time"]), folder / "b.parquet")
    message = refused(config.with_overrides(GENERIC), str(folder), spark)
    assert message.startswith(f"{folder / 'b.parquet'}: column(s) ['user_id'] named in ingest.columns are missing "
                              f"and ['uid'] are new (renamed?)")
    assert_untouched(config, before)


def test_parquet_file_with_a_retyped_column_is_named(settled, spark, tmp_path: Path):
    config, before = settled
    folder = tmp_path / "day2"
    folder.mkdir()
    _parquet(folder / "a.parquet")
    _parquet(folder / "b.parquet", user_id=["1"])
    message = refused(config.with_overrides(GENERIC), str(folder), spark)
    assert message.startswith(f"{folder / 'b.parquet'}: column types differ from {folder / 'a.parquet'}'s: "
                              f"{{'user_id': 'int64 -> string'}}")
    assert_untouched(config, before)
