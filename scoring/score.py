"""The scoring stage: top-N recommendations for every active user of ds, written as one atomic partition.

Reads ``events``, ``item_vocab``, ``user_sequences`` (partition ds), ``item_categories`` (with a category
cap) and ``deny_list`` (when present); writes ``recommendations`` partition ds. Publishing to
``recommendations_latest`` is a separate step (``scoring.publish``) that validates first.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

from lake import Config, EmptyInputError, Lake
from lake import errors as lake_errors
from lake.registry import ModelCard
from lake.serving import Catalogue, ServingRules, build_catalogue, denied_item_ids, latest_item_categories
from scoring.inputs import active_users, excluded_items, excluded_pairs, item_popularity, scoring_users
from scoring.model import select_model, ship
from scoring.ranker import RankPlan, recommend
from scoring.settings import ScoreSettings

if TYPE_CHECKING:
    from pyspark import Broadcast
    from pyspark.sql import DataFrame, SparkSession

__all__ = ["PreparedScoring", "ScoreResult", "prepare_scoring", "score"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ScoreResult:
    ds: str
    model_version: str
    table_version: int
    users: int
    popular_users: int
    short_lists: int
    rows: int


@dataclass
class PreparedScoring:
    """The lazy ``recommendations`` rows of ds and what they depend on; nothing has been scored yet."""

    card: ModelCard
    recommendations: DataFrame
    plan: Broadcast[RankPlan]

    def release(self) -> None:
        """Free the broadcast plan on the executors once the rows are written."""
        self.plan.unpersist()


def prepare_scoring(config: Config, ds: str, *, spark: SparkSession, model_version: str | None = None,
                    now: dt.datetime | None = None) -> PreparedScoring:
    """Pick and check the model, read the inputs, ship the model and broadcast the plan; returns the lazy
    output rows."""
    from pyspark.sql import functions as F

    dt.date.fromisoformat(ds)
    settings = ScoreSettings.from_config(config)
    rules = ServingRules.from_config(config)
    lake = Lake.from_config(config, spark=spark)
    now = now or dt.datetime.now(dt.UTC)

    card = select_model(config, lake, ds=ds, version=model_version)
    item_vocab_size = int(card.meta["item_vocab_size"])
    log.info("scoring ds=%s with model version %s (%s, %d items)", ds, card.version,
             card.meta.get("model_type"), item_vocab_size)

    if ds not in lake.partitions("user_sequences"):
        raise EmptyInputError(f"user_sequences has no partition ds={ds}; "
                              f"run `seqrec featurize --ds {ds}` first")
    events = lake.read_spark("events")
    vocab = lake.read_spark("item_vocab")
    active = active_users(events, ds, settings.active_window_days)
    if active.isEmpty():
        raise EmptyInputError(f"no user has an event in the {settings.active_window_days} days up to "
                              f"ds={ds}; ingest those days' events or widen score.active_window_days")
    excluded = None
    if rules.exclude_behaviours:
        pairs = excluded_pairs(events, ds, rules.exclude_window_days, rules.exclude_behaviours)
        excluded = excluded_items(pairs, vocab)
    users = scoring_users(active, lake.read_spark("user_sequences", partition=ds), excluded)
    partitions = settings.partitions or spark.sparkContext.defaultParallelism

    catalogue = _catalogue(lake, settings, rules, ds, item_vocab_size, events, vocab)
    plan = spark.sparkContext.broadcast(RankPlan(
        model=ship(spark.sparkContext, config, card), catalogue=catalogue, rules=rules,
        users_per_batch=settings.users_per_batch, torch_threads=settings.torch_threads, device=settings.device,
    ))
    recommendations = recommend(users.repartition(partitions, "user_id"), plan).select(
        "*", F.lit(card.version).alias("model_version"), F.lit(now).alias("generated_at"),
        F.lit(ds).alias("ds"))
    return PreparedScoring(card, recommendations, plan)


def _catalogue(lake: Lake, settings: ScoreSettings, rules: ServingRules, ds: str, size: int, events: DataFrame,
               vocab: DataFrame) -> Catalogue:
    popularity = item_popularity(events, vocab, ds, settings.popular_window_days, settings.popular_behaviours)
    popular = popularity.toArrow()
    if popular.num_rows == 0:
        raise EmptyInputError(
            f"no {list(settings.popular_behaviours)} events in the {settings.popular_window_days} days up to "
            f"ds={ds}, so the popularity fallback would be empty; widen score.popular_window_days")
    categories = latest_item_categories(lake, ds) if rules.max_per_category else None
    return build_catalogue(lake.read("item_vocab", columns=["item_id", "item_index"]), size,
                           denied_item_ids=denied_item_ids(lake, rules), item_categories=categories,
                           popularity=popular)


_WORKER_ERROR = re.compile(r"lake\.errors\.(\w+): (.*)")


@contextmanager
def _worker_errors() -> Iterator[None]:
    """Re-raise a seqrec error thrown inside an executor as itself, so the CLI prints one clear line."""
    from pyspark.errors import PythonException

    try:
        yield
    except PythonException as exc:
        found = _WORKER_ERROR.search(str(exc))
        error_type = getattr(lake_errors, found.group(1), None) if found else None
        if isinstance(error_type, type) and issubclass(error_type, lake_errors.SeqrecError):
            raise error_type(f"{found.group(2)} (raised in a Spark executor)") from exc
        raise


def score(config: Config, ds: str, *, spark: SparkSession, model_version: str | None = None,
          now: dt.datetime | None = None) -> ScoreResult:
    """Score every active user of ds and replace partition ds of ``recommendations`` in one commit.

    A failure anywhere leaves the table (and ``recommendations_latest``) as it was; rerunning a ds
    replaces that partition, so there is only ever one copy of it.

    Args:
        config: user configuration; the ``score`` section is documented in scoring/defaults.yaml.
        ds: the logical date YYYY-MM-DD.
        spark: the session whose executors score.
        model_version: a registered version to use instead of the ``champion`` alias.
        now: the ``generated_at`` stamp (defaults to the current time).
    """
    from pyspark.sql import functions as F

    lake = Lake.from_config(config, spark=spark)
    prepared = prepare_scoring(config, ds, spark=spark, model_version=model_version, now=now)
    try:
        with _worker_errors():
            table_version = lake.write("recommendations", prepared.recommendations, partition=ds)
    finally:
        prepared.release()
    written = lake.read_spark("recommendations", version=table_version, partition=ds)
    summary = written.agg(
        F.count(F.lit(1)).alias("rows"),
        F.sum((F.col("rank") == 1).cast("long")).alias("users"),
        F.sum(((F.col("rank") == 1) & (F.col("source") == "popular")).cast("long")).alias("popular_users"),
        F.sum(((F.col("rank") == 1) & F.col("short_list")).cast("long")).alias("short_lists"),
    ).first()
    return ScoreResult(ds, prepared.card.version, table_version, int(summary["users"] or 0),
                       int(summary["popular_users"] or 0), int(summary["short_lists"] or 0),
                       int(summary["rows"] or 0))
