"""Dense, append-only vocabularies (items, categories) as DataFrame transforms.

Index 0 pads sequences and 1 stands for an id the vocabulary lacks (lake.schemas PAD_INDEX, UNKNOWN_INDEX);
real ids get 2, 3, ... A later run only appends ids the vocabulary lacks, numbered on from the current
maximum in (first seen time, id) order, so an index never changes meaning and a model trained on an
older vocabulary still scores today. ``first_seen_ds`` is the ds of the run that appended the id.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from lake.schemas import UNKNOWN_INDEX

SECONDS_PER_HOUR = 3_600

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

__all__ = ["item_categories", "last_category", "new_vocab_entries", "to_indexes"]


def new_vocab_entries(
    first_seen: DataFrame, existing: DataFrame, id_column: str, index_column: str, ds: str
) -> DataFrame:
    """Ids of ``first_seen`` missing from ``existing``, numbered after its largest index.

    Args:
        first_seen: ``<id_column>, first_time``: every id the run saw and when it was first seen.
        existing: the vocabulary so far: ``<id_column>, <index_column>`` (may be empty).
        ds: the run's ds, recorded as ``first_seen_ds``.

    Returns:
        ``<id_column>, <index_column>, first_seen_ds``; indexes continue from ``max(existing) + 1``
        (2 for an empty vocabulary) in (first_time, id) order, so reruns assign the same numbers.
    """
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    start = existing.agg(F.coalesce(F.max(index_column), F.lit(UNKNOWN_INDEX))).first()[0]
    new = first_seen.join(existing.select(id_column), id_column, "left_anti").withColumn(
        "_hour", F.floor(F.unix_seconds("first_time") / SECONDS_PER_HOUR))
    # One global window would number every id in a single task. Instead each hour numbers its own ids, after
    # every id of the earlier hours: the same (first_time, id) order, one task per hour, and only the hours'
    # counts (24 a day, whatever the catalogue) pass through the driver.
    offsets, total = [], start
    for row in new.groupBy("_hour").count().orderBy("_hour").collect():
        offsets.append((row["_hour"], total))
        total += row["count"]
    hour_offsets = new.sparkSession.createDataFrame(offsets, "_hour long, _offset long")
    within_hour = Window.partitionBy("_hour").orderBy("first_time", id_column)
    return new.join(F.broadcast(hour_offsets), "_hour").select(
        id_column,
        (F.col("_offset") + F.row_number().over(within_hour)).cast("int").alias(index_column),
        F.lit(ds).alias("first_seen_ds"),
    )


def to_indexes(events: DataFrame, item_vocab: DataFrame, category_vocab: DataFrame) -> DataFrame:
    """``events`` with ``item_index`` and ``category_index`` added (UNKNOWN_INDEX for ids not in a vocabulary)."""
    from pyspark.sql import functions as F

    # Broadcast: the vocabularies are far smaller than the events, and a shuffle join would undo the
    # events' partitioning by user that the sequence step relies on.
    return (
        events.join(F.broadcast(item_vocab.select("item_id", "item_index")), "item_id", "left")
        .join(F.broadcast(category_vocab.select("category_id", "category_index")), "category_id", "left")
        .withColumn("item_index", F.coalesce("item_index", F.lit(UNKNOWN_INDEX)))
        .withColumn("category_index", F.coalesce("category_index", F.lit(UNKNOWN_INDEX)))
    )


def last_category(events: DataFrame) -> DataFrame:
    """``item_id, category_id``: each item's category in its latest event (ties: the larger category id)."""
    from pyspark.sql import functions as F

    latest = F.max(F.struct("event_time", "category_id"))
    return events.groupBy("item_id").agg(latest.alias("_latest")).select("item_id", "_latest.category_id")


def item_categories(item_vocab: DataFrame, category_vocab: DataFrame, last_categories: DataFrame, ds: str) -> DataFrame:
    """``item_index, category_index, ds`` for every vocabulary item (UNKNOWN_INDEX where none is known)."""
    from pyspark.sql import functions as F

    return (
        item_vocab.select("item_id", "item_index")
        .join(last_categories, "item_id", "left")
        .join(category_vocab.select("category_id", "category_index"), "category_id", "left")
        .select(
            "item_index",
            F.coalesce("category_index", F.lit(UNKNOWN_INDEX)).cast("int").alias("category_index"),
            F.lit(ds).alias("ds"),
        )
    )
