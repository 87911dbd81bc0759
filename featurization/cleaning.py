"""Cleaning steps of featurize as DataFrame -> DataFrame transforms (no table IO, no Python UDFs).

Input rows are events with ``user_id, item_id, category_id, behaviour_index, event_time, ds``.
Steps, in order:

1. exact duplicates: the same user, item, category, behaviour and event_time seen again;
2. bursts: within one (user, item, behaviour) in time order, an event that follows the previous one by at
   most ``burst_window_seconds`` is collapsed into it. Chained: the gap is measured to the previous
   repeat, so a burst lasts as long as repeats keep coming within the window;
3. abnormal users: a user whose busiest day holds more events than
   ``max(quantile_q(events per user-day), min_events_per_day)`` is excluded;
4. iterative k-core: users and items with fewer than k events are removed until none is left.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from lake.schemas import BEHAVIOUR_INDEX

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame

__all__ = [
    "abnormal_threshold",
    "abnormal_users",
    "behaviour_index",
    "events_per_user_day",
    "flag_duplicates_and_bursts",
    "kcore",
    "user_item_pairs",
]

MICROS = 1_000_000


def behaviour_index(behaviour: str | Column) -> Column:
    """The canonical behaviour name -> its index in lake.schemas.BEHAVIOUR_INDEX (1 = click ... 5 = purchase)."""
    from pyspark.sql import functions as F

    mapping = F.create_map(*[F.lit(x) for name, index in BEHAVIOUR_INDEX.items() for x in (name, index)])
    column = F.col(behaviour) if isinstance(behaviour, str) else behaviour
    return mapping[column].cast("int")


def flag_duplicates_and_bursts(events: DataFrame, burst_window_seconds: int) -> DataFrame:
    """``events`` plus boolean ``is_duplicate`` and ``is_burst`` (never both); keep rows where neither is set.

    One window over (user, item, behaviour) ordered by (event_time, category_id) finds both: an exact
    duplicate repeats its predecessor's event_time and category, a burst follows it within the window.
    ``burst_window_seconds`` <= 0 turns burst collapsing off.
    """
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    window = Window.partitionBy("user_id", "item_id", "behaviour_index").orderBy("event_time", "category_id")
    previous_time = F.lag("event_time").over(window)
    is_duplicate = F.coalesce(
        (previous_time == F.col("event_time")) & (F.lag("category_id").over(window) == F.col("category_id")),
        F.lit(False),
    )
    if burst_window_seconds > 0:
        gap_micros = F.unix_micros(F.col("event_time")) - F.unix_micros(previous_time)
        is_burst = ~is_duplicate & F.coalesce(gap_micros <= burst_window_seconds * MICROS, F.lit(False))
    else:
        is_burst = F.lit(False)
    return events.withColumn("is_duplicate", is_duplicate).withColumn("is_burst", is_burst)


def events_per_user_day(events: DataFrame) -> DataFrame:
    """``user_id, ds, events``: how many events each user has on each day."""
    from pyspark.sql import functions as F

    return events.groupBy("user_id", "ds").agg(F.count(F.lit(1)).alias("events"))


def abnormal_threshold(user_days: DataFrame, quantile: float, min_events_per_day: int) -> DataFrame:
    """One row, ``threshold``: max(exact ``quantile`` of events per user-day (interpolated), the floor).

    Args:
        user_days: ``events_per_user_day`` of the events to judge.
        quantile: q in [0, 1].
        min_events_per_day: the floor, so small or quiet data sets keep their most active real users.
    """
    from pyspark.sql import functions as F

    return user_days.agg(
        F.greatest(F.percentile("events", F.lit(quantile)), F.lit(float(min_events_per_day))).alias("threshold")
    )


def abnormal_users(user_days: DataFrame, threshold: float) -> DataFrame:
    """Users whose busiest day exceeds ``threshold``: ``user_id, events, max_events_per_day, threshold``."""
    from pyspark.sql import functions as F

    return (
        user_days.groupBy("user_id")
        .agg(F.sum("events").alias("events"), F.max("events").alias("max_events_per_day"))
        .where(F.col("max_events_per_day") > threshold)
        .withColumn("threshold", F.lit(float(threshold)))
    )


def user_item_pairs(events: DataFrame) -> DataFrame:
    """``user_id, item_id, events, first_time``: the user-item graph k-core runs on (much smaller than events)."""
    from pyspark.sql import functions as F

    return events.groupBy("user_id", "item_id").agg(
        F.count(F.lit(1)).alias("events"), F.min("event_time").alias("first_time")
    )


def kcore(
    pairs: DataFrame, user_min_events: int, item_min_events: int, max_iterations: int
) -> tuple[DataFrame, int, bool]:
    """The k-core of the user-item graph: ``(pairs, rounds that removed something, reached the fixed point)``.

    Each round removes the pairs of users with fewer than ``user_min_events`` events and of items with
    fewer than ``item_min_events`` (summing ``events`` over the current pairs), until a round finds nothing
    to remove or ``max_iterations`` rounds removed something.

    Each round first collects the ids to remove, which are few next to the pairs, so the round that finds
    none (the fixed point) never rewrites the pairs; the pairs are checkpointed after each removal so the
    plan does not grow.

    Args:
        pairs: ``user_item_pairs`` (any extra columns are kept).
    """
    from pyspark.sql import functions as F

    def too_few(current: DataFrame, key: str, minimum: int) -> DataFrame:
        counts = current.groupBy(key).agg(F.sum("events").alias("n"))
        return counts.where(F.col("n") < minimum).select(key).localCheckpoint(eager=True)

    pairs = pairs.localCheckpoint(eager=True)
    rounds = 0
    while True:
        users = too_few(pairs, "user_id", user_min_events)
        items = too_few(pairs, "item_id", item_min_events)
        if users.isEmpty() and items.isEmpty():
            return pairs, rounds, True
        if rounds == max_iterations:
            return pairs, rounds, False
        # Items are broadcast (a catalogue at most) so the pairs keep their partitioning by user.
        pairs = (
            pairs.join(users, "user_id", "left_anti")
            .join(F.broadcast(items), "item_id", "left_anti")
            .localCheckpoint(eager=True)
        )
        rounds += 1
