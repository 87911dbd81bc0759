"""Who is scored and with what: windows, activity, exclusions, popularity and the joined user rows."""

from __future__ import annotations

import datetime as dt

import pytest

from scoring.inputs import (
    active_users,
    excluded_items,
    excluded_pairs,
    item_popularity,
    scoring_users,
    window_start,
)

DS = "2017-12-03"
AT = dt.datetime(2017, 12, 3, tzinfo=dt.UTC)


def test_window_start_counts_ds_itself():
    assert window_start(DS, 1) == DS
    assert window_start(DS, 3) == "2017-12-01"
    assert window_start("2017-03-01", 2) == "2017-02-28"


@pytest.fixture
def events(spark):
    rows = [  # (user, item, behaviour, ds)
        (1, 102, "click", DS), (1, 103, "purchase", "2017-12-02"), (1, 104, "purchase", "2017-11-01"),
        (2, 102, "cart", "2017-12-01"), (2, 102, "click", "2017-12-01"), (3, 105, "click", "2017-11-30"),
        (4, 102, "click", "2017-12-04"),  # after ds: never counted
        (5, 999, "purchase", DS),  # an item outside the vocabulary
    ]
    return spark.createDataFrame(
        [(u, i, 7, b, AT, "f.csv", d) for u, i, b, d in rows],
        "user_id long, item_id long, category_id long, behaviour string, event_time timestamp, "
        "source_file string, ds string")


@pytest.fixture
def vocab(spark):
    return spark.createDataFrame([(100 + i, i) for i in range(2, 7)], "item_id long, item_index int")


@pytest.mark.spark
def test_active_users_had_an_event_in_the_window_up_to_ds(events):
    assert sorted(r.user_id for r in active_users(events, DS, 3).collect()) == [1, 2, 5]
    assert sorted(r.user_id for r in active_users(events, DS, 4).collect()) == [1, 2, 3, 5]


@pytest.mark.spark
def test_excluded_items_are_the_bought_items_in_the_window_as_indexes(events, vocab):
    pairs = excluded_pairs(events, DS, 30, ("purchase",))
    assert sorted(tuple(r) for r in pairs.collect()) == [(1, 103), (5, 999)]
    items = {r.user_id: sorted(r.excluded) for r in excluded_items(pairs, vocab).collect()}
    assert items == {1: [3]}, "item 999 has no index and cannot be recommended anyway"
    wider = excluded_pairs(events, DS, 40, ("purchase", "cart"))
    assert sorted(tuple(r) for r in wider.collect()) == [(1, 103), (1, 104), (2, 102), (5, 999)]


@pytest.mark.spark
def test_popularity_counts_chosen_behaviours_in_the_window(events, vocab):
    counts = {r.item_index: r.events for r in item_popularity(events, vocab, DS, 3, ("click", "cart")).collect()}
    assert counts == {2: 3}, "102: one click of user 1, cart + click of user 2; 105 is outside the window"


@pytest.mark.spark
def test_scoring_users_are_the_active_users_with_their_sequence_or_null(spark, events, vocab):
    sequences = spark.createDataFrame(
        [(1, [2, 3], [1, 5], [2, 2], [0, 1]), (9, [4], [1], [3], [0])],
        "user_id long, items array<int>, behaviours array<int>, categories array<int>, gap_buckets array<int>")
    excluded = excluded_items(excluded_pairs(events, DS, 30, ("purchase",)), vocab)
    rows = {r.user_id: r for r in scoring_users(active_users(events, DS, 3), sequences, excluded).collect()}
    assert sorted(rows) == [1, 2, 5], "9 has a sequence but is not active"
    assert (rows[1]["items"], rows[1]["excluded"]) == ([2, 3], [3])
    assert (rows[2]["items"], rows[2]["excluded"]) == (None, None)
    no_rules = scoring_users(active_users(events, DS, 3), sequences, None).collect()
    assert all(r.excluded is None for r in no_rules)
