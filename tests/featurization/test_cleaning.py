"""Cleaning steps on hand-made events with known answers: duplicates, bursts, abnormal users, k-core."""

import pytest

from featurization import cleaning
from tests.featurization.conftest import DAY1, DAY2

pytestmark = pytest.mark.spark


def test_exact_duplicates_and_chained_bursts_are_flagged_separately(make_events):
    rows = [
        ((1, 10, 7, "click", DAY1, 0), (False, False)),
        ((1, 10, 7, "click", DAY1, 0), (True, False)),    # exact duplicate
        ((1, 10, 8, "click", DAY1, 0), (False, True)),    # same second, other category: not a duplicate
        ((1, 10, 7, "click", DAY1, 30), (False, True)),   # burst: 30 s after the previous click on item 10
        ((1, 10, 7, "click", DAY1, 80), (False, True)),   # burst, chained: 50 s after the previous repeat
        ((1, 10, 7, "click", DAY1, 200), (False, False)),  # kept: 120 s after the previous repeat
        ((1, 10, 7, "cart", DAY1, 10), (False, False)),   # kept: another behaviour
        ((1, 11, 7, "click", DAY1, 5), (False, False)),   # kept: another item
        ((2, 10, 7, "click", DAY1, 1), (False, False)),   # kept: another user
    ]
    events = make_events(row for row, _ in rows)

    def flags(burst_window_seconds: int) -> list:
        flagged = cleaning.flag_duplicates_and_bursts(events, burst_window_seconds).collect()
        return sorted((r.user_id, r.item_id, r.category_id, r.behaviour_index, r.event_time,
                       r.is_duplicate, r.is_burst) for r in flagged)

    def expected(burst_window_seconds: int) -> list:
        table = events.collect()  # same rows, same order as `rows`
        return sorted(
            (e.user_id, e.item_id, e.category_id, e.behaviour_index, e.event_time, dup,
             burst and burst_window_seconds > 0)
            for e, (_, (dup, burst)) in zip(table, rows, strict=True)
        )

    assert flags(60) == expected(60)
    assert flags(0) == expected(0)


def test_a_user_whose_busiest_day_exceeds_the_quantile_or_floor_is_abnormal(make_events):
    rows = (
        [(1, 100 + i, 7, "click", DAY1, i) for i in range(10)]      # user 1: 10 on day 1
        + [(2, 100 + i, 7, "click", DAY1, i) for i in range(3)]     # user 2: 3 on day 1, 2 on day 2
        + [(2, 100 + i, 7, "click", DAY2, i) for i in range(2)]
        + [(3, 100, 7, "click", DAY1, 0)]                           # user 3: 1 on day 1
    )
    user_days = cleaning.events_per_user_day(make_events(rows))
    # events per user-day: 10, 3, 2, 1 -> median 2.5
    assert cleaning.abnormal_threshold(user_days, 0.5, 0).first().threshold == 2.5
    assert cleaning.abnormal_threshold(user_days, 0.5, 5).first().threshold == 5.0
    abnormal = cleaning.abnormal_users(user_days, 2.5).orderBy("user_id").collect()
    assert [(r.user_id, r.events, r.max_events_per_day, r.threshold) for r in abnormal] == [
        (1, 10, 10, 2.5), (2, 5, 3, 2.5),
    ]
    assert [r.user_id for r in cleaning.abnormal_users(user_days, 5.0).collect()] == [1]


def test_kcore_repeats_until_every_user_and_item_has_k_events(make_events):
    rows = [
        # a 2-core: users 1, 2 x items 10, 11
        (1, 10, 7, "click", DAY1, 0), (1, 11, 7, "click", DAY1, 1),
        (2, 10, 7, "click", DAY1, 2), (2, 11, 7, "click", DAY1, 3),
        # item 12 has one event; without it user 3 has one event left, so user 3 goes in round 2
        (3, 11, 7, "click", DAY1, 4), (3, 12, 7, "click", DAY1, 5),
        # user 4 clicks item 10 twice: events, not distinct items, are counted
        (4, 10, 7, "click", DAY1, 6), (4, 10, 7, "click", DAY1, 7),
        # user 5 has one event
        (5, 10, 7, "click", DAY1, 8),
    ]
    pairs = cleaning.user_item_pairs(make_events(rows))
    core, rounds, converged = cleaning.kcore(pairs, user_min_events=2, item_min_events=2, max_iterations=10)
    assert converged and rounds == 2
    assert sorted((r.user_id, r.item_id, r.events) for r in core.collect()) == [
        (1, 10, 1), (1, 11, 1), (2, 10, 1), (2, 11, 1), (4, 10, 2),
    ]

    stopped, rounds, converged = cleaning.kcore(pairs, user_min_events=2, item_min_events=2, max_iterations=1)
    assert (rounds, converged) == (1, False)
    assert {r.user_id for r in stopped.collect()} == {1, 2, 3, 4}
