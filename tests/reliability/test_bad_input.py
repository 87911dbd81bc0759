"""Bad raw input: each case ends in a clear error naming the file and the problem, or in quarantine with a
reason, and accepted + other days + quarantined always equals the rows read.

Complements tests/featurization/test_ingest.py (null/non-integer user ids, unknown behaviour, unparseable,
too-early and future timestamps, wrong field count, empty and non-UTF-8 taobao files, a missing source).
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from featurization.ingest import ingest
from lake import Config, EmptyInputError, InputError, Lake
from tests.reliability.harness import write_lines

pytestmark = pytest.mark.spark
NOW = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
DS = "2017-11-25"
# 2017-11-25 10:00 in Asia/Shanghai (the default business time zone), as unix seconds
DAY1 = 1511575200
INGEST_TABLES = ["events", "events_quarantine", "ingest_stats"]
# These cases are about each bad row's reason, so the quarantine guard rail (1% by default) is lifted.
GENERIC = {"ingest": {"format": "generic", "max_quarantined_share": 1.0}}
ANY_QUARANTINE = {"ingest": {"max_quarantined_share": 1.0}}


def nothing_written(config: Config) -> bool:
    lake = Lake.from_config(config)
    return not any(lake.exists(t) for t in INGEST_TABLES)


def good_parquet(path: Path) -> Path:
    pq.write_table(pa.table({"user_id": [1, 2], "item_id": [100, 101], "category_id": [7, 7],
                             "behaviour": ["pv", "buy"], "event_time": [DAY1, DAY1 + 60]}), path)
    return path


def test_every_bad_field_is_quarantined_with_its_own_reason(config: Config, spark, tmp_path: Path):
    drop = tmp_path / "drop.csv"
    expected_reasons = {
        f"1,,7,pv,{DAY1}": "null item_id",
        f"1,100,,pv,{DAY1}": "null category_id",
        f"1,1.5,7,pv,{DAY1}": "non-integer item_id: 1.5",
        f"1,100,abc,pv,{DAY1}": "non-integer category_id: abc",
        f"99999999999999999999,100,7,pv,{DAY1}": "out-of-range user_id: 99999999999999999999",
        "1,100,7,pv,99999999999999999999": "out-of-range event_time: 99999999999999999999",
        f"1,100,7,,{DAY1}": "null behaviour",
        "1,100,7,pv,": "null event_time",
        f"1,100,7,pv,{DAY1},9.99": "wrong number of fields (expected 5)",
    }
    accepted_lines = [
        f"1,100,7,PV,{DAY1}",              # behaviour names are case-insensitive
        f" 2 , 101 , 7 , buy , {DAY1} ",   # padding is trimmed
        f"3,102,8,cart,{DAY1}.5",          # fractional seconds are kept
        f"4,103,8,fav,{DAY1}",
        f"4,103,8,fav,{DAY1}",             # an exact duplicate is accepted; featurize removes it
    ]
    write_lines(drop, accepted_lines + list(expected_reasons))

    result = ingest(config.with_overrides(ANY_QUARANTINE), DS, str(drop), spark=spark, now=NOW)

    assert (result.rows_in, result.accepted, result.other_day, result.quarantined) == (14, 5, 0, 9)
    lake = Lake.from_config(config)
    quarantine = lake.read("events_quarantine").to_pylist()
    assert {row["raw"]: row["reason"] for row in quarantine} == expected_reasons
    assert {row["source_file"] for row in quarantine} == {drop.as_uri()}
    events = lake.read("events").to_pylist()
    assert sorted((e["user_id"], e["item_id"], e["behaviour"]) for e in events) == [
        (1, 100, "click"), (2, 101, "purchase"), (3, 102, "cart"), (4, 103, "favourite"), (4, 103, "favourite")]
    fractional = next(e for e in events if e["user_id"] == 3)["event_time"]
    assert fractional == dt.datetime.fromtimestamp(DAY1 + 0.5, dt.UTC)
    assert lake.read("ingest_stats").to_pylist()[0]["quarantined"] == 9


def test_a_drop_delivered_twice_is_accepted_twice_with_each_file_named(config: Config, spark, tmp_path: Path):
    folder = tmp_path / "drops"
    folder.mkdir()
    lines = [f"1,100,7,pv,{DAY1}", f"2,101,7,buy,{DAY1 + 60}"]
    write_lines(folder / "part-1.csv", lines)
    write_lines(folder / "part-1-copy.csv", lines)

    result = ingest(config, DS, str(folder), spark=spark, now=NOW)

    assert (result.rows_in, result.accepted, result.quarantined) == (4, 4, 0)
    events = Lake.from_config(config).read("events").to_pylist()
    assert sorted((e["user_id"], Path(e["source_file"]).name) for e in events) == [
        (1, "part-1-copy.csv"), (1, "part-1.csv"), (2, "part-1-copy.csv"), (2, "part-1.csv")]


def test_generic_csv_rows_with_missing_or_extra_fields_are_quarantined_as_read(config: Config, spark,
                                                                                tmp_path: Path):
    source = write_lines(tmp_path / "g.csv", [
        "user_id,item_id,category_id,behaviour,event_time",
        f"1,100,7,pv,{DAY1}",
        f"2,100,7,pv,{DAY1},junk",
        "3,100,7",
        f"4,100,7,pv,{DAY1}",
        f"5,100,7,pv,{DAY1}",
    ])
    result = ingest(config.with_overrides(GENERIC), DS, source, spark=spark, now=NOW)

    assert (result.rows_in, result.accepted, result.quarantined) == (5, 3, 2)
    quarantine = Lake.from_config(config).read("events_quarantine").to_pylist()
    assert sorted((q["raw"], q["reason"]) for q in quarantine) == [
        (f"2,100,7,pv,{DAY1},junk", "wrong number of fields (expected 5)"),
        ("3,100,7", "wrong number of fields (expected 5)"),
    ]


def test_generic_csv_header_with_an_extra_column_is_refused_by_name(config: Config, spark, tmp_path: Path):
    source = write_lines(tmp_path / "extra.csv", [
        "user_id,item_id,category_id,behaviour,event_time,price", f"1,100,7,pv,{DAY1},9.99"])
    with pytest.raises(InputError, match=r"extra\.csv: unexpected column\(s\) \['price'\]"):
        ingest(config.with_overrides(GENERIC), DS, source, spark=spark, now=NOW)
    assert nothing_written(config)


@pytest.mark.parametrize(("column", "values", "message"), [
    ("item_id", [1.0, 2.0], r"ids\.parquet: column 'item_id' \(item_id\) is double, expected integer or string"),
    ("event_time", pa.array([dt.datetime(2017, 11, 25, 3)] * 2, pa.timestamp("us", tz="UTC")),
     r"ids\.parquet: column 'event_time' \(event_time\) is timestamp\[us, tz=UTC\], expected integer, float or "
     r"string \(ingest.time_unit=unix_seconds\)"),
    ("behaviour", [1, 2], r"ids\.parquet: column 'behaviour' \(behaviour\) is int64, expected string"),
])
def test_parquet_columns_of_the_wrong_type_are_refused_by_file_and_column(
    config: Config, spark, tmp_path: Path, column: str, values, message: str
):
    table = pq.read_table(good_parquet(tmp_path / "good.parquet"))
    table = table.set_column(table.schema.get_field_index(column), column, pa.array(values))
    pq.write_table(table, tmp_path / "ids.parquet")
    with pytest.raises(InputError, match=message):
        ingest(config.with_overrides(GENERIC), DS, str(tmp_path / "ids.parquet"), spark=spark, now=NOW)
    assert nothing_written(config)


def test_parquet_timestamps_are_accepted_when_declared_iso8601(config: Config, spark, tmp_path: Path):
    moment = dt.datetime(2017, 11, 25, 3, tzinfo=dt.UTC)
    pq.write_table(pa.table({"user_id": [1], "item_id": [100], "category_id": [7], "behaviour": ["pv"],
                             "event_time": pa.array([moment], pa.timestamp("us", tz="UTC"))}), tmp_path / "t.parquet")
    config = config.with_overrides({"ingest": {"format": "generic", "time_unit": "iso8601"}})
    result = ingest(config, DS, str(tmp_path / "t.parquet"), spark=spark, now=NOW)
    assert (result.accepted, result.quarantined) == (1, 0)
    assert Lake.from_config(config).read("events")["event_time"].to_pylist() == [moment]


def test_parquet_string_ids_are_checked_row_by_row(config: Config, spark, tmp_path: Path):
    pq.write_table(pa.table({"user_id": ["1", "u2"], "item_id": ["100", "101"], "category_id": ["7", "7"],
                             "behaviour": ["pv", "pv"], "event_time": [DAY1, DAY1]}), tmp_path / "s.parquet")
    result = ingest(config.with_overrides(GENERIC), DS, str(tmp_path / "s.parquet"), spark=spark, now=NOW)
    assert (result.rows_in, result.accepted, result.quarantined) == (2, 1, 1)
    assert Lake.from_config(config).read("events_quarantine")["reason"].to_pylist() == ["non-integer user_id: u2"]


def _garbage(path: Path) -> None:
    path.write_bytes(b"this was never a Parquet file\n" * 20)


def _zero_bytes(path: Path) -> None:
    path.write_bytes(b"")


def _truncated(path: Path) -> None:
    good_parquet(path)
    path.write_bytes(path.read_bytes()[:-40])


def _corrupt_pages(path: Path) -> None:
    """A valid footer over data pages overwritten with noise: only reading the data finds it."""
    import random

    size = 4000
    pq.write_table(pa.table({"user_id": list(range(size)), "item_id": list(range(size)), "category_id": [7] * size,
                             "behaviour": ["pv"] * size, "event_time": [DAY1] * size}), path, compression="zstd")
    data = bytearray(path.read_bytes())
    column = pq.read_metadata(path).row_group(0).column(0)
    noise = random.Random(7)
    start = column.data_page_offset + 4
    for i in range(start, column.file_offset - 4):
        data[i] = noise.randrange(256)
    path.write_bytes(bytes(data))


@pytest.mark.parametrize(("damage", "message"), [
    (_garbage, r"b\.parquet: not a readable Parquet file \(Parquet magic bytes not found"),
    (_zero_bytes, r"b\.parquet: not a readable Parquet file \(Parquet file size is 0 bytes\)"),
    (_truncated, r"b\.parquet: not a readable Parquet file"),
    (_corrupt_pages, r"b\.parquet: Spark could not read this file \(.+\); re-export it"),
])
def test_a_corrupt_parquet_file_among_good_ones_is_refused_by_name(config: Config, spark, tmp_path: Path,
                                                                   damage, message: str):
    folder = tmp_path / "drop"
    folder.mkdir()
    good_parquet(folder / "a.parquet")
    damage(folder / "b.parquet")
    with pytest.raises(InputError, match=message):
        ingest(config.with_overrides(GENERIC), DS, str(folder), spark=spark, now=NOW)
    assert nothing_written(config)


def test_a_non_utf8_line_of_a_generic_csv_is_quarantined_by_file_and_line(config: Config, spark, tmp_path: Path):
    folder = tmp_path / "drop"
    folder.mkdir()
    write_lines(folder / "a.csv", ["user_id,item_id,category_id,behaviour,event_time", f"1,100,7,pv,{DAY1}"])
    (folder / "b.csv").write_bytes(
        f"user_id,item_id,category_id,behaviour,event_time\n1,100,7,pv,{DAY1}\n2,100,7,\xe9t\xe9,{DAY1}\n"
        .encode("cp1252"))
    result = ingest(config.with_overrides(GENERIC), DS, str(folder), spark=spark, now=NOW)
    assert (result.rows_in, result.accepted, result.quarantined) == (3, 2, 1)
    quarantine = Lake.from_config(config).read("events_quarantine").to_pylist()
    assert [(Path(q["source_file"]).name, q["line"], q["raw"], q["reason"]) for q in quarantine] == [
        ("b.csv", 3, f"2,100,7,\\xe9t\\xe9,{DAY1}", "not valid UTF-8")]


def _empty_folder(folder: Path) -> None:
    folder.mkdir()


def _zero_row_parquet(folder: Path) -> None:
    folder.mkdir()
    good_parquet(folder / "a.parquet")
    pq.write_table(pq.read_table(folder / "a.parquet").slice(0, 0), folder / "a.parquet")


def _header_only_csv(folder: Path) -> None:
    folder.mkdir()
    write_lines(folder / "a.csv", ["user_id,item_id,category_id,behaviour,event_time"])


def _zero_byte_csv(folder: Path) -> None:
    folder.mkdir()
    (folder / "a.csv").write_bytes(b"")


@pytest.mark.parametrize(("make", "message"), [
    (_empty_folder, "drop holds no files"),
    (_zero_row_parquet, "drop has no rows; nothing was written"),
    (_header_only_csv, "drop has no rows; nothing was written"),
    (_zero_byte_csv, r"drop has no rows \(no header either\)"),
])
def test_empty_generic_sources_are_refused_by_name(config: Config, spark, tmp_path: Path, make, message: str):
    make(tmp_path / "drop")
    with pytest.raises(EmptyInputError, match=message):
        ingest(config.with_overrides(GENERIC), DS, str(tmp_path / "drop"), spark=spark, now=NOW)
    assert nothing_written(config)
