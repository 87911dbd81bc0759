"""Ingest: accepted + other-day + quarantined = input, with a reason for every refused row."""

import datetime as dt
from pathlib import Path

import pytest

from featurization.ingest import ingest
from lake import Config, EmptyInputError, InputError, Lake
from tests.conftest import TAOBAO_SAMPLE

pytestmark = [pytest.mark.spark, pytest.mark.both_backends]
NOW = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
# 2017-11-25 10:00 and 2017-11-26 10:00 in Asia/Shanghai (the default business time zone)
DAY1, DAY2 = 1511575200, 1511661600


def write_csv(path: Path, lines: list[str]) -> str:
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def test_every_row_is_accepted_other_day_or_quarantined_with_a_reason(config: Config, spark, tmp_path: Path):
    source = write_csv(tmp_path / "drop.csv", [
        f"1,100,7,pv,{DAY1}",
        f"1,101,7,buy,{DAY1 + 60}",
        f"2,100,7,cart,{DAY1 + 120}",
        f"2,100,7,cart,{DAY1 + 120}",         # exact duplicate: kept here, removed by featurize
        f"3,102,8,fav,{DAY2}",                # another day: counted, not quarantined
        f",100,7,pv,{DAY1}",                  # null user
        f"x9,100,7,pv,{DAY1}",                # non-integer user
        f"4,100,7,teleport,{DAY1}",           # unknown behaviour
        "5,100,7,pv,yesterday",               # unparseable time
        "6,100,7,pv,12",                      # before the floor (1970)
        "7,100,7,pv,4102444800",              # 2100: in the future
        "8,100,pv",                           # wrong width
    ])
    result = ingest(config, "2017-11-25", source, spark=spark, now=NOW)

    assert (result.rows_in, result.accepted, result.other_day, result.quarantined) == (12, 4, 1, 7)
    lake = Lake.from_config(config)
    events = lake.read("events").to_pydict()
    assert sorted(zip(events["user_id"], events["item_id"], events["behaviour"], strict=True)) == [
        (1, 100, "click"), (1, 101, "purchase"), (2, 100, "cart"), (2, 100, "cart")]
    quarantine = lake.read("events_quarantine").to_pydict()
    by_raw = dict(zip(quarantine["raw"], quarantine["reason"], strict=True))
    assert by_raw[f",100,7,pv,{DAY1}"] == "null user_id"
    assert by_raw[f"x9,100,7,pv,{DAY1}"] == "non-integer user_id: x9"
    assert by_raw[f"4,100,7,teleport,{DAY1}"] == "unknown behaviour: teleport"
    assert by_raw["5,100,7,pv,yesterday"] == "unparseable event_time: yesterday"
    assert by_raw["6,100,7,pv,12"].startswith("event_time before floor")
    assert by_raw["7,100,7,pv,4102444800"] == "event_time in the future"
    assert by_raw["8,100,pv"] == "wrong number of fields (expected 5)"
    stats = lake.read("ingest_stats").to_pylist()[0]
    assert stats["rows_in"] == stats["accepted"] + stats["other_day"] + stats["quarantined"] == 12


def test_single_day_source_quarantines_later_days(config: Config, spark, tmp_path: Path):
    source = write_csv(tmp_path / "drop.csv", [f"1,100,7,pv,{DAY1}", f"3,102,8,fav,{DAY2}"])
    config = config.with_overrides({"ingest": {"single_day_source": True}})
    result = ingest(config, "2017-11-25", source, spark=spark, now=NOW)
    assert (result.accepted, result.other_day, result.quarantined) == (1, 0, 1)
    assert "after the end of 2017-11-25" in Lake.from_config(config).read("events_quarantine")["reason"][0].as_py()


def test_rerun_replaces_only_that_day(config: Config, spark, tmp_path: Path):
    source = write_csv(tmp_path / "drop.csv", [f"1,100,7,pv,{DAY1}", f"3,102,8,fav,{DAY2}"])
    for _ in range(2):
        ingest(config, "2017-11-25", source, spark=spark, now=NOW)
    ingest(config, "2017-11-26", source, spark=spark, now=NOW)
    lake = Lake.from_config(config)
    assert sorted(lake.read("events")["ds"].to_pylist()) == ["2017-11-25", "2017-11-26"]
    assert lake.read("ingest_stats").num_rows == 2


def test_taobao_sample_counts_add_up(config: Config, spark):
    result = ingest(config, "2017-11-27", str(TAOBAO_SAMPLE), spark=spark)
    assert result.rows_in == sum(1 for _ in TAOBAO_SAMPLE.open())
    assert result.accepted > 0 and result.quarantined == 0
    assert result.rows_in == result.accepted + result.other_day + result.quarantined
    assert Lake.from_config(config).read("events").num_rows == result.accepted


def test_generic_format_maps_columns_and_behaviours(config: Config, spark, tmp_path: Path):
    source = write_csv(tmp_path / "g.csv", [
        "uid,sku,cat,action,ts", "1,100,7,VIEW,2017-11-25T03:00:00Z", "2,200,8,purchase,2017-11-25T04:00:00Z"])
    config = config.with_overrides({"ingest": {"format": "generic", "time_unit": "iso8601", "columns": {
        "user_id": "uid", "item_id": "sku", "category_id": "cat", "behaviour": "action", "event_time": "ts"}}})
    result = ingest(config, "2017-11-25", source, spark=spark, now=NOW)
    assert result.accepted == 2
    assert sorted(Lake.from_config(config).read("events")["behaviour"].to_pylist()) == ["click", "purchase"]


def test_renamed_source_column_stops_before_writing(config: Config, spark, tmp_path: Path):
    source = write_csv(tmp_path / "g.csv", ["uid,item,cat,action,ts", "1,100,7,view,1511575200"])
    config = config.with_overrides({"ingest": {"format": "generic", "columns": {
        "user_id": "uid", "item_id": "sku", "category_id": "cat", "behaviour": "action", "event_time": "ts"}}})
    with pytest.raises(InputError, match=r"\['sku'\].*missing"):
        ingest(config, "2017-11-25", source, spark=spark, now=NOW)
    assert not Lake.from_config(config).exists("events")


def test_empty_and_non_utf8_files_are_refused_by_name(config: Config, spark, tmp_path: Path):
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    with pytest.raises(EmptyInputError, match="has no rows"):
        ingest(config, "2017-11-25", str(empty), spark=spark, now=NOW)
    latin = tmp_path / "latin1.csv"
    latin.write_bytes(f"1,100,7,pv,{DAY1}\n2,caf\xe9,7,pv,{DAY1}\n".encode("latin-1"))
    with pytest.raises(InputError, match="latin1.csv: line 2 is not valid UTF-8"):
        ingest(config, "2017-11-25", str(latin), spark=spark, now=NOW)
    with pytest.raises(InputError, match="does not exist"):
        ingest(config, "2017-11-25", str(tmp_path / "missing.csv"), spark=spark, now=NOW)
    assert not Lake.from_config(config).exists("events")
