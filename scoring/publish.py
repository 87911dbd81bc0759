"""The publish stage: validate ``recommendations`` partition ds, then republish it as
``recommendations_latest`` (one whole-table overwrite), then, if that day was scored with a model the quality
gate approved, move the ``champion`` alias to it (the second phase of promotion, lake/registry.py) and
refresh the ``models`` mirror. A failed check leaves the latest table, the alias and the mirror untouched.

Publish only moves forward: a ds older than the one ``recommendations_latest`` holds is refused unless
forced, so reprocessing history never rolls back what marketing reads. Recommendations of a model that is
neither the champion nor approved are refused unless explicitly allowed.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

from lake import Config, Lake, ValidationError
from lake.registry import CHAMPION, find, mirror_to_table, promote
from lake.serving import ServingRules
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
    promoted: bool  # whether this publish made model_version the champion


def publish(config: Config, ds: str, *, spark: SparkSession, force: bool = False,
            allow_unapproved: bool = False) -> PublishResult:
    """Check partition ds of ``recommendations`` and, only if every check passes, overwrite
    ``recommendations_latest`` with it; then promote the model that scored it if the gate approved it.

    Args:
        force: publish a ds older than the one ``recommendations_latest`` holds.
        allow_unapproved: publish recommendations of a model that is neither champion nor approved.
    Raises:
        ValidationError: the partition is missing, older than the published one, from an unapproved model, or
            fails a check; ``recommendations_latest``, ``champion`` and ``models`` are unchanged.
    """
    settings = ScoreSettings.from_config(config)
    rules = ServingRules.from_config(config)
    lake = Lake.from_config(config, spark=spark)
    if not lake.exists("recommendations") or ds not in lake.partitions("recommendations"):
        raise ValidationError(f"recommendations has no partition ds={ds}; run `seqrec score --ds {ds}` first")
    published = _published_ds(lake)
    if published is not None and ds < published and not force:
        raise ValidationError(
            f"recommendations_latest holds ds={published}, newer than ds={ds}: publishing would roll back what "
            f"marketing reads. Reprocessed history stays in `recommendations`; pass --force to publish it anyway")
    # Pin the version so the rows published are exactly the rows checked, whatever commits meanwhile.
    source_version = lake.version("recommendations")
    rows = lake.read_spark("recommendations", version=source_version, partition=ds)
    versions = [r["model_version"] for r in rows.select("model_version").distinct().limit(2).collect()]
    card = find(config, version=versions[0]) if len(versions) == 1 else None
    if card is None or "item_vocab_size" not in card.meta:
        raise ValidationError(f"recommendations ds={ds} names model version(s) {versions}, not exactly one "
                              f"registered model; rerun `seqrec score --ds {ds}`")
    is_champion = CHAMPION in card.aliases
    if not (is_champion or card.approved or allow_unapproved):
        raise ValidationError(
            f"recommendations ds={ds} were scored with model version {card.version}, which is neither the "
            f"champion nor approved by the quality gate; rescore with the champion (`seqrec score --ds {ds}`), "
            f"run `seqrec gate --model {card.version}`, or pass --allow-unapproved")

    events = lake.read_spark("events")
    denied = lake.read_spark("deny_list") if rules.honour_deny_list and lake.exists("deny_list") else None
    expected = Expectations(
        ds=ds, top_n=rules.top_n,
        active=active_users(events, ds, settings.active_window_days),
        excluded_pairs=(excluded_pairs(events, ds, rules.exclude_window_days, rules.exclude_behaviours)
                        if rules.exclude_behaviours else events.select("user_id", "item_id").limit(0)),
        denied=denied, vocab=lake.read_spark("item_vocab"), item_vocab_size=int(card.meta["item_vocab_size"]),
    )
    failures = validation_failures(rows, expected)
    if failures:
        raise ValidationError(
            f"recommendations ds={ds} (table version {source_version}) failed {len(failures)} check(s): "
            + "; ".join(failures) + ". recommendations_latest was left as it was; fix the cause and rerun "
            f"`seqrec score --ds {ds}` then `seqrec publish --ds {ds}`")
    # the checked files themselves, each copied with its ds: the rows are not decoded into Spark and re-encoded
    table_version = lake.republish("recommendations", version=source_version, partition=ds,
                                   into="recommendations_latest")
    count = sum(lake.row_counts("recommendations_latest", version=table_version).values())
    log.info("published recommendations ds=%s (version %d) as recommendations_latest version %d",
             ds, source_version, table_version)
    promoted = card.approved and not is_champion and ds >= (published or ds)
    if promoted:
        promote(config, card.version, alias=CHAMPION, since_ds=ds)
        log.info("model version %s is the champion from ds=%s on", card.version, ds)
    mirror_to_table(config, lake)
    return PublishResult(ds, card.version, source_version, table_version, int(count), promoted)


def _published_ds(lake: Lake) -> str | None:
    """The ds ``recommendations_latest`` holds now, if it exists and holds rows (a Spark aggregate: the table
    holds a whole day's lists, tens of millions of rows, which the driver never reads)."""
    from pyspark.sql import functions as F

    if not lake.exists("recommendations_latest"):
        return None
    return lake.read_spark("recommendations_latest").agg(F.max("ds")).first()[0]
