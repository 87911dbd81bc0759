"""The featurize stage over a lake: stats, vocabulary stability, reruns, and refusing empty input."""

import datetime as dt
import itertools
import zoneinfo
from collections import Counter
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from featurization.featurize import featurize
from featurization.ingest import ingest
from lake import Config, EmptyInputError, InputError, Lake
from tests.conftest import TAOBAO_SAMPLE
from tests.featurization.conftest import DAY1, DAY2, DAY3, events_table

# delta-spark: row-for-row equality of featurize's tables in tests/cluster/test_standalone.py.
pytestmark = [pytest.mark.spark, pytest.mark.slow]

OUTPUTS = ("featurize_stats", "abnormal_users", "item_vocab", "category_vocab", "item_categories",
           "user_sequences", "train_examples")
CATEGORY = {10: 7, 11: 7, 12: 8, 13: 8, 14: 9, 15: 9}


def click(user: int, item: int, ds: str, seconds: int) -> tuple:
    return (user, item, CATEGORY[item], "click", ds, seconds)


DAY1_EVENTS = [
    click(1, 10, DAY1, 0), click(1, 10, DAY1, 0),  # an exact duplicate
    click(1, 11, DAY1, 100), click(1, 11, DAY1, 130),  # a burst: 30 s later
    click(1, 12, DAY1, 200),
    click(2, 10, DAY1, 0), click(2, 11, DAY1, 100), click(2, 12, DAY1, 200),
    *[click(3, 10 + k % 3, DAY1, 1000 + 300 * k) for k in range(30)],  # a bot: 30 events in a day
    click(4, 10, DAY1, 40), click(4, 13, DAY1, 50),  # item 13 is seen once, then user 4 has one event
]
DAY2_EVENTS = [
    click(1, 14, DAY2, 0), click(1, 10, DAY2, 100),
    click(2, 14, DAY2, 50),
    click(5, 14, DAY2, 10), click(5, 15, DAY2, 20),  # item 15 is seen once, then user 5 has one event
]
NOW = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
SETTINGS = {"kcore_user_min_events": 2, "kcore_item_min_events": 2, "abnormal_quantile": 0.5,
            "abnormal_min_events_per_day": 20, "burst_window_seconds": 60, "max_len": 10}


@pytest.fixture
def stage_config(config: Config) -> Config:
    return config.with_overrides({"featurize": SETTINGS})


def rows(lake: Lake, name: str, partition: str | None = None, *keys: str) -> list[dict]:
    return sorted(lake.read(name, partition=partition).to_pylist(), key=lambda r: tuple(r[k] for k in keys))


def test_two_days_known_answers_stable_vocabulary_and_identical_rerun(stage_config, spark):
    lake = Lake.from_config(stage_config, spark=spark)
    lake.write("events", events_table(DAY1_EVENTS), partition=DAY1)
    lake.write("events", events_table(DAY2_EVENTS), partition=DAY2)

    first = featurize(stage_config, DAY1, spark=spark)
    assert (first.new_items, first.item_vocab_size, first.new_categories) == (3, 5, 2)
    day1_items = rows(lake, "item_vocab", None, "item_index")
    assert [(r["item_id"], r["item_index"], r["first_seen_ds"]) for r in day1_items] == [
        (10, 2, DAY1), (11, 3, DAY1), (12, 4, DAY1)]

    second = featurize(stage_config, DAY2, spark=spark)
    assert [(s.step, s.rows_in, s.rows_out) for s in second.steps] == [
        ("read_events", 45, 45), ("exact_duplicates", 45, 44), ("bursts", 44, 43),
        ("abnormal_users", 43, 13), ("kcore", 13, 9), ("truncation", 9, 9), ("users_with_test_row", 2, 2),
    ]
    assert "2 rounds" in second.steps[4].reason
    stats = rows(lake, "featurize_stats", DAY2, "step_order")
    assert [(r["step_order"], r["step"], r["removed"]) for r in stats] == [
        (1, "read_events", 0), (2, "exact_duplicates", 1), (3, "bursts", 1), (4, "abnormal_users", 30),
        (5, "kcore", 4), (6, "truncation", 0), (7, "users_with_test_row", 0)]
    assert [(r["user_id"], r["events"], r["max_events_per_day"], r["threshold"])
            for r in rows(lake, "abnormal_users", DAY2, "user_id")] == [(3, 30, 30, 20.0)]

    # old indexes unchanged, the new item appended after them; item 15 did not survive k-core
    items = rows(lake, "item_vocab", None, "item_index")
    assert items[:3] == day1_items
    assert [(r["item_id"], r["item_index"], r["first_seen_ds"]) for r in items[3:]] == [(14, 5, DAY2)]
    categories = rows(lake, "category_vocab", None, "category_index")
    assert [(r["category_id"], r["category_index"]) for r in categories] == [(7, 2), (8, 3), (9, 4)]
    assert [(r["item_index"], r["category_index"]) for r in rows(lake, "item_categories", DAY2, "item_index")] == [
        (2, 2), (3, 2), (4, 3), (5, 4)]

    sequences = {r["user_id"]: r for r in rows(lake, "user_sequences", DAY2, "user_id")}
    assert sorted(sequences) == [1, 2]
    assert (sequences[1]["items"], sequences[1]["length"], sequences[1]["truncated"]) == ([2, 3, 4, 5, 2], 5, 0)
    assert sequences[2]["items"] == [2, 3, 4, 5]
    examples = {(r["user_id"], r["split"]): (r["items"], r["targets"])
                for r in rows(lake, "train_examples", DAY2, "user_id", "split")}
    assert examples == {
        (1, "train"): ([2, 3], [3, 4]), (1, "valid"): ([2, 3, 4], [0, 0, 5]), (1, "test"): ([2, 3, 4, 5], [0, 0, 0, 2]),
        (2, "train"): ([2], [3]), (2, "valid"): ([2, 3], [0, 4]), (2, "test"): ([2, 3, 4], [0, 0, 5]),
    }
    assert rows(lake, "user_sequences", DAY1, "user_id")[0]["items"] == [2, 3, 4]  # day 1 left as it was

    before = {name: rows(lake, name, DAY2 if name not in ("item_vocab", "category_vocab") else None,
                         *pa.schema(lake.read(name).schema).names[:2]) for name in OUTPUTS}
    vocab_versions = (lake.version("item_vocab"), lake.version("category_vocab"))
    again = featurize(stage_config, DAY2, spark=spark)
    assert (again.new_items, again.new_categories) == (0, 0)
    assert (lake.version("item_vocab"), lake.version("category_vocab")) == vocab_versions  # nothing appended
    after = {name: rows(lake, name, DAY2 if name not in ("item_vocab", "category_vocab") else None,
                        *pa.schema(lake.read(name).schema).names[:2]) for name in OUTPUTS}
    assert after == before


def test_an_empty_day_or_nothing_left_after_cleaning_writes_nothing(stage_config, spark):
    lake = Lake.from_config(stage_config, spark=spark)
    with pytest.raises(EmptyInputError, match="seqrec ingest"):
        featurize(stage_config, DAY1, spark=spark)  # no events table at all
    lake.write("events", events_table(DAY1_EVENTS), partition=DAY1)
    with pytest.raises(EmptyInputError, match=f"no events for ds={DAY3}"):
        featurize(stage_config, DAY3, spark=spark)
    strict = stage_config.with_overrides({"featurize": {"kcore_user_min_events": 100}})
    with pytest.raises(EmptyInputError, match="lower featurize.kcore"):
        featurize(strict, DAY1, spark=spark)
    assert [name for name in OUTPUTS if lake.exists(name)] == []


def test_a_day_missing_inside_the_window_is_refused_or_warned_about(stage_config, spark, caplog):
    lake = Lake.from_config(stage_config, spark=spark)
    lake.write("events", events_table(DAY1_EVENTS), partition=DAY1)
    lake.write("events", events_table([(u, i, c, b, DAY3, t) for u, i, c, b, _, t in DAY2_EVENTS]), partition=DAY3)
    backfill = f"airflow backfill create --dag-id seqrec_nightly --from-date {DAY2} --to-date {DAY2}"
    with pytest.raises(InputError, match=rf"no ingest run for 1 day\(s\) before ds={DAY3}: {DAY2}\..*{backfill}"):
        featurize(stage_config, DAY3, spark=spark)
    assert [name for name in OUTPUTS if lake.exists(name)] == []

    warned = stage_config.with_overrides({"featurize": {"missing_days": "warn"}})
    featurize(warned, DAY3, spark=spark)
    assert f"before ds={DAY3}: {DAY2}" in caplog.text and lake.exists("train_examples")


def reference_sequences(csv: Path, ds: str, burst_seconds: int, k: int) -> dict[int, list[int]]:
    """Item ids per user after cleaning, computed in plain Python from the raw Taobao CSV (an oracle)."""
    funnel = {"pv": 1, "fav": 3, "cart": 4, "buy": 5}
    zone = zoneinfo.ZoneInfo("Asia/Shanghai")
    events = {
        (int(u), int(i), int(c), funnel[b], int(t))
        for u, i, c, b, t in (line.split(",") for line in csv.read_text().splitlines())
        if dt.datetime.fromtimestamp(int(t), zone).date().isoformat() <= ds
    }  # a set: exact duplicates gone
    kept, last_seen = [], {}
    for u, i, c, b, t in sorted(events, key=lambda e: (e[0], e[1], e[3], e[4], e[2])):
        previous = last_seen.get((u, i, b))
        last_seen[(u, i, b)] = t
        if previous is None or t - previous > burst_seconds:
            kept.append((u, i, c, b, t))
    while True:
        users = Counter(e[0] for e in kept)
        items = Counter(e[1] for e in kept)
        core = [e for e in kept if users[e[0]] >= k and items[e[1]] >= k]
        if len(core) == len(kept):
            break
        kept = core
    out: dict[int, list[int]] = {}
    for u, i, _c, _b, _t in sorted(kept, key=lambda e: (e[0], e[4], e[3], e[1], e[2])):
        out.setdefault(u, []).append(i)
    return out


@pytest.mark.skipif(not TAOBAO_SAMPLE.exists(), reason="tests/fixtures/taobao_sample.csv is missing")
def test_taobao_sample_ingest_then_featurize_matches_a_plain_python_reference(config: Config, spark):
    # k-core 5 leaves almost nothing of a 43-user sample; the default stays 5 (featurization/defaults.yaml)
    max_len = 20
    settings = {"kcore_user_min_events": 2, "kcore_item_min_events": 2, "max_len": max_len}
    config = config.with_overrides({"featurize": settings})
    ingest(config, DAY2, str(TAOBAO_SAMPLE), spark=spark, now=NOW)
    ingest(config, DAY1, str(TAOBAO_SAMPLE), spark=spark, now=NOW)
    result = featurize(config, DAY2, spark=spark)
    lake = Lake.from_config(config)

    stats = rows(lake, "featurize_stats", DAY2, "step_order")
    # every sample row of a day up to DAY2 (a few stray ones of September included) is in its day's partition
    assert stats[0]["rows_in"] == sum(n for (day, _), n in lake.row_counts("events").items() if day <= DAY2)
    for before, after in itertools.pairwise(stats[:6]):
        assert before["rows_out"] == after["rows_in"]
    assert all(r["removed"] == r["rows_in"] - r["rows_out"] for r in stats)

    vocab = {r["item_id"]: r["item_index"] for r in lake.read("item_vocab").to_pylist()}
    expected = reference_sequences(TAOBAO_SAMPLE, DAY2, burst_seconds=60, k=2)
    sequences = {r["user_id"]: r for r in lake.read("user_sequences", partition=DAY2).to_pylist()}
    assert sorted(sequences) == sorted(expected)
    for user, row in sequences.items():
        full = [vocab[i] for i in expected[user]]
        assert (row["length"], row["truncated"]) == (len(full), max(0, len(full) - max_len))
        assert row["items"] == full[-max_len:]
        assert len(row["behaviours"]) == len(row["categories"]) == len(row["gap_buckets"]) == len(row["items"])
        assert set(row["behaviours"]) <= {1, 2, 3, 4, 5} and min(row["categories"]) >= 2
        assert (row["gap_buckets"][0] == 1) == (row["truncated"] == 0)
        assert all(2 <= g <= 24 for g in row["gap_buckets"][1:])

    examples = lake.read("train_examples", partition=DAY2).to_pylist()
    assert Counter(r["split"] for r in examples) == Counter(result.examples)
    for row in examples:
        full = [vocab[i] for i in expected[row["user_id"]]]
        assert len(row["items"]) == len(row["targets"]) <= max_len
        if row["split"] == "test":
            assert row["items"] == full[:-1][-max_len:]
            assert row["targets"] == [0] * (len(row["items"]) - 1) + [full[-1]]
    # Each file holds every split of its users, so sharding by row group gives each worker training rows.
    for uri in lake.file_uris("train_examples", partition=DAY2):
        in_file = pq.read_table(uri, columns=["user_id", "split"]).to_pylist()
        users = {r["user_id"] for r in in_file}
        assert Counter(r["split"] for r in in_file) == Counter(
            {split: sum(1 for r in examples if r["user_id"] in users and r["split"] == split)
             for split in ("train", "valid", "test")})
