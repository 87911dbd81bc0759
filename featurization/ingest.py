"""Raw events -> the ``events`` table, with every refused row in ``events_quarantine`` and its reason.

Every input row ends up in exactly one of three places: accepted into ``events`` for ds, left for another
day's run (its local date is not ds), or quarantined. ``ingest_stats`` records the three counts, and the
job refuses to write if they do not add up to the rows read.
"""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from lake import Config, EmptyInputError, InputError, Lake, typed_section
from lake.schemas import BEHAVIOURS

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame, SparkSession

__all__ = ["IngestResult", "IngestSettings", "classify_events", "ingest", "read_raw"]

TAOBAO_COLUMNS = ("user_id", "item_id", "category_id", "behaviour", "event_time")
CANONICAL = TAOBAO_COLUMNS
_INTEGER = r"^\s*-?[0-9]+\s*$"
_NUMBER = r"^\s*[0-9]+(\.[0-9]+)?\s*$"


@dataclass(frozen=True)
class IngestSettings:
    format: Literal["taobao", "generic"]
    columns: dict
    time_unit: Literal["unix_seconds", "unix_millis", "iso8601"]
    behaviours: dict
    time_floor: str
    single_day_source: bool

    @classmethod
    def from_config(cls, config: Config) -> IngestSettings:
        settings = typed_section(cls, config, "ingest")
        unknown = sorted(set(settings.behaviours.values()) - set(BEHAVIOURS))
        if unknown:
            from lake import ConfigError

            raise ConfigError(f"ingest.behaviours maps to {unknown}; canonical behaviours are {list(BEHAVIOURS)}")
        return settings


@dataclass(frozen=True)
class IngestResult:
    ds: str
    source: str
    rows_in: int
    accepted: int
    other_day: int
    quarantined: int
    quarantine_reasons: dict[str, int]


def _check_source(source: str) -> list[str]:
    """The data files of ``source`` (a file or a folder), or InputError saying what is wrong."""
    if "://" in source:
        return [source]
    path = Path(source)
    if not path.exists():
        raise InputError(f"source {source} does not exist")
    hidden = (".", "_")
    files = [path] if path.is_file() else sorted(
        p for p in path.rglob("*") if p.is_file() and not p.name.startswith(hidden)
    )
    if not files:
        raise EmptyInputError(f"source {source} holds no files")
    for file in files:
        if file.suffix.lower() in (".csv", ".txt", ".tsv", ""):
            _check_utf8(file)
    return [str(f) for f in files]


def _check_utf8(file: Path) -> None:
    with file.open("rb") as handle:
        line_number = 0
        for line_number, line in enumerate(handle, start=1):
            try:
                line.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise InputError(
                    f"{file}: line {line_number} is not valid UTF-8 ({exc.reason} at byte {exc.start}); "
                    f"re-export the file as UTF-8"
                ) from None


def read_raw(spark: SparkSession, source: str, settings: IngestSettings) -> DataFrame:
    """Raw rows as strings: the five canonical columns plus ``raw`` (the row as read) and ``source_file``."""
    from pyspark.sql import functions as F
    from pyspark.sql.types import StringType, StructField, StructType

    files = _check_source(source)
    is_parquet = all(f.lower().endswith(".parquet") for f in files) or (
        os.path.isdir(source) and any(f.lower().endswith(".parquet") for f in files)
    )
    if settings.format == "taobao":
        if is_parquet:
            raise InputError(f"{source}: the taobao format is headerless CSV; use ingest.format=generic for Parquet")
        # Read whole lines so a malformed row is quarantined as it was, not half-parsed.
        lines = spark.read.text(files).select(F.col("value").alias("raw"), F.input_file_name().alias("source_file"))
        parts = F.split(F.col("raw"), ",")
        return lines.select(
            *[F.when(F.size(parts) == 5, F.trim(parts[i])).alias(c) for i, c in enumerate(TAOBAO_COLUMNS)],
            F.when(F.size(parts) != 5, F.lit(True)).otherwise(F.lit(False)).alias("_bad_width"),
            "raw",
            "source_file",
        )
    mapping: dict[str, str] = settings.columns
    if is_parquet:
        df = spark.read.parquet(*files)
    else:
        schema_probe = spark.read.option("header", True).csv(files[0])
        header = StructType([StructField(c, StringType()) for c in schema_probe.columns])
        df = spark.read.option("header", True).option("mode", "PERMISSIVE").schema(header).csv(files)
    missing = [raw for raw in mapping.values() if raw not in df.columns]
    if missing:
        raise InputError(
            f"{source}: column(s) {missing} named in ingest.columns are missing; the file has {df.columns}. "
            f"If the source renamed a column, update ingest.columns; nothing was written."
        )
    extra = [c for c in df.columns if c not in mapping.values()]
    if extra:
        raise InputError(
            f"{source}: unexpected column(s) {extra} beside {list(mapping.values())}; the source changed shape. "
            f"Map or drop them on purpose (ingest.columns); nothing was written."
        )
    raw = F.to_json(F.struct(*[F.col(c) for c in df.columns]))
    return df.select(
        *[F.col(mapping[c]).cast("string").alias(c) for c in CANONICAL],
        F.lit(False).alias("_bad_width"),
        raw.alias("raw"),
        F.input_file_name().alias("source_file"),
    )


def _event_time(settings: IngestSettings) -> Column:
    from pyspark.sql import functions as F

    value = F.trim(F.col("event_time"))
    if settings.format == "taobao" or settings.time_unit == "unix_seconds":
        return F.when(value.rlike(_NUMBER), F.timestamp_micros((value.cast("double") * 1e6).cast("long")))
    if settings.time_unit == "unix_millis":
        return F.when(value.rlike(_NUMBER), F.timestamp_millis(value.cast("double").cast("long")))
    return F.try_to_timestamp(value)


def classify_events(raw: DataFrame, settings: IngestSettings, ds: str, timezone: str, now: dt.datetime) -> DataFrame:
    """Typed events plus ``reason`` (null = valid) and ``event_ds`` (the local date of the event)."""
    from pyspark.sql import functions as F

    behaviour_map = F.create_map(*[F.lit(x) for kv in settings.behaviours.items() for x in kv])
    ids = {c: F.when(F.col(c).rlike(_INTEGER), F.trim(F.col(c)).cast("long")) for c in CANONICAL[:3]}
    behaviour = behaviour_map[F.lower(F.trim(F.col("behaviour")))]
    event_time = _event_time(settings)
    floor = dt.datetime.fromisoformat(settings.time_floor).replace(tzinfo=dt.UTC)
    day_end = F.to_utc_timestamp(F.lit(f"{ds} 00:00:00").cast("timestamp") + F.expr("INTERVAL 1 DAY"), timezone)

    reason = F.when(F.col("_bad_width"), F.lit("wrong number of fields (expected 5)"))
    for column, parsed in ids.items():
        reason = reason.when(F.col(column).isNull() | (F.trim(F.col(column)) == ""), F.lit(f"null {column}"))
        reason = reason.when(parsed.isNull(), F.concat(F.lit(f"non-integer {column}: "), F.col(column)))
    reason = (
        reason.when(F.col("behaviour").isNull(), F.lit("null behaviour"))
        .when(behaviour.isNull(), F.concat(F.lit("unknown behaviour: "), F.col("behaviour")))
        .when(F.col("event_time").isNull(), F.lit("null event_time"))
        .when(event_time.isNull(), F.concat(F.lit("unparseable event_time: "), F.col("event_time")))
        .when(event_time < F.lit(floor), F.lit(f"event_time before floor {settings.time_floor}"))
        .when(event_time > F.lit(now), F.lit("event_time in the future"))
    )
    if settings.single_day_source:
        reason = reason.when(event_time >= day_end, F.lit(f"event_time after the end of {ds} (single-day source)"))
    return raw.select(
        *[ids[c].alias(c) for c in CANONICAL[:3]],
        behaviour.alias("behaviour"),
        event_time.alias("event_time"),
        F.date_format(F.from_utc_timestamp(event_time, timezone), "yyyy-MM-dd").alias("event_ds"),
        "raw",
        "source_file",
        reason.alias("reason"),
    )


def ingest(
    config: Config, ds: str, source: str, *, spark: SparkSession, now: dt.datetime | None = None
) -> IngestResult:
    """Ingest ``source`` for day ``ds``: replace ds in ``events``, ``events_quarantine`` and ``ingest_stats``."""
    from pyspark import StorageLevel
    from pyspark.sql import functions as F

    dt.date.fromisoformat(ds)
    settings = IngestSettings.from_config(config)
    timezone = config.lake.timezone
    now = now or dt.datetime.now(dt.UTC)
    lake = Lake.from_config(config, spark=spark)

    classified = classify_events(read_raw(spark, source, settings), settings, ds, timezone, now)
    classified = classified.withColumn(
        "_fate",
        F.when(F.col("reason").isNotNull(), "quarantined")
        .when(F.col("event_ds") == ds, "accepted")
        .otherwise("other_day"),
    ).persist(StorageLevel.MEMORY_AND_DISK)
    try:
        counts = {r["_fate"]: r["count"] for r in classified.groupBy("_fate").count().collect()}
        rows_in = sum(counts.values())
        if rows_in == 0:
            raise EmptyInputError(f"source {source} has no rows; nothing was written for ds={ds}")
        quarantine = classified.where(F.col("_fate") == "quarantined")
        # group by the reason's kind ("unknown behaviour"), not by each offending value
        reason_kind = F.regexp_replace("reason", ": .*$", "").alias("reason")
        reasons = {r["reason"]: r["count"] for r in quarantine.groupBy(reason_kind).count().collect()}
        result = IngestResult(
            ds, source, rows_in, counts.get("accepted", 0), counts.get("other_day", 0),
            counts.get("quarantined", 0), reasons,
        )
        if result.accepted + result.other_day + result.quarantined != result.rows_in:
            raise AssertionError(f"row accounting does not add up: {result}")
        ds_col = F.lit(ds).alias("ds")
        lake.write("events_quarantine",
                   quarantine.select("source_file", "raw", "reason", ds_col), partition=ds)
        lake.write("events", classified.where(F.col("_fate") == "accepted").select(
            *CANONICAL, "source_file", ds_col), partition=ds)
        import pyarrow as pa

        lake.write("ingest_stats", pa.table({
            "source_file": [source], "rows_in": [result.rows_in], "accepted": [result.accepted],
            "other_day": [result.other_day], "quarantined": [result.quarantined],
            "ingested_at": [now], "ds": [ds],
        }), partition=ds)
        return result
    finally:
        classified.unpersist()
