"""Per-user histories: order, time-gap buckets and truncation to the most recent L events."""

import pytest
from pyspark.sql import functions as F

from featurization import sequences
from lake.schemas import BEHAVIOUR_INDEX
from tests.featurization.conftest import DAY1, DAY2, at

pytestmark = pytest.mark.spark


def indexed(events):
    """Hand-made events with vocabulary indexes equal to the raw ids (ids are small in these tests)."""
    return events.withColumn("item_index", F.col("item_id").cast("int")).withColumn(
        "category_index", F.col("category_id").cast("int"))


def test_steps_are_ordered_bucketed_and_truncated_to_the_most_recent(make_events):
    rows = [
        (1, 13, 3, "click", DAY1, 100 + 3),        # 3 s after the previous event
        (1, 10, 3, "click", DAY1, 100),            # first event
        (1, 12, 4, "purchase", DAY1, 100),         # same second: purchase sorts after the click
        (1, 14, 3, "click", DAY1, 100 + 3 + 100),  # 100 s later
        (1, 15, 5, "cart", DAY2, 100 + 3 + 100),   # one day later
        (2, 20, 3, "click", DAY1, 0),
    ]
    histories = sequences.user_steps(indexed(make_events(rows)), max_gap_bucket=30)
    recent = histories.select(
        "user_id", sequences.recent_steps(F.col("steps"), 4).alias("recent"), "length", "last_event_time")
    table = {r.user_id: r for r in sequences.user_sequences(recent, ds=DAY2).collect()}

    user = table[1]
    assert user.length == 5 and user.truncated == 1
    assert user.items == [12, 13, 14, 15]  # item 10 was the oldest and is dropped
    assert user.behaviours == [BEHAVIOUR_INDEX["purchase"], 1, 1, BEHAVIOUR_INDEX["cart"]]
    assert user.categories == [4, 3, 3, 5]
    # gaps 0 s, 3 s, 100 s, 86400 s -> floor(log2(1 + gap)) + 2; the dropped first event had bucket 1
    assert user.gap_buckets == [2, 4, 8, 18]
    assert user.last_event_time == at(DAY2, 203).replace(tzinfo=None)  # Spark returns naive UTC
    assert user.ds == DAY2

    assert (table[2].items, table[2].gap_buckets, table[2].length, table[2].truncated) == ([20], [1], 1, 0)


def test_gap_bucket_is_log2_of_the_gap_capped(spark):
    gaps = [0, 1, 2, 3, 4, 7, 8, 1023, 1024, 86_400, 2**22 - 1, 2**22, 10**9]
    frame = spark.createDataFrame([(g,) for g in gaps], "gap long")
    buckets = frame.select(
        sequences.gap_bucket(F.col("gap") * 1_000_000 + 999_999, max_gap_bucket=24).alias("capped"),
        sequences.gap_bucket(F.col("gap") * 1_000_000, max_gap_bucket=100).alias("uncapped"),
    ).collect()
    # floor(log2(1 + g)) + 2 == bit_length(1 + g) + 1, exactly; sub-second parts are floored away
    assert [b.uncapped for b in buckets] == [(g + 1).bit_length() + 1 for g in gaps]
    assert [b.capped for b in buckets] == [min((g + 1).bit_length() + 1, 24) for g in gaps]
