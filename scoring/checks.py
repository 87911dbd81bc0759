"""The checks a ``recommendations`` partition must pass before it is published: pure DataFrame checks.

Each check counts offending users or rows; :func:`validation_failures` returns one line per failed check
(empty = publishable).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from lake.schemas import UNKNOWN_INDEX
from scoring.ranker import MODEL, POPULAR

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame

__all__ = ["Expectations", "validation_failures"]


@dataclass(frozen=True)
class Expectations:
    """What the rows of ds must agree with, rebuilt from the same inputs and rules scoring used."""

    ds: str
    top_n: int
    active: DataFrame  # user_id: everyone who must have a list
    excluded_pairs: DataFrame  # user_id, item_id: never recommended to that user
    denied: DataFrame | None  # item_id: never recommended to anyone
    vocab: DataFrame  # item_id, item_index
    item_vocab_size: int  # only indexes 2 .. size-1 are recommendable


def validation_failures(recommendations: DataFrame, expected: Expectations) -> list[str]:
    """Human-readable failures of ``recommendations`` (one ds) against ``expected``; [] when it passes.

    All checks run as one Spark job: rows are flagged by joins, folded per user, then over all users. Per-user
    distinct counts are sizes of sets, not ``countDistinct``: several distinct aggregates in one groupBy make
    Spark copy every row once per aggregate (an Expand) before the shuffle, 5x the rows of a whole day.
    """
    from pyspark.sql import functions as F

    n = expected.top_n
    index = F.col("item_index")
    recommendable = expected.vocab.where((index > UNKNOWN_INDEX) & (index < expected.item_vocab_size))
    flagged = (
        recommendations
        .join(expected.excluded_pairs.select("user_id", "item_id").distinct()
              .withColumn("is_excluded", F.lit(1)), ["user_id", "item_id"], "left")
        .join(F.broadcast(recommendable.select("item_id").withColumn("is_recommendable", F.lit(1))),
              "item_id", "left")
    )
    denied = F.lit(0)
    if expected.denied is not None:
        flagged = flagged.join(F.broadcast(expected.denied.select("item_id").distinct()
                                           .withColumn("is_denied", F.lit(1))), "item_id", "left")
        denied = F.coalesce(F.col("is_denied"), F.lit(0))

    per_user = flagged.groupBy("user_id").agg(
        F.count(F.lit(1)).alias("rows"),
        F.size(F.collect_set("item_id")).alias("items"),
        F.size(F.collect_set("rank")).alias("ranks"),
        F.min("rank").alias("min_rank"),
        F.max("rank").alias("max_rank"),
        F.min(F.col("short_list").cast("int")).alias("first_flag"),
        F.max(F.col("short_list").cast("int")).alias("short"),
        F.min("source").alias("first_source"),
        F.max("source").alias("last_source"),
        F.min("model_version").alias("first_version"),
        F.max("model_version").alias("last_version"),
        _rows_where(F.isnan("score") | F.col("score").isin(float("inf"), float("-inf"))).alias("bad_scores"),
        _rows_where(~F.col("source").isin(MODEL, POPULAR)).alias("bad_sources"),
        _rows_where(F.col("ds") != expected.ds).alias("wrong_ds"),
        _rows_where(F.col("is_excluded").isNotNull()).alias("excluded"),
        _rows_where(denied == 1).alias("denied"),
        _rows_where(F.col("is_recommendable").isNull()).alias("unrecommendable"),
    ).withColumn("listed", F.lit(1))
    users = per_user.join(expected.active.select("user_id").distinct().withColumn("active", F.lit(1)),
                          "user_id", "full_outer")
    listed = F.col("listed").isNotNull()
    totals = users.agg(
        _rows_where(listed).alias("users"),
        _rows_where(listed & (F.col("short") == 0) & (F.col("rows") != n)).alias("not_n"),
        _rows_where(listed & (F.col("short") == 1) & (F.col("rows") >= n)).alias("short_not_short"),
        _rows_where(F.col("items") != F.col("rows")).alias("repeated_items"),
        _rows_where((F.col("min_rank") != 1) | (F.col("max_rank") != F.col("rows"))
                   | (F.col("ranks") != F.col("rows"))).alias("bad_ranks"),
        _rows_where((F.col("first_flag") != F.col("short"))
                   | (F.col("first_source") != F.col("last_source"))).alias("mixed_lists"),
        _rows_where(F.col("active").isNotNull() & ~listed).alias("missing_users"),
        _rows_where(listed & F.col("active").isNull()).alias("inactive_users"),
        F.min("first_version").alias("first_version"),
        F.max("last_version").alias("last_version"),
        *[F.sum(name).alias(name) for name in ("bad_scores", "bad_sources", "wrong_ds", "excluded", "denied",
                                               "unrecommendable")],
    ).first()
    if not totals["users"]:
        return [f"partition ds={expected.ds} is empty"]
    failures: list[str] = []
    _count(failures, totals["not_n"], f"user(s) have a list not of exactly {n} items without short_list set")
    _count(failures, totals["short_not_short"], f"user(s) flagged short_list have {n} or more items")
    _count(failures, totals["repeated_items"], "user(s) have the same item more than once")
    _count(failures, totals["bad_ranks"], "user(s) have ranks that are not exactly 1..their list length")
    _count(failures, totals["mixed_lists"], "user(s) mix sources or short_list flags within one list")
    _count(failures, totals["bad_scores"], "row(s) have a NaN or infinite score")
    _count(failures, totals["bad_sources"], f"row(s) have a source other than '{MODEL}' or '{POPULAR}'")
    _count(failures, totals["wrong_ds"], f"row(s) carry a ds other than {expected.ds}")
    if totals["first_version"] != totals["last_version"]:
        failures.append(f"model versions {totals['first_version']} .. {totals['last_version']} in one "
                        f"partition; expected exactly one")
    _count(failures, totals["missing_users"], "active user(s) have no recommendations")
    _count(failures, totals["inactive_users"], "recommended user(s) are not active in the scoring window")
    _count(failures, totals["excluded"], "row(s) recommend an item excluded for that user (e.g. bought)")
    _count(failures, totals["denied"], "row(s) recommend a deny-listed item")
    _count(failures, totals["unrecommendable"], "row(s) recommend padding, unknown or out-of-vocabulary items")
    return failures


def _rows_where(condition: Column) -> Column:
    """How many rows of the group satisfy ``condition`` (null counts as no)."""
    from pyspark.sql import functions as F

    return F.sum(condition.cast("long"))


def _count(failures: list[str], count: int | None, what: str) -> None:
    if count:
        failures.append(f"{count:,} {what}")
