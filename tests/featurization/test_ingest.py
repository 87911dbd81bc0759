"""Ingest: every delivered row lands in exactly one day or in quarantine (once per drop), with the accounting
in ingest_stats and deliveries; a bad delivery never replaces a good day."""

import datetime as dt
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from featurization.ingest import ingest
from lake import Config, EmptyInputError, InputError, Lake
from tests.conftest import TAOBAO_SAMPLE

# Writes through delta-spark are exercised by the both_backends tests here, tests/lake and tests/cluster.
pytestmark = [pytest.mark.spark]
NOW = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
# 2017-11-25 10:00 and 2017-11-26 10:00 in Asia/Shanghai (the default business time zone)
DAY1, DAY2 = 1511575200, 1511661600
DS1, DS2 = "2017-11-25", "2017-11-26"
INGEST_TABLES = ["events", "events_quarantine", "ingest_stats", "deliveries", "late_events"]
# for tests about the reasons themselves, not the guard rail
ANY_QUARANTINE = {"ingest": {"max_quarantined_share": 1.0}}


def write_csv(path: Path, lines: list[str]) -> str:
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def versions(lake: Lake) -> dict[str, int]:
    return {name: lake.version(name) for name in INGEST_TABLES if lake.exists(name)}


def events_of(lake: Lake, ds: str) -> list[tuple]:
    return sorted((e["user_id"], e["item_id"], e["behaviour"]) for e in lake.read("events", partition=ds).to_pylist())


@pytest.mark.both_backends
def test_every_row_lands_in_its_day_or_in_quarantine_with_a_reason(config: Config, spark, tmp_path: Path):
    source = write_csv(tmp_path / "drop.csv", [
        f"1,100,7,pv,{DAY1}",
        f"1,101,7,buy,{DAY1 + 60}",
        f"2,100,7,cart,{DAY1 + 120}",
        f"2,100,7,cart,{DAY1 + 120}",         # exact duplicate: kept here, removed by featurize
        f"3,102,8,fav,{DAY2}",                # another day: written to that day
        f",100,7,pv,{DAY1}",                  # null user
        f"x9,100,7,pv,{DAY1}",                # non-integer user
        f"4,100,7,teleport,{DAY1}",           # unknown behaviour
        "5,100,7,pv,yesterday",               # unparseable time
        "6,100,7,pv,12",                      # before the floor (1970)
        "7,100,7,pv,4102444800",              # 2100: in the future
        "8,100,pv",                           # wrong width
    ])
    result = ingest(config.with_overrides(ANY_QUARANTINE), DS1, source, spark=spark, now=NOW)

    assert (result.rows_in, result.accepted, result.other_day, result.quarantined) == (12, 4, 1, 7)
    lake = Lake.from_config(config)
    assert events_of(lake, DS1) == [(1, 100, "click"), (1, 101, "purchase"), (2, 100, "cart"), (2, 100, "cart")]
    assert events_of(lake, DS2) == [(3, 102, "favourite")]
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
    deliveries = lake.read("deliveries").to_pylist()
    assert sum(d["rows"] for d in deliveries) == 12
    assert {(d["destination"], d["event_ds"]): d["rows"] for d in deliveries if d["destination"] == "events"} == {
        ("events", DS1): 4, ("events", DS2): 1}
    assert {d["fingerprint"] for d in deliveries} == {result.fingerprint}


def test_single_day_source_quarantines_later_days(config: Config, spark, tmp_path: Path):
    source = write_csv(tmp_path / "drop.csv", [f"1,100,7,pv,{DAY1}", f"3,102,8,fav,{DAY2}"])
    config = config.with_overrides({"ingest": {"single_day_source": True, "max_quarantined_share": 1.0}})
    result = ingest(config, DS1, source, spark=spark, now=NOW)
    assert (result.accepted, result.other_day, result.quarantined) == (1, 0, 1)
    assert "after the end of 2017-11-25" in Lake.from_config(config).read("events_quarantine")["reason"][0].as_py()


@pytest.mark.both_backends
def test_the_same_drop_in_several_runs_lands_once(config: Config, spark, tmp_path: Path):
    source = write_csv(tmp_path / "drop.csv", [f"1,100,7,pv,{DAY1}", f"3,102,8,fav,{DAY2}"])
    for _ in range(2):
        ingest(config, DS1, source, spark=spark, now=NOW)
    ingest(config, DS2, source, spark=spark, now=NOW)
    lake = Lake.from_config(config)
    assert sorted(lake.read("events")["ds"].to_pylist()) == [DS1, DS2]
    assert lake.read("ingest_stats").num_rows == 2
    assert lake.read("late_events").num_rows == 0 if lake.exists("late_events") else True


def test_taobao_sample_counts_add_up(config: Config, spark):
    result = ingest(config, "2017-11-27", str(TAOBAO_SAMPLE), spark=spark)
    assert result.rows_in == sum(1 for _ in TAOBAO_SAMPLE.open())
    assert result.accepted > 0 and result.quarantined == 0
    assert result.rows_in == result.accepted + result.other_day + result.quarantined
    lake = Lake.from_config(config)
    assert lake.read("events", partition="2017-11-27").num_rows == result.accepted
    assert lake.read("events").num_rows == result.rows_in  # every day of the sample, each in its own partition


def test_generic_format_maps_columns_and_behaviours(config: Config, spark, tmp_path: Path):
    source = write_csv(tmp_path / "g.csv", [
        "uid,sku,cat,action,ts", "1,100,7,VIEW,2017-11-25T03:00:00Z", "2,200,8,purchase,2017-11-25T04:00:00Z"])
    config = config.with_overrides({"ingest": {"format": "generic", "time_unit": "iso8601", "columns": {
        "user_id": "uid", "item_id": "sku", "category_id": "cat", "behaviour": "action", "event_time": "ts"}}})
    result = ingest(config, DS1, source, spark=spark, now=NOW)
    assert result.accepted == 2
    assert sorted(Lake.from_config(config).read("events")["behaviour"].to_pylist()) == ["click", "purchase"]


def test_renamed_source_column_stops_before_writing(config: Config, spark, tmp_path: Path):
    source = write_csv(tmp_path / "g.csv", ["uid,item,cat,action,ts", "1,100,7,view,1511575200"])
    config = config.with_overrides({"ingest": {"format": "generic", "columns": {
        "user_id": "uid", "item_id": "sku", "category_id": "cat", "behaviour": "action", "event_time": "ts"}}})
    with pytest.raises(InputError, match=r"\['sku'\].*missing"):
        ingest(config, DS1, source, spark=spark, now=NOW)
    assert not Lake.from_config(config).exists("events")


def test_empty_and_missing_files_are_refused_by_name(config: Config, spark, tmp_path: Path):
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    with pytest.raises(EmptyInputError, match="has no rows"):
        ingest(config, DS1, str(empty), spark=spark, now=NOW)
    with pytest.raises(InputError, match="does not exist"):
        ingest(config, DS1, str(tmp_path / "missing.csv"), spark=spark, now=NOW)
    assert not Lake.from_config(config).exists("events")


# -- bad deliveries never replace good days ---------------------------------------------------------------
@pytest.mark.both_backends
def test_a_redelivery_that_would_be_mostly_quarantined_is_refused_and_writes_nothing(config: Config, spark,
                                                                                      tmp_path: Path):
    drop = tmp_path / "drop.csv"
    write_csv(drop, [f"{u},100,7,pv,{DAY1 + u}" for u in range(1, 201)])
    ingest(config, DS1, str(drop), spark=spark, now=NOW)
    lake = Lake.from_config(config)
    before = versions(lake)
    # the same day redelivered with the behaviour codes of another system: every row unknown
    write_csv(drop, [f"{u},100,7,view_item,{DAY1 + u}" for u in range(1, 201)])
    with pytest.raises(InputError, match=r"200 of 200 rows \(100\.0%\) would be quarantined, above "
                                         r"ingest\.max_quarantined_share=1\.0%.*--allow-quarantine"):
        ingest(config, DS1, str(drop), spark=spark, now=NOW)
    assert versions(lake) == before
    assert lake.read("events", partition=DS1).num_rows == 200


def test_a_redelivery_that_would_shrink_a_day_is_refused_unless_allowed(config: Config, spark, tmp_path: Path):
    drop = tmp_path / "drop.csv"
    write_csv(drop, [f"{u},100,7,pv,{DAY1 + u}" for u in range(1, 101)])
    ingest(config, DS1, str(drop), spark=spark, now=NOW)
    lake = Lake.from_config(config)
    before = versions(lake)
    write_csv(drop, [f"{u},100,7,pv,{DAY1 + u}" for u in range(1, 11)])
    with pytest.raises(InputError, match=r"events ds=2017-11-25 holds 100 rows and would keep 10 \(10\.0%\), below "
                                         r"ingest\.min_kept_share=50%.*--allow-shrink"):
        ingest(config, DS1, str(drop), spark=spark, now=NOW)
    assert versions(lake) == before

    ingest(config, DS1, str(drop), spark=spark, now=NOW, allow_shrink=True)
    assert lake.read("events", partition=DS1).num_rows == 10


# -- encoding, ids, drops without a day ----------------------------------------------------------------
def test_a_line_that_is_not_utf8_is_quarantined_with_its_bytes_and_the_rest_loads(config: Config, spark,
                                                                                    tmp_path: Path):
    good = [f"{u},100,7,pv,{DAY1 + u}".encode() for u in range(1, 301)]
    bad = f"999,caf\xe9,7,pv,{DAY1}".encode("latin-1")
    (tmp_path / "drop.csv").write_bytes(b"\n".join([*good[:150], bad, *good[150:]]) + b"\n")

    result = ingest(config, DS1, str(tmp_path / "drop.csv"), spark=spark, now=NOW)

    assert (result.rows_in, result.accepted, result.quarantined) == (301, 300, 1)
    quarantine = Lake.from_config(config).read("events_quarantine").to_pylist()
    assert [(q["line"], q["raw"], q["reason"]) for q in quarantine] == [
        (151, f"999,caf\\xe9,7,pv,{DAY1}", "not valid UTF-8")]


def test_zero_and_negative_user_and_item_ids_are_quarantined(config: Config, spark, tmp_path: Path):
    source = write_csv(tmp_path / "drop.csv", [
        f"1,100,7,pv,{DAY1}", f"0,100,7,pv,{DAY1}", f"2,-5,7,pv,{DAY1}", f"3,100,0,pv,{DAY1}"])
    result = ingest(config.with_overrides(ANY_QUARANTINE), DS1, source, spark=spark, now=NOW)
    assert (result.accepted, result.quarantined) == (2, 2)  # category 0 is a source's "no category"
    reasons = sorted(Lake.from_config(config).read("events_quarantine")["reason"].to_pylist())
    assert reasons == ["non-positive item_id: -5", "non-positive user_id: 0"]


def test_a_row_of_no_day_is_quarantined_once_per_drop(config: Config, spark, tmp_path: Path):
    source = write_csv(tmp_path / "drop.csv", [
        *[f"{u},100,7,pv,{day + u}" for day in (DAY1, DAY2, DAY2 + 86400) for u in range(1, 70)],
        "5,100,7,pv,yesterday"])
    for ds in (DS1, DS2, "2017-11-27"):
        ingest(config, ds, source, spark=spark, now=NOW)
    quarantine = Lake.from_config(config).read("events_quarantine").to_pylist()
    assert [(q["raw"], q["ds"]) for q in quarantine] == [("5,100,7,pv,yesterday", "2017-11-27")]


# -- sources given as URIs: the same checks as local paths -------------------------------------------------
@pytest.mark.both_backends
def test_a_file_uri_folder_reads_each_csv_by_its_own_header(config: Config, spark, tmp_path: Path):
    folder = tmp_path / "drop"
    folder.mkdir()
    write_csv(folder / "a.csv", ["user_id,item_id,category_id,behaviour,event_time", f"1,100,7,pv,{DAY1}"])
    write_csv(folder / "b.csv", ["event_time,behaviour,category_id,item_id,user_id", f"{DAY1},buy,8,200,2"])
    write_csv(folder / "_SUCCESS", [])
    config = config.with_overrides({"ingest": {"format": "generic"}})
    result = ingest(config, DS1, folder.as_uri(), spark=spark, now=NOW)
    assert (result.accepted, result.quarantined) == (2, 0)
    rows = Lake.from_config(config).read("events").to_pylist()
    assert sorted((r["user_id"], r["item_id"], r["category_id"], r["behaviour"]) for r in rows) == [
        (1, 100, 7, "click"), (2, 200, 8, "purchase")]


def test_a_file_uri_folder_of_parquet_is_read_as_parquet(config: Config, spark, tmp_path: Path):
    folder = tmp_path / "drop"
    folder.mkdir()
    pq.write_table(pa.table({"user_id": [1, 2], "item_id": [100, 101], "category_id": [7, 7],
                             "behaviour": ["pv", "buy"], "event_time": [DAY1, DAY1 + 60]}), folder / "part-0")
    config = config.with_overrides({"ingest": {"format": "generic"}})
    result = ingest(config, DS1, folder.as_uri(), spark=spark, now=NOW)
    assert (result.accepted, result.quarantined) == (2, 0)


def test_a_file_uri_source_quarantines_its_non_utf8_lines_too(config: Config, spark, tmp_path: Path):
    (tmp_path / "drop.csv").write_bytes(f"1,100,7,pv,{DAY1}\n2,caf\xe9,7,pv,{DAY1}\n".encode("latin-1"))
    result = ingest(config.with_overrides(ANY_QUARANTINE), DS1, (tmp_path / "drop.csv").as_uri(), spark=spark,
                    now=NOW)
    assert (result.accepted, result.quarantined) == (1, 1)
    assert Lake.from_config(config).read("events_quarantine")["line"].to_pylist() == [2]


# -- time: units and zones at a day boundary -------------------------------------------------------------
# 2017-11-25 16:00:00 UTC = 2017-11-26 00:00:00 in Asia/Shanghai: the first instant of DS2 there.
BOUNDARY = 1511625600


@pytest.mark.parametrize(("unit", "first_of_ds2", "last_of_ds1"), [
    ("unix_seconds", str(BOUNDARY), str(BOUNDARY - 1)),
    ("unix_millis", str(BOUNDARY * 1000), str(BOUNDARY * 1000 - 1)),
    ("iso8601", "2017-11-26T00:00:00", "2017-11-25T23:59:59.999"),              # lake.timezone's wall clock
    ("iso8601", "2017-11-25T16:00:00Z", "2017-11-25T23:59:59+08:00"),           # an offset is honoured
])
def test_each_time_form_lands_on_the_right_side_of_a_day_boundary(config: Config, spark, tmp_path: Path,
                                                                  unit: str, first_of_ds2: str, last_of_ds1: str):
    source = write_csv(tmp_path / "drop.csv", [f"1,100,7,pv,{last_of_ds1}", f"2,100,7,pv,{first_of_ds2}"])
    config = config.with_overrides({"ingest": {"time_unit": unit}})
    result = ingest(config, DS1, source, spark=spark, now=NOW)
    assert result.days == {DS1: 1, DS2: 1}
    lake = Lake.from_config(config)
    assert lake.read("events", partition=DS2)["event_time"].to_pylist() == [
        dt.datetime.fromtimestamp(BOUNDARY, dt.UTC)]


def test_times_in_the_other_unit_are_refused_not_guessed(config: Config, spark, tmp_path: Path):
    source = write_csv(tmp_path / "drop.csv", [f"{u},100,7,pv,{(DAY1 + u) * 1000}" for u in range(1, 50)])
    with pytest.raises(InputError, match=r"49 of 49 event times read as ingest\.time_unit=unix_seconds.*"
                                         r"looks written in unix_millis"):
        ingest(config, DS1, source, spark=spark, now=NOW)
    assert not Lake.from_config(config).exists("events")
