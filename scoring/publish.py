"""The publish stage: validate ``recommendations`` partition ds, then republish it as
``recommendations_latest`` (one whole-table overwrite). A failed check leaves the latest table untouched."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

from lake import Config, Lake, ValidationError
from lake.registry import find
from scoring.checks import Expectations, validation_failures
from scoring.inputs import active_users, excluded_pairs
from scoring.settings import ScoreSettings

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

__all__ = ["PublishResult", "publish"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PublishResult:
    ds: str
    model_version: str
    source_version: int  # the recommendations version that was validated and copied
    table_version: int  # the recommendations_latest version now readers see
    rows: int


def publish(config: Config, ds: str, *, spark: SparkSession) -> PublishResult:
    """Check partition ds of ``recommendations`` and, only if every check passes, overwrite
    ``recommendations_latest`` with it.

    Raises:
        ValidationError: the partition is missing or fails a check; ``recommendations_latest`` is unchanged.
    """
    from pyspark.sql import functions as F

    settings = ScoreSettings.from_config(config)
    lake = Lake.from_config(config, spark=spark)
    if not lake.exists("recommendations") or ds not in lake.partitions("recommendations"):
        raise ValidationError(f"recommendations has no partition ds={ds}; run `seqrec score --ds {ds}` first")
    # Pin the version so the rows published are exactly the rows checked, whatever commits meanwhile.
    source_version = lake.version("recommendations")
    rows = lake.read_spark("recommendations", version=source_version, partition=ds)
    versions = [r["model_version"] for r in rows.select("model_version").distinct().limit(2).collect()]
    card = find(config, version=versions[0]) if len(versions) == 1 else None
    if card is None or "item_vocab_size" not in card.meta:
        raise ValidationError(f"recommendations ds={ds} names model version(s) {versions}, not exactly one "
                              f"registered model; rerun `seqrec score --ds {ds}`")

    events = lake.read_spark("events")
    denied = lake.read_spark("deny_list") if settings.honour_deny_list and lake.exists("deny_list") else None
    expected = Expectations(
        ds=ds, top_n=settings.top_n,
        active=active_users(events, ds, settings.active_window_days),
        excluded_pairs=(excluded_pairs(events, ds, settings.exclude_window_days, settings.exclude_behaviours)
                        if settings.exclude_behaviours else events.select("user_id", "item_id").limit(0)),
        denied=denied, vocab=lake.read_spark("item_vocab"), item_vocab_size=int(card.meta["item_vocab_size"]),
    )
    failures = validation_failures(rows, expected)
    if failures:
        raise ValidationError(
            f"recommendations ds={ds} (table version {source_version}) failed {len(failures)} check(s): "
            + "; ".join(failures) + ". recommendations_latest was left as it was; fix the cause and rerun "
            f"`seqrec score --ds {ds}` then `seqrec publish --ds {ds}`")
    table_version = lake.write("recommendations_latest", rows, mode="overwrite")
    count = lake.read_spark("recommendations_latest", version=table_version).agg(F.count(F.lit(1))).first()[0]
    log.info("published recommendations ds=%s (version %d) as recommendations_latest version %d",
             ds, source_version, table_version)
    return PublishResult(ds, card.version, source_version, table_version, int(count))
