"""Vocabulary appends: new ids only, numbered after the largest index in (first seen, id) order."""

import datetime as dt

import pytest

from featurization import indexing
from lake.schemas import UNKNOWN_INDEX

pytestmark = pytest.mark.spark

T0 = dt.datetime(2017, 11, 25, tzinfo=dt.UTC)


def _t(seconds: int) -> dt.datetime:
    return T0 + dt.timedelta(seconds=seconds)


def test_new_ids_are_appended_after_the_largest_index_in_first_seen_order(spark):
    existing = spark.createDataFrame([(10, 2, "2017-11-24"), (11, 3, "2017-11-24")],
                                     "item_id long, item_index int, first_seen_ds string")
    first_seen = spark.createDataFrame([(11, _t(5)), (13, _t(3)), (12, _t(3)), (14, _t(1))],
                                       "item_id long, first_time timestamp")
    new = indexing.new_vocab_entries(first_seen, existing, "item_id", "item_index", "2017-11-25")
    assert [tuple(r) for r in new.orderBy("item_index").collect()] == [
        (14, 4, "2017-11-25"), (12, 5, "2017-11-25"), (13, 6, "2017-11-25"),
    ]
    empty = existing.where("false")
    fresh = indexing.new_vocab_entries(first_seen, empty, "item_id", "item_index", "2017-11-25")
    assert [(r.item_id, r.item_index) for r in fresh.orderBy("item_index").collect()] == [
        (14, 2), (12, 3), (13, 4), (11, 5),
    ]


def test_numbering_spans_hours_in_one_global_order_without_a_single_partition_step(spark):
    existing = spark.createDataFrame([(1, 2, "2017-11-24")], "item_id long, item_index int, first_seen_ds string")
    # ids first seen across three days, several per second, some on the very edge of an hour
    seconds = [(item * 7_919) % 260_000 for item in range(2, 600)] + [3_599, 3_600, 7_199]
    first_seen = spark.createDataFrame([(item, _t(s)) for item, s in enumerate(seconds, start=2)],
                                       "item_id long, first_time timestamp")
    new = indexing.new_vocab_entries(first_seen, existing, "item_id", "item_index", "2017-11-25")
    expected = sorted(enumerate(seconds, start=2), key=lambda pair: (pair[1], pair[0]))
    assert [(r.item_id, r.item_index) for r in new.orderBy("item_index").collect()] == [
        (item, index) for index, (item, _) in enumerate(expected, start=3)]
    # every id is numbered inside its own hour's task: no step gathers all ids into one partition
    assert "SinglePartition" not in new._jdf.queryExecution().executedPlan().toString()


def test_each_vocabulary_item_gets_its_latest_category_or_unknown(spark):
    events = spark.createDataFrame(
        [(10, 7, _t(0)), (10, 8, _t(60)), (11, 7, _t(30)), (12, 9, _t(0))],
        "item_id long, category_id long, event_time timestamp",
    )
    items = spark.createDataFrame([(10, 2), (11, 3), (12, 4), (13, 5)], "item_id long, item_index int")
    categories = spark.createDataFrame([(7, 2), (8, 3)], "category_id long, category_index int")
    rows = indexing.item_categories(items, categories, indexing.last_category(events), "2017-11-25").collect()
    assert sorted((r.item_index, r.category_index, r.ds) for r in rows) == [
        (2, 3, "2017-11-25"),            # item 10 moved from category 7 to 8
        (3, 2, "2017-11-25"),
        (4, UNKNOWN_INDEX, "2017-11-25"),  # category 9 is not in the vocabulary
        (5, UNKNOWN_INDEX, "2017-11-25"),  # item 13 has no events
    ]
