"""Two writers to the same table at once: both commit, or one fails cleanly with the retryable
ConcurrentWriteError; the log stays readable with contiguous versions and no commit is lost (each
successful write's rows are in the final table unless a later replace of the same ds superseded them).

The interleaving is made exact with the test-only hold of lake._faults: writer A stops after reading the
table's snapshot and taking its rows, writer B commits, then A is released and tries to commit.
"""

from __future__ import annotations

import datetime as dt
import threading
from pathlib import Path

import pyarrow as pa
import pytest

from featurization.ingest import ingest
from lake import ConcurrentWriteError, Config, Lake, load_config
from lake._faults import PAUSE_ENV
from tests.reliability.harness import HeldThread, contiguous_history, orphan_files, sorted_rows, write_lines

NOW = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
DS1, DS2, DS3 = "2017-11-25", "2017-11-26", "2017-11-27"
DAY1 = 1511575200  # 2017-11-25 10:00 Asia/Shanghai
DAY = 86400


def stats_rows(ds: str, source: str, rows_in: int) -> pa.Table:
    """One ``ingest_stats`` row: a small table written through delta-rs."""
    return pa.table({"source_file": [source], "rows_in": [rows_in], "accepted": [rows_in], "other_day": [0],
                     "quarantined": [0], "ingested_at": pa.array([NOW], pa.timestamp("us", tz="UTC")), "ds": [ds]})


def assert_contiguous(lake: Lake, name: str, newest: int) -> None:
    assert contiguous_history(lake, name) == list(range(newest, -1, -1))


def test_two_partitions_at_once_both_commit(lake: Lake, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    lake.write("ingest_stats", stats_rows(DS1, "day1", 1), partition=DS1)
    held = HeldThread(monkeypatch, tmp_path, "ingest_stats",
                      lambda: lake.write("ingest_stats", stats_rows(DS2, "writer-a", 2), partition=DS2))
    lake.write("ingest_stats", stats_rows(DS3, "writer-b", 3), partition=DS3)
    assert held.release() is None

    rows = sorted_rows(lake, "ingest_stats")
    assert [(r["ds"], r["source_file"]) for r in rows] == [(DS1, "day1"), (DS2, "writer-a"), (DS3, "writer-b")]
    assert_contiguous(lake, "ingest_stats", 3)


def test_same_partition_at_once_the_later_commit_fails_retryably(lake: Lake, tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch):
    lake.write("ingest_stats", stats_rows(DS1, "day1", 1), partition=DS1)
    held = HeldThread(monkeypatch, tmp_path, "ingest_stats",
                      lambda: lake.write("ingest_stats", stats_rows(DS2, "writer-a", 2), partition=DS2))
    lake.write("ingest_stats", stats_rows(DS2, "writer-b", 3), partition=DS2)
    error = held.release()

    assert isinstance(error, ConcurrentWriteError) and error.retryable
    assert "table 'ingest_stats': another writer committed first" in str(error) and "rerun the task" in str(error)
    assert [(r["ds"], r["source_file"]) for r in sorted_rows(lake, "ingest_stats")] == [
        (DS1, "day1"), (DS2, "writer-b")]
    assert_contiguous(lake, "ingest_stats", 2)

    monkeypatch.delenv(PAUSE_ENV)
    lake.write("ingest_stats", stats_rows(DS2, "writer-a", 2), partition=DS2)  # the retry
    assert [(r["ds"], r["source_file"]) for r in sorted_rows(lake, "ingest_stats")] == [
        (DS1, "day1"), (DS2, "writer-a")]
    assert_contiguous(lake, "ingest_stats", 3)


def test_appends_at_once_both_commit(lake: Lake, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    lake.write("deny_list", pa.table({"item_id": [1], "reason": ["first"]}), mode="append")
    held = HeldThread(monkeypatch, tmp_path, "deny_list",
                      lambda: lake.write("deny_list", pa.table({"item_id": [2], "reason": ["a"]}), mode="append"))
    lake.write("deny_list", pa.table({"item_id": [3], "reason": ["b"]}), mode="append")
    assert held.release() is None
    assert sorted(lake.read("deny_list")["item_id"].to_pylist()) == [1, 2, 3]
    assert_contiguous(lake, "deny_list", 3)


def test_append_racing_a_whole_table_overwrite_fails_retryably(lake: Lake, tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch):
    lake.write("deny_list", pa.table({"item_id": [1], "reason": ["first"]}), mode="append")
    held = HeldThread(monkeypatch, tmp_path, "deny_list",
                      lambda: lake.write("deny_list", pa.table({"item_id": [2], "reason": ["a"]}), mode="append"))
    lake.write("deny_list", pa.table({"item_id": [3], "reason": ["b"]}), mode="overwrite")
    error = held.release()
    # The append read the snapshot the overwrite replaced: it must not slip in after it unseen.
    assert isinstance(error, ConcurrentWriteError) and error.retryable
    assert lake.read("deny_list")["item_id"].to_pylist() == [3]
    assert_contiguous(lake, "deny_list", 2)


def test_two_first_writers_create_the_table_once(tmp_path: Path):
    for attempt in range(10):
        root = tmp_path / f"lake-{attempt}"
        config = load_config(environ={}).with_overrides({"lake": {"root": str(root)}})
        start = threading.Barrier(2)
        errors: list[BaseException] = []

        def append(item_id: int, config=config, start=start, errors=errors) -> None:
            writer = Lake.from_config(config)
            start.wait()
            try:
                writer.write("deny_list", pa.table({"item_id": [item_id], "reason": ["x"]}), mode="append")
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=append, args=(i,)) for i in (1, 2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        lake = Lake.from_config(config)
        assert errors == []
        assert sorted(lake.read("deny_list")["item_id"].to_pylist()) == [1, 2]
        assert_contiguous(lake, "deny_list", 2)


# -- two `seqrec ingest` processes; the Spark executors write `events`, the driver commits ------------------

def drop(path: Path, users: range, days: int = 3, first_day: int = 0) -> str:
    """Rows of ``days`` local days from ``first_day`` on: a file is one drop, its rows go to their own days."""
    return write_lines(path, [f"{u},{100 + u},7,pv,{DAY1 + d * DAY + u}"
                              for d in range(first_day, first_day + days) for u in users])


@pytest.mark.spark
@pytest.mark.slow
@pytest.mark.both_backends
def test_two_ingests_of_different_drops_both_commit(config: Config, spark, tmp_path: Path, held_runs):
    ingest(config, DS1, drop(tmp_path / "day1.csv", range(1, 5), days=1), spark=spark, now=NOW)
    run = held_runs(["ingest", "--ds", DS2, "--source", drop(tmp_path / "day2.csv", range(1, 5), days=1, first_day=1)],
                    table="events", config=config)
    run.wait_until_held()
    ingest(config, DS3, drop(tmp_path / "day3.csv", range(1, 5), days=1, first_day=2), spark=spark, now=NOW)
    assert run.release() == 0, run.output()

    lake = Lake.from_config(config)
    for name in ("events", "events_quarantine", "ingest_stats"):
        history = contiguous_history(lake, name)
        assert history == list(range(history[0], -1, -1)), name
    for name in ("events", "ingest_stats"):
        assert lake.partitions(name) == [DS1, DS2, DS3], name
    assert lake.read("events_quarantine").num_rows == 0, "every row was good: no quarantine partition has files"
    assert [r["ds"] for r in sorted_rows(lake, "ingest_stats")] == [DS1, DS2, DS3]
    events = sorted_rows(lake, "events")
    assert sorted((e["ds"], e["user_id"]) for e in events) == [(ds, u) for ds in (DS1, DS2, DS3) for u in range(1, 5)]


@pytest.mark.spark
@pytest.mark.slow
@pytest.mark.both_backends
def test_two_ingests_of_one_drop_at_once_the_later_commit_fails_retryably(config: Config, spark, tmp_path: Path,
                                                                          held_runs, spark_backend: str):
    source = tmp_path / "drop.csv"
    ingest(config, DS1, drop(source, range(1, 5)), spark=spark, now=NOW)
    run = held_runs(["ingest", "--ds", DS2, "--source", str(source)], table="events", config=config)
    run.wait_until_held()
    # the drop is redelivered while the held run (which read the first delivery) waits, and ingested first
    ingest(config, DS2, drop(source, range(10, 12)), spark=spark, now=NOW)

    assert run.release() == 2
    assert "ingest failed (ConcurrentWriteError): table 'events': another writer committed first" in \
        " ".join(run.output().split())
    lake = Lake.from_config(config)
    assert sorted((e["ds"], e["user_id"]) for e in sorted_rows(lake, "events")) == [
        (ds, u) for ds in (DS1, DS2, DS3) for u in (10, 11)]
    if spark_backend == "delta-rs":
        assert orphan_files(lake, "events") == set()  # the failed writer removed its files
    else:  # Delta leaves a losing transaction's files unreferenced (invisible) until VACUUM removes them
        assert orphan_files(lake, "events")
    history = contiguous_history(lake, "events")
    assert history == list(range(history[0], -1, -1))

    ingest(config, DS2, str(source), spark=spark, now=NOW)  # the retry reads the drop as it is now
    assert sorted((e["ds"], e["user_id"]) for e in sorted_rows(lake, "events")) == [
        (ds, u) for ds in (DS1, DS2, DS3) for u in (10, 11)]
