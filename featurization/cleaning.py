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

    Each round keeps the pairs whose user has at least ``user_min_events`` events and whose item has at
    least ``item_min_events`` (summing ``events`` over the current pairs), until a round removes nothing
    or ``max_iterations`` rounds removed something. The pairs are checkpointed each round so the plan
    does not grow; a round is one Spark job.

    Args:
        pairs: ``user_item_pairs`` (any extra columns are kept).
    """
    from pyspark.sql import functions as F

    def one_round(current: DataFrame) -> DataFrame:
        users = current.groupBy("user_id").agg(F.sum("events").alias("n")).where(F.col("n") >= user_min_events)
        items = current.groupBy("item_id").agg(F.sum("events").alias("n")).where(F.col("n") >= item_min_events)
        return (
            current.join(users.select("user_id"), "user_id", "left_semi")
            .join(items.select("item_id"), "item_id", "left_semi")
        )

    pairs = pairs.localCheckpoint(eager=True)
    count = pairs.count()
    rounds = 0
    while rounds < max_iterations:
        kept = one_round(pairs).localCheckpoint(eager=True)
        kept_count = kept.count()
        if kept_count == count:
            return pairs, rounds, True
        pairs, count, rounds = kept, kept_count, rounds + 1
    return pairs, rounds, False
