"""Per-user event histories and the ``user_sequences`` table, as DataFrame transforms.

A user's history is one array of steps, oldest first, built with a sorted ``collect_list`` of structs
(no Python UDFs). Order: event_time, then behaviour in funnel order (click before purchase), then item id,
then category id, so events in the same second always sort the same way.

Each step carries the item index, behaviour index (lake.schemas.BEHAVIOUR_INDEX), category index and a
log-scale time-gap bucket of the seconds since the user's previous cleaned event::

    gap_bucket = 0                                            padding (added by the training loader)
               = 1                                            the user's first event
               = min(floor(log2(1 + gap_seconds)) + 2, max_gap_bucket)   otherwise

with gap_seconds = floor(microseconds between the two events / 10**6). floor(log2(1 + g)) is computed
exactly as bit_length(1 + g) - 1 (``length(bin(1 + g))``). Gaps are taken over the user's whole cleaned
history, so truncation never changes a step's bucket. Data without real timestamps (the SASRec adapter,
one second apart) gives meaningless, constant gaps.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from featurization.cleaning import MICROS

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame

__all__ = [
    "FIRST_EVENT_BUCKET", "gap_bucket", "last_steps", "recent_steps", "step_values", "user_sequences", "user_steps",
]

FIRST_EVENT_BUCKET = 1


def gap_bucket(gap_micros: Column, max_gap_bucket: int) -> Column:
    """The bucket of a non-negative gap in microseconds (see the module docstring)."""
    from pyspark.sql import functions as F

    gap_seconds = F.floor(gap_micros / F.lit(MICROS))
    return F.least(F.length(F.bin(gap_seconds + 1)) + 1, F.lit(max_gap_bucket))


def user_steps(indexed: DataFrame, max_gap_bucket: int, cutoff_ds: str | None = None) -> DataFrame:
    """One row per user: ``user_id, steps, length, last_event_time``.

    Args:
        indexed: cleaned events with ``user_id, item_id, category_id, item_index, category_index,
            behaviour_index, event_time, ds``.
        cutoff_ds: with a time split, steps whose ds is after this day get ``after_cutoff = true``.

    Returns:
        ``steps``: array<struct<t, behaviour, item_id, category_id, item, category, after_cutoff, day,
        gap_bucket>>, oldest first, all of the user's events (t = event_time in epoch microseconds, day = the
        event's local day ds in days since 1970-01-01);
        ``length``: how many.
    """
    from pyspark.sql import functions as F

    after_cutoff = F.col("ds") > cutoff_ds if cutoff_ds is not None else F.lit(False)
    step = F.struct(
        F.unix_micros("event_time").alias("t"),
        F.col("behaviour_index").alias("behaviour"),
        "item_id",
        "category_id",
        F.col("item_index").cast("int").alias("item"),
        F.col("category_index").cast("int").alias("category"),
        after_cutoff.alias("after_cutoff"),
        F.datediff(F.to_date("ds"), F.lit("1970-01-01")).alias("day"),
    )
    # Struct comparison is field by field, so sorting the structs sorts by (t, behaviour, item_id, ...).
    ordered = F.sort_array(F.collect_list(step)).alias("ordered")
    per_user = indexed.groupBy("user_id").agg(ordered, F.max("event_time").alias("last_event_time"))

    def with_gap(step: Column, i: Column) -> Column:
        previous_t = F.col("ordered")[i - 1]["t"]
        bucket = F.when(i == 0, F.lit(FIRST_EVENT_BUCKET)).otherwise(gap_bucket(step["t"] - previous_t, max_gap_bucket))
        return step.withField("gap_bucket", bucket.cast("int"))

    return per_user.select(
        "user_id",
        F.transform("ordered", with_gap).alias("steps"),
        F.size("ordered").cast("int").alias("length"),
        "last_event_time",
    )


def last_steps(steps: Column, count: int | Column) -> Column:
    """The last ``count`` elements of an array column (all of it when shorter)."""
    from pyspark.sql import functions as F

    count = F.lit(count) if isinstance(count, int) else count
    return F.slice(steps, F.greatest(F.size(steps) - count + 1, F.lit(1)), count)


def step_values(steps: Column) -> list[Column]:
    """``items, behaviours, categories, gap_buckets``: the per-position int arrays of a steps array."""
    from pyspark.sql import functions as F

    def values_of(field: str) -> Column:
        return F.transform(steps, lambda step: step[field])

    return [
        values_of("item").alias("items"),
        values_of("behaviour").alias("behaviours"),
        values_of("category").alias("categories"),
        values_of("gap_bucket").alias("gap_buckets"),
    ]


def recent_steps(steps: Column, max_len: int) -> Column:
    """The most recent ``max_len`` steps as one struct of int arrays (``step_values``), as the tables keep them.

    Computed once per user and cached by featurize; the table rows then only slice these arrays.
    """
    from pyspark.sql import functions as F

    return F.struct(*step_values(last_steps(steps, max_len)))


def user_sequences(recent: DataFrame, ds: str) -> DataFrame:
    """``user_sequences`` rows from ``user_id, recent, length, last_event_time`` (``recent`` from ``recent_steps``).

    ``length`` is the true number of cleaned events and ``truncated`` how many older ones were dropped.
    """
    from pyspark.sql import functions as F

    return recent.select(
        "user_id",
        "recent.*",  # items, behaviours, categories, gap_buckets, in step_values' order
        "length",
        (F.col("length") - F.size("recent.items")).cast("int").alias("truncated"),
        "last_event_time",
        F.lit(ds).alias("ds"),
    )
