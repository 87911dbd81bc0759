"""Who is scored and with what: pure DataFrame -> DataFrame transforms over ``events`` and ``user_sequences``.

A window of ``days`` before ds is the ds partitions (ds - days, ds]. Scoring and publishing both build
their inputs here, so the publish checks test exactly the rules scoring applied.
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING

from lake.sequences import INPUT_COLUMNS

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

__all__ = [
    "active_users",
    "events_in_window",
    "excluded_items",
    "excluded_pairs",
    "item_popularity",
    "scoring_users",
    "window_start",
]


def window_start(ds: str, days: int) -> str:
    """The first ds of the ``days``-day window ending at ``ds`` (inclusive)."""
    return (dt.date.fromisoformat(ds) - dt.timedelta(days=days - 1)).isoformat()


def events_in_window(events: DataFrame, ds: str, days: int) -> DataFrame:
    """Events whose ds partition lies in (ds - days, ds]; the ds filter prunes partitions."""
    from pyspark.sql import functions as F

    return events.where((F.col("ds") >= window_start(ds, days)) & (F.col("ds") <= ds))


def active_users(events: DataFrame, ds: str, days: int) -> DataFrame:
    """``user_id`` of everyone with an event in the window."""
    return events_in_window(events, ds, days).select("user_id").distinct()


def excluded_pairs(events: DataFrame, ds: str, days: int, behaviours: tuple[str, ...]) -> DataFrame:
    """Distinct (user_id, item_id) the user had one of ``behaviours`` with in the window (e.g. bought)."""
    from pyspark.sql import functions as F

    return (events_in_window(events, ds, days).where(F.col("behaviour").isin(list(behaviours)))
            .select("user_id", "item_id").distinct())


def excluded_items(pairs: DataFrame, vocab: DataFrame) -> DataFrame:
    """(user_id, item_id) pairs -> ``user_id, excluded`` (array of item indexes); ids outside the
    vocabulary cannot be recommended anyway and are dropped."""
    from pyspark.sql import functions as F

    return (pairs.join(F.broadcast(vocab.select("item_id", "item_index")), "item_id")
            .groupBy("user_id").agg(F.collect_list("item_index").alias("excluded")))


def item_popularity(events: DataFrame, vocab: DataFrame, ds: str, days: int,
                    behaviours: tuple[str, ...]) -> DataFrame:
    """``item_index, events``: how often each vocabulary item had one of ``behaviours`` in the window."""
    from pyspark.sql import functions as F

    counts = (events_in_window(events, ds, days).where(F.col("behaviour").isin(list(behaviours)))
              .groupBy("item_id").agg(F.count(F.lit(1)).alias("events")))
    indexed = counts.join(F.broadcast(vocab.select("item_id", "item_index")), "item_id")
    return indexed.select("item_index", "events")


def scoring_users(active: DataFrame, sequences: DataFrame, excluded: DataFrame | None) -> DataFrame:
    """One row per active user: their latest sequence (null when they have none) and excluded item indexes.

    Args:
        active: ``user_id`` of the users to score.
        sequences: the ``user_sequences`` partition of ds (each user's latest sequence, oldest first).
        excluded: ``user_id, excluded`` from :func:`excluded_items`; None when no behaviour excludes items.
    """
    from pyspark.sql import functions as F

    users = active.join(sequences.select("user_id", *INPUT_COLUMNS), "user_id", "left")
    if excluded is None:
        return users.withColumn("excluded", F.lit(None).cast("array<int>"))
    return users.join(excluded, "user_id", "left")
