"""Publish checks on hand-made partitions: a valid one passes, each kind of corruption is named."""

from __future__ import annotations

import datetime as dt

import pytest

from scoring.checks import Expectations, validation_failures

pytestmark = pytest.mark.spark
DS = "2017-12-03"
AT = dt.datetime(2017, 12, 4, tzinfo=dt.UTC)
SCHEMA = ("user_id long, rank int, item_id long, score float, source string, short_list boolean, "
          "model_version string, generated_at timestamp, ds string")


def recs(spark, rows: list[tuple]):
    """rows: (user, rank, item, score, source, short_list[, model_version[, ds]])."""
    full = [(*r[:6], r[6] if len(r) > 6 else "1", AT, r[7] if len(r) > 7 else DS) for r in rows]
    return spark.createDataFrame(full, SCHEMA)


def expectations(spark, *, active=(1, 2, 3), excluded=((1, 105),), denied=(107,)) -> Expectations:
    return Expectations(
        ds=DS, top_n=2,
        active=spark.createDataFrame([(u,) for u in active], "user_id long"),
        excluded_pairs=spark.createDataFrame(list(excluded), "user_id long, item_id long"),
        denied=spark.createDataFrame([(i,) for i in denied], "item_id long"),
        vocab=spark.createDataFrame([(100 + i, i) for i in range(2, 10)], "item_id long, item_index int"),
        item_vocab_size=8,
    )


VALID = [
    (1, 1, 102, 0.9, "model", False), (1, 2, 103, 0.5, "model", False),
    (2, 1, 104, 3.0, "popular", False), (2, 2, 102, 1.0, "popular", False),
    (3, 1, 106, 0.2, "model", True),  # the rules left one item
]


def test_a_valid_partition_passes(spark):
    assert validation_failures(recs(spark, VALID), expectations(spark)) == []


def test_every_kind_of_corruption_is_reported(spark):
    broken = [
        (1, 1, 105, 0.9, "model", False), (1, 2, 103, 0.5, "model", False),  # 105 was bought by user 1
        (2, 1, 104, float("nan"), "popular", False), (2, 2, 104, 1.0, "popular", False),  # NaN, same item twice
        (4, 1, 102, 0.2, "model", False),  # one item without short_list; user 4 is not active
        (5, 1, 107, 0.3, "model", True), (5, 2, 108, 0.1, "model", True),  # denied; index 8 >= vocab size 8
        (6, 2, 102, 0.3, "other", True),  # rank starts at 2; unknown source
        (7, 1, 102, 0.3, "model", False, "2"), (7, 2, 103, 0.2, "popular", False, "2", "2017-12-02"),
    ]
    failures = "\n".join(validation_failures(recs(spark, broken), expectations(spark, active=(1, 2, 3))))
    for expected in [
        "1 user(s) have a list not of exactly 2 items",  # user 4
        "1 user(s) flagged short_list have 2 or more items",  # user 5
        "1 user(s) have the same item more than once",  # user 2
        "1 user(s) have ranks that are not exactly 1..",  # user 6
        "1 user(s) mix sources",  # user 7
        "1 row(s) have a NaN or infinite score",
        "1 row(s) have a source other than",
        "1 row(s) carry a ds other than",
        "model versions 1 .. 2 in one partition",
        "1 active user(s) have no recommendations",  # user 3
        "4 recommended user(s) are not active",  # users 4, 5, 6, 7
        "1 row(s) recommend an item excluded for that user",
        "1 row(s) recommend a deny-listed item",
        "1 row(s) recommend padding, unknown or out-of-vocabulary items",
    ]:
        assert expected in failures, f"missing {expected!r} in:\n{failures}"


def test_an_empty_partition_fails(spark):
    assert validation_failures(recs(spark, []), expectations(spark)) == [f"partition ds={DS} is empty"]
