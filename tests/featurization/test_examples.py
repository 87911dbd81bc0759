"""Training examples: leave-one-out and time split rows, truncation to max_len, users with few events."""

import datetime as dt

import pytest
from pyspark.sql import functions as F

from featurization import examples, sequences
from tests.featurization.conftest import DAY1, DAY2

pytestmark = pytest.mark.spark


def example_rows(make_events, rows, split, max_len, cutoff_ds=None) -> dict:
    events = make_events(rows)
    indexed = events.withColumn("item_index", F.col("item_id").cast("int")).withColumn(
        "category_index", F.col("category_id").cast("int"))
    histories = sequences.user_steps(indexed, max_gap_bucket=24, cutoff_ds=cutoff_ds)
    windows = histories.select("user_id", *examples.example_window(F.col("steps"), max_len, split))
    out = {}
    for r in examples.train_examples(windows, max_len, DAY2).collect():
        assert len(r.items) == len(r.behaviours) == len(r.categories) == len(r.gap_buckets) == len(r.targets)
        assert len(r.days) == len(r.items) == len(r.target_behaviours)
        assert r.ds == DAY2
        out[(r.user_id, r.split)] = (r.items, r.targets)
    return out


def user(user_id: int, items: list[int], ds: str = DAY1, start: int = 0):
    return [(user_id, item, 100 + item, "click", ds, start + 60 * k) for k, item in enumerate(items)]


def test_leave_one_out_rows_truncated_to_max_len(make_events):
    rows = (user(1, [11, 12, 13, 14, 15, 16]) + user(2, [21, 22, 23, 24]) + user(3, [31, 32, 33])
            + user(4, [41, 42]) + user(5, [51]) + user(6, list(range(61, 69))))
    got = example_rows(make_events, rows, "leave_one_out", max_len=3)
    assert got == {
        (1, "train"): ([11, 12, 13], [12, 13, 14]),
        (1, "valid"): ([12, 13, 14], [0, 0, 15]),
        (1, "test"): ([13, 14, 15], [0, 0, 16]),
        (2, "train"): ([21], [22]),
        (2, "valid"): ([21, 22], [0, 23]),
        (2, "test"): ([21, 22, 23], [0, 0, 24]),
        (3, "valid"): ([31], [32]),
        (3, "test"): ([31, 32], [0, 33]),
        (4, "train"): ([41], [42]),          # fewer than 3 events: training only, as in SASRec
        (6, "train"): ([63, 64, 65], [64, 65, 66]),
        (6, "valid"): ([64, 65, 66], [0, 0, 67]),
        (6, "test"): ([65, 66, 67], [0, 0, 68]),
    }


def test_positions_carry_the_input_events_behaviour_category_and_gap(make_events):
    rows = [(1, 11, 7, "click", DAY1, 0), (1, 12, 8, "cart", DAY1, 3), (1, 13, 9, "purchase", DAY1, 103),
            (1, 14, 7, "click", DAY1, 203)]
    events = make_events(rows).withColumn("item_index", F.col("item_id").cast("int")).withColumn(
        "category_index", F.col("category_id").cast("int"))
    windows = sequences.user_steps(events, max_gap_bucket=24).select(
        "user_id", *examples.example_window(F.col("steps"), 10, "leave_one_out"))
    rows = {r.split: r for r in examples.train_examples(windows, 10, DAY2).collect()}
    test = rows["test"]
    assert (test.items, test.behaviours, test.categories, test.gap_buckets, test.targets) == (
        [11, 12, 13], [1, 4, 5], [7, 8, 9], [1, 4, 8], [0, 0, 14])
    day = (dt.date.fromisoformat(DAY1) - dt.date(1970, 1, 1)).days
    assert test.days == [day] * 3, "each input's local day, days since 1970-01-01"
    assert test.target_behaviours == [0, 0, 1], "the held-out click"
    assert rows["valid"].target_behaviours == [0, 5], "the held-out purchase"
    assert rows["train"].target_behaviours == [4], "the behaviour of every train target"


def test_time_split_tests_the_first_event_after_the_cutoff(make_events):
    rows = (user(1, [11, 12, 13, 14]) + user(1, [15, 16], ds=DAY2)
            + user(2, [21, 22], ds=DAY2)
            + user(3, [31]) + user(3, [32], ds=DAY2)
            + user(4, [41, 42]))
    got = example_rows(make_events, rows, "time", max_len=3, cutoff_ds=DAY1)
    assert got == {
        (1, "train"): ([11, 12], [12, 13]),
        (1, "valid"): ([11, 12, 13], [0, 0, 14]),
        (1, "test"): ([12, 13, 14], [0, 0, 15]),
        (3, "test"): ([31], [32]),
        (4, "valid"): ([41], [42]),
    }
