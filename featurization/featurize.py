"""The featurize stage: ``events`` up to ds -> cleaned sequences, vocabularies and training examples.

Reads every ``events`` partition with ds <= the run's ds and writes, through ``lake.Lake`` only:

- ``featurize_stats`` (ds): one row per cleaning step with rows in, rows out and why rows were removed;
- ``abnormal_users`` (ds): the users excluded as bot-like and the threshold they crossed;
- ``item_vocab``, ``category_vocab``: append-only dense indexes (only ids they lack are appended);
- ``item_categories`` (ds): the latest category index of every item in the vocabulary as of ds;
- ``user_sequences`` (ds): each user's most recent ``max_len`` steps;
- ``train_examples`` (ds): leave-one-out (or time split) rows for the trainer, readable by Petastorm.

Nothing is written until every check passed (events for ds exist, something survives cleaning), then the
vocabularies are appended and the partitions replaced, so rerunning a ds yields the same tables.
The vocabulary appends assume one featurize run at a time per lake (the nightly DAG runs them in order).
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import pyarrow as pa

from featurization import cleaning, examples, indexing, sequences
from lake import Config, ConfigError, EmptyInputError, InputError, Lake, ValidationError, typed_section

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

__all__ = ["CleaningStep", "FeaturizeResult", "FeaturizeSettings", "featurize", "missing_days"]

log = logging.getLogger(__name__)
DEFAULTS = Path(__file__).with_name("defaults.yaml")


@dataclass(frozen=True)
class FeaturizeSettings:
    burst_window_seconds: int
    abnormal_quantile: float
    abnormal_min_events_per_day: int
    kcore_user_min_events: int
    kcore_item_min_events: int
    kcore_max_iterations: int
    max_len: int
    max_gap_bucket: int
    split: examples.Split
    time_split_cutoff_ds: str | None
    missing_days: Literal["refuse", "warn"]

    @classmethod
    def from_config(cls, config: Config) -> FeaturizeSettings:
        settings = typed_section(cls, config, "featurize", DEFAULTS)
        if not 0.0 <= settings.abnormal_quantile <= 1.0:
            raise ConfigError(f"featurize.abnormal_quantile must be within [0, 1], got {settings.abnormal_quantile}")
        if settings.max_len < 1:
            raise ConfigError(f"featurize.max_len must be at least 1, got {settings.max_len}")
        if settings.max_gap_bucket < 2:
            raise ConfigError(f"featurize.max_gap_bucket must be at least 2, got {settings.max_gap_bucket}")
        if settings.time_split_cutoff_ds is not None:
            try:
                dt.date.fromisoformat(settings.time_split_cutoff_ds)
            except ValueError:
                raise ConfigError(
                    f"featurize.time_split_cutoff_ds must be YYYY-MM-DD or null, got {settings.time_split_cutoff_ds!r}"
                ) from None
        return settings

    def cutoff_ds(self, ds: str) -> str | None:
        """The last training day for a time split (the day before ds unless configured); None otherwise."""
        if self.split != "time":
            return None
        return self.time_split_cutoff_ds or (dt.date.fromisoformat(ds) - dt.timedelta(days=1)).isoformat()


@dataclass(frozen=True)
class CleaningStep:
    step: str
    rows_in: int
    rows_out: int
    reason: str

    @property
    def removed(self) -> int:
        return self.rows_in - self.rows_out


@dataclass(frozen=True)
class FeaturizeResult:
    ds: str
    steps: list[CleaningStep]
    users: int
    abnormal_users: int
    new_items: int
    new_categories: int
    item_vocab_size: int
    category_vocab_size: int
    examples: dict[str, int] = field(default_factory=dict)
    # Wall seconds per phase (clean, vocabularies, sequences, write_*), as logged.
    seconds: dict[str, float] = field(default_factory=dict)


def _read_or_empty(lake: Lake, name: str) -> DataFrame:
    if lake.exists(name):
        return lake.read_spark(name)
    from lake.schemas import spec

    assert lake.spark is not None
    return _to_spark(lake.spark, spec(name).schema.empty_table(), name)


def _to_spark(spark: SparkSession, rows: pa.Table, name: str) -> DataFrame:
    """Driver-side Arrow rows as a Spark DataFrame in table ``name``'s declared schema."""
    from pyspark.sql.pandas.types import from_arrow_schema

    from lake.schemas import spec

    schema = spec(name).schema
    return spark.createDataFrame(rows.select(schema.names).cast(schema), from_arrow_schema(schema))


def _check_events_for(lake: Lake, ds: str) -> None:
    if not lake.exists("events") or ds not in lake.partitions("events"):
        raise EmptyInputError(
            f"no events for ds={ds}: run `seqrec ingest --ds {ds} --source ...` first (or check that the "
            f"day's drop was not empty); nothing was written"
        )


def missing_days(lake: Lake, ds: str) -> list[str]:
    """Days from the first ingest run (else the first day of events) to ds with neither events nor an ingest run:
    skipped runs. Stray early events (a drop's few rows of long-past days) do not move the start."""
    events = set(lake.partitions("events"))
    runs = set(lake.partitions("ingest_stats")) if lake.exists("ingest_stats") else set()
    present = events | runs
    first = min((day for day in runs or events if day <= ds), default=ds)
    start, end = dt.date.fromisoformat(first), dt.date.fromisoformat(ds)
    days = ((start + dt.timedelta(days=n)).isoformat() for n in range((end - start).days + 1))
    return [day for day in days if day not in present]


def _check_missing_days(lake: Lake, ds: str, policy: str) -> None:
    missing = missing_days(lake, ds)
    if not missing:
        return
    shown = ", ".join(missing[:10]) + (f" and {len(missing) - 10} more" if len(missing) > 10 else "")
    message = (f"events has no partition and no ingest run for {len(missing)} day(s) before ds={ds}: {shown}. "
               f"Features built now would lack them; backfill them first, e.g. `airflow backfill create --dag-id "
               f"seqrec_nightly --from-date {missing[0]} --to-date {missing[-1]}` (or `seqrec ingest --ds <day> "
               f"--source <that day's drop>`)")
    if policy == "warn":
        log.warning("%s; featurize.missing_days=warn, so going on", message)
        return
    raise InputError(f"{message}; nothing was written (featurize.missing_days: warn goes on regardless)")


def _check_vocab(lake: Lake, name: str, id_column: str, index_column: str) -> int:
    """The vocabulary's size (max index + 1) after checking that ids and indexes are both unique."""
    from pyspark.sql import functions as F

    counts = lake.read_spark(name).agg(
        F.count(F.lit(1)).alias("rows"), F.max(index_column).alias("largest"),
        *[F.count_distinct(column).alias(column) for column in (id_column, index_column)],
    ).first()
    for column in (id_column, index_column):
        if counts[column] != counts["rows"]:
            raise ValidationError(
                f"table '{name}' holds a repeated {column}: two featurize runs appended at the same time. "
                f"Restore it to the version before the overlap (lake history) and rerun featurize in ds order."
            )
    # As lake.vocab.size_of: the largest index + 1 (2 when empty: padding and unknown only).
    return (counts["largest"] or 1) + 1


@dataclass
class _Cleaned:
    """What the cleaning phase hands on: cleaned events, the k-core pairs and the numbers for the stats."""

    deduplicated: DataFrame
    cleaned: DataFrame
    pairs: DataFrame
    abnormal: pa.Table
    steps: list[CleaningStep]


def _clean(flagged: DataFrame, ds: str, settings: FeaturizeSettings, cached: list[DataFrame]) -> _Cleaned:
    """Counts the flagged duplicates and bursts, drops abnormal users, then runs k-core."""
    from pyspark import StorageLevel
    from pyspark.sql import functions as F

    counts = flagged.agg(
        F.count(F.lit(1)).alias("rows"),
        F.count_if("is_duplicate").alias("duplicates"),
        F.count_if("is_burst").alias("bursts"),
        F.count_if(F.col("ds") == ds).alias("today"),
    ).first()
    if counts["today"] == 0:
        raise EmptyInputError(f"the events partition ds={ds} holds no rows; nothing was written")
    deduplicated = flagged.where(~F.col("is_duplicate"))
    collapsed = deduplicated.where(~F.col("is_burst")).drop("is_duplicate", "is_burst")
    after_dedupe = counts["rows"] - counts["duplicates"]
    after_bursts = after_dedupe - counts["bursts"]

    user_days = cleaning.events_per_user_day(collapsed).persist(StorageLevel.MEMORY_AND_DISK)
    cached.append(user_days)
    threshold = cleaning.abnormal_threshold(
        user_days, settings.abnormal_quantile, settings.abnormal_min_events_per_day
    ).first()["threshold"]
    abnormal = cleaning.abnormal_users(user_days, threshold).withColumn("ds", F.lit(ds)).toArrow()
    after_abnormal = after_bursts - sum(abnormal.column("events").to_pylist())
    abnormal_ids = flagged.sparkSession.createDataFrame(abnormal.select(["user_id"]))
    kept = collapsed.join(F.broadcast(abnormal_ids), "user_id", "left_anti")

    pairs, rounds, converged = cleaning.kcore(
        cleaning.user_item_pairs(kept), settings.kcore_user_min_events, settings.kcore_item_min_events,
        settings.kcore_max_iterations,
    )
    if not converged:
        log.warning("k-core stopped after %d rounds before reaching its fixed point", rounds)
    after_kcore = pairs.agg(F.coalesce(F.sum("events"), F.lit(0))).first()[0]
    if after_kcore == 0:
        raise EmptyInputError(
            f"no events left after cleaning for ds={ds} ({counts['rows']:,} read, {counts['duplicates']:,} "
            f"duplicates, {counts['bursts']:,} bursts, {after_bursts - after_abnormal:,} from abnormal users, "
            f"{after_abnormal:,} removed by k-core); lower featurize.kcore_user_min_events / "
            f"kcore_item_min_events for small data. Nothing was written"
        )
    # Items are broadcast and the users are partitioned like the events (see featurize): no shuffle.
    cleaned = (
        kept.join(pairs.select("user_id").distinct(), "user_id", "left_semi")
        .join(F.broadcast(pairs.select("item_id").distinct()), "item_id", "left_semi")
    )
    bursts = (f"same (user, item, behaviour) within {settings.burst_window_seconds}s of the previous one, "
              f"collapsed into the first" if settings.burst_window_seconds > 0 else "step off")
    steps = [
        CleaningStep("read_events", counts["rows"], counts["rows"], f"events with ds <= {ds}"),
        CleaningStep("exact_duplicates", counts["rows"], after_dedupe,
                     "same user, item, category, behaviour and event_time as an earlier event"),
        CleaningStep("bursts", after_dedupe, after_bursts, bursts),
        CleaningStep("abnormal_users", after_bursts, after_abnormal,
                     f"{abnormal.num_rows} users with more than {threshold:g} events on one day (max of the "
                     f"{settings.abnormal_quantile:g} quantile of events per user-day and "
                     f"{settings.abnormal_min_events_per_day})"),
        CleaningStep("kcore", after_abnormal, after_kcore,
                     f"users with < {settings.kcore_user_min_events} and items with < "
                     f"{settings.kcore_item_min_events} events, removed in {rounds} rounds"
                     + ("" if converged else " (stopped at kcore_max_iterations before the fixed point)")),
    ]
    return _Cleaned(deduplicated, cleaned, pairs, abnormal, steps)


@contextmanager
def _timed(phase: str, seconds: dict[str, float]) -> Iterator[None]:
    started = time.perf_counter()
    yield
    seconds[phase] = time.perf_counter() - started
    log.info("featurize: %s took %.1fs", phase, seconds[phase])


def featurize(config: Config, ds: str, *, spark: SparkSession) -> FeaturizeResult:
    """Run featurize for ``ds`` (see the module docstring); raises EmptyInputError before writing anything."""
    from pyspark import StorageLevel
    from pyspark.sql import functions as F

    dt.date.fromisoformat(ds)
    settings = FeaturizeSettings.from_config(config)
    lake = Lake.from_config(config, spark=spark)
    _check_events_for(lake, ds)
    _check_missing_days(lake, ds, settings.missing_days)
    seconds: dict[str, float] = {}

    # One shuffle by user up front: the cleaning window (user, item, behaviour), the per-user and per-pair
    # aggregates and the per-user sequences all accept this partitioning, so Spark shuffles the events
    # once instead of once per step (most of featurize's time at 10M events; docs/benchmarks.md).
    events = lake.read_spark("events").where(F.col("ds") <= ds).select(
        "user_id", "item_id", "category_id", cleaning.behaviour_index("behaviour").alias("behaviour_index"),
        "event_time", "ds",
    ).repartition("user_id")
    flagged = cleaning.flag_duplicates_and_bursts(events, settings.burst_window_seconds).persist(
        StorageLevel.MEMORY_AND_DISK
    )
    cached: list[DataFrame] = [flagged]
    try:
        with _timed("clean", seconds):
            clean = _clean(flagged, ds, settings, cached)

        with _timed("vocabularies", seconds):
            old_items = _read_or_empty(lake, "item_vocab")
            old_categories = _read_or_empty(lake, "category_vocab")
            # Kept on the executors (a first run appends the whole catalogue) and cached: the counts, the
            # sequences' broadcast join and the append all read the same numbering.
            new_items = indexing.new_vocab_entries(
                clean.pairs.groupBy("item_id").agg(F.min("first_time").alias("first_time")),
                old_items, "item_id", "item_index", ds,
            ).persist(StorageLevel.MEMORY_AND_DISK)
            new_categories = indexing.new_vocab_entries(
                clean.deduplicated.groupBy("category_id").agg(F.min("event_time").alias("first_time")),
                old_categories, "category_id", "category_index", ds,
            ).persist(StorageLevel.MEMORY_AND_DISK)
            cached += [new_items, new_categories]
            new_item_count, new_category_count = new_items.count(), new_categories.count()
            item_vocab = old_items.unionByName(new_items)
            category_vocab = old_categories.unionByName(new_categories)

        with _timed("sequences", seconds):
            cutoff = settings.cutoff_ds(ds)
            histories = sequences.user_steps(
                indexing.to_indexes(clean.cleaned, item_vocab, category_vocab), settings.max_gap_bucket, cutoff
            )
            compact = histories.select(
                "user_id", "length", "last_event_time",
                sequences.recent_steps(F.col("steps"), settings.max_len).alias("recent"),
                *examples.example_window(F.col("steps"), settings.max_len, settings.split),
            ).persist(StorageLevel.MEMORY_AND_DISK)
            cached.append(compact)
            summary = compact.agg(
                F.count(F.lit(1)).alias("users"),
                F.sum(F.greatest(F.col("length") - settings.max_len, F.lit(0))).alias("truncated"),
                F.count_if(F.col("train_end") >= 2).alias("train"),
                F.count_if(F.col("valid_at") >= 2).alias("valid"),
                F.count_if(F.col("test_at") >= 2).alias("test"),
            ).first()
        cleaned_rows = clean.steps[-1].rows_out
        steps = [
            *clean.steps,
            CleaningStep("truncation", cleaned_rows, cleaned_rows - summary["truncated"],
                         f"events older than each user's most recent {settings.max_len}, left out of "
                         f"user_sequences (gap buckets still see them)"),
            CleaningStep("users_with_test_row", summary["users"], summary["test"],
                         _test_row_reason(settings, cutoff)),
        ]

        with _timed("write_vocabularies", seconds):
            if new_item_count:
                lake.write("item_vocab", new_items, mode="append")
            if new_category_count:
                lake.write("category_vocab", new_categories, mode="append")
            item_vocab_size = _check_vocab(lake, "item_vocab", "item_id", "item_index")
            category_vocab_size = _check_vocab(lake, "category_vocab", "category_id", "category_index")
        with _timed("write_item_categories", seconds):
            # The vocabulary as of ds: rerunning an old ds after later days must not list their items.
            vocab_as_of_ds = item_vocab.where(F.col("first_seen_ds") <= ds)
            # One row per catalogue item, written by the executors: the driver never holds the catalogue.
            lake.write("item_categories", indexing.item_categories(
                vocab_as_of_ds, category_vocab, indexing.last_category(clean.deduplicated), ds), partition=ds)
        with _timed("write_user_sequences", seconds):
            lake.write("user_sequences", sequences.user_sequences(compact, ds), partition=ds)
        with _timed("write_train_examples", seconds):
            # train_examples keeps a user's three rows in one task, so files hold all splits of their users:
            # the trainer shards by Parquet row group, and one split per file would leave workers without
            # training rows.
            lake.write("train_examples", examples.train_examples(compact, settings.max_len, ds), partition=ds)
        lake.write("abnormal_users", clean.abnormal, partition=ds)
        lake.write("featurize_stats", _stats_table(steps, ds), partition=ds)
        return FeaturizeResult(
            ds=ds, steps=steps, users=summary["users"], abnormal_users=clean.abnormal.num_rows,
            new_items=new_item_count, new_categories=new_category_count,
            item_vocab_size=item_vocab_size, category_vocab_size=category_vocab_size,
            examples={split: summary[split] for split in ("train", "valid", "test")},
            seconds=seconds,
        )
    finally:
        for frame in cached:
            frame.unpersist()


def _test_row_reason(settings: FeaturizeSettings, cutoff: str | None) -> str:
    if settings.split == "time":
        return f"counts users, not events: users with no event after {cutoff} (or none before it) have no test row"
    return ("counts users, not events: users with fewer than 3 events have no valid/test row "
            "(2 events: one train row, as in SASRec; 1 event: no row)")


def _stats_table(steps: list[CleaningStep], ds: str) -> pa.Table:
    return pa.table({
        "step_order": pa.array(range(1, len(steps) + 1), pa.int32()),
        "step": [s.step for s in steps],
        "rows_in": pa.array([s.rows_in for s in steps], pa.int64()),
        "rows_out": pa.array([s.rows_out for s in steps], pa.int64()),
        "removed": pa.array([s.removed for s in steps], pa.int64()),
        "reason": [s.reason for s in steps],
        "ds": [ds] * len(steps),
    })
