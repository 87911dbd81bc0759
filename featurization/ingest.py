"""Raw events -> the ``events`` table, with every refused row in ``events_quarantine`` and its reason.

Every input row ends up in exactly one of three places: accepted into ``events`` for ds, left for another
day's run (its local date is not ds), or quarantined. ``ingest_stats`` records the three counts, and the
job refuses to write if they do not add up to the rows read.
"""

from __future__ import annotations

import csv
import datetime as dt
import os
import re
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
WRONG_WIDTH = "wrong number of fields (expected 5)"
# Spark's name for the text of a CSV row whose field count differs from the header's.
_CORRUPT = "_corrupt_record"


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
        elif file.suffix.lower() == ".parquet":
            _parquet_schema(str(file))
    return [str(f) for f in files]


def _parquet_schema(file: str):
    """The schema in ``file``'s footer; a truncated, empty or non-Parquet file fails here, by name."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        return pq.read_schema(file)
    except (OSError, pa.ArrowException) as exc:
        raise InputError(
            f"{file}: not a readable Parquet file ({exc}); re-export it or move it out of the source"
        ) from None


def _check_columns(where: str, columns: list[str], mapping: dict[str, str]) -> None:
    missing = [raw for raw in mapping.values() if raw not in columns]
    extra = [c for c in columns if c not in mapping.values()]
    if missing:
        new = f" and {extra} are new (renamed?)" if extra else ""
        raise InputError(
            f"{where}: column(s) {missing} named in ingest.columns are missing{new}; the file has {columns}. "
            f"If the source renamed a column, update ingest.columns; nothing was written."
        )
    if extra:
        raise InputError(
            f"{where}: unexpected column(s) {extra} beside {list(mapping.values())}; the source changed shape. "
            f"Map or drop them on purpose (ingest.columns); nothing was written."
        )


def _parquet_type_expected(field: str, type_, time_unit: str) -> str | None:
    """What ``field`` should be when its Parquet type ``type_`` cannot hold it, else None."""
    import pyarrow.types as pat

    if pat.is_dictionary(type_):
        type_ = type_.value_type
    text = pat.is_string(type_) or pat.is_large_string(type_)
    if field == "behaviour":
        expected, ok = "string", text
    elif field == "event_time" and time_unit == "iso8601":
        expected, ok = "timestamp or string (ingest.time_unit=iso8601)", text or pat.is_timestamp(type_)
    elif field == "event_time":
        expected = f"integer, float or string (ingest.time_unit={time_unit})"
        ok = text or pat.is_integer(type_) or pat.is_floating(type_)
    else:
        expected, ok = "integer or string", text or pat.is_integer(type_)
    return None if ok else expected


def _check_generic_files(files: list[str], settings: IngestSettings) -> list[str] | None:
    """Check every file's columns (and Parquet types) against ingest.columns and against the first file.

    Spark takes one file's schema for all of them (and CSV columns by position), so a file whose
    columns were renamed, added, reordered or retyped would otherwise be read wrongly without a word.
    Returns the first non-empty file's columns, or None when every file is empty.
    """
    mapping: dict[str, str] = settings.columns
    first: tuple[str, list[str], dict[str, object]] | None = None
    for file in files:
        if file.lower().endswith(".parquet"):
            schema = _parquet_schema(file)
            columns, types = schema.names, {f.name: f.type for f in schema}
        else:
            with open(file, newline="", encoding="utf-8-sig") as handle:
                columns, types = next(csv.reader(handle), []), {}
            if not columns:
                continue
        _check_columns(file, columns, mapping)
        for field, raw in mapping.items():
            expected = raw in types and _parquet_type_expected(field, types[raw], settings.time_unit)
            if expected:
                raise InputError(
                    f"{file}: column '{raw}' ({field}) is {types[raw]}, expected {expected}; the source "
                    f"changed type. Fix the export (or ingest.time_unit for event_time); nothing was written."
                )
        if first is None:
            first = (file, columns, types)
            continue
        first_file, first_columns, first_types = first
        if not types and columns != first_columns:
            raise InputError(
                f"{file}: columns {columns} are not in the order of {first_file}'s {first_columns}; "
                f"CSV columns are read by position, so re-export the files alike; nothing was written."
            )
        changed = {c: f"{first_types[c]} -> {t}" for c, t in types.items() if first_types.get(c) != t}
        if changed:
            raise InputError(
                f"{file}: column types differ from {first_file}'s: {changed}; "
                f"re-export the files alike; nothing was written."
            )
    return None if first is None else first[1]


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
    local_columns = None if "://" in source else _check_generic_files(files, settings)
    if is_parquet:
        df = spark.read.parquet(*files)
    else:
        if local_columns is None and "://" not in source:
            raise EmptyInputError(f"source {source} has no rows (no header either)")
        columns = local_columns or spark.read.option("header", True).csv(files[0]).columns
        # The corrupt-record column catches rows with more or fewer fields than the header.
        header = StructType([StructField(c, StringType()) for c in [*columns, _CORRUPT]])
        df = (
            spark.read.option("header", True).option("mode", "PERMISSIVE")
            .option("columnNameOfCorruptRecord", _CORRUPT).schema(header).csv(files)
        )
    data_columns = [c for c in df.columns if c != _CORRUPT]
    _check_columns(source, data_columns, mapping)
    raw = F.to_json(F.struct(*[F.col(c) for c in data_columns]))
    bad_width = F.lit(False)
    if _CORRUPT in df.columns:
        raw, bad_width = F.coalesce(F.col(_CORRUPT), raw), F.col(_CORRUPT).isNotNull()
    return df.select(
        *[F.col(mapping[c]).cast("string").alias(c) for c in CANONICAL],
        bad_width.alias("_bad_width"),
        raw.alias("raw"),
        F.input_file_name().alias("source_file"),
    )


def _event_time(settings: IngestSettings) -> Column:
    from pyspark.sql import functions as F

    value = F.trim(F.col("event_time"))
    if settings.format == "taobao" or settings.time_unit == "unix_seconds":
        return F.when(value.rlike(_NUMBER), F.timestamp_micros((value.cast("double") * 1e6).try_cast("long")))
    if settings.time_unit == "unix_millis":
        return F.when(value.rlike(_NUMBER), F.timestamp_millis(value.cast("double").try_cast("long")))
    return F.try_to_timestamp(value)


def _blank(column: str) -> Column:
    from pyspark.sql import functions as F

    return F.col(column).isNull() | (F.trim(F.col(column)) == "")


def classify_events(raw: DataFrame, settings: IngestSettings, ds: str, timezone: str, now: dt.datetime) -> DataFrame:
    """Typed events plus ``reason`` (null = valid) and ``event_ds`` (the local date of the event)."""
    from pyspark.sql import functions as F

    behaviour_map = F.create_map(*[F.lit(x) for kv in settings.behaviours.items() for x in kv])
    # try_cast: under ANSI SQL one id beyond the long range would otherwise fail the whole job.
    ids = {c: F.when(F.col(c).rlike(_INTEGER), F.trim(F.col(c)).try_cast("long")) for c in CANONICAL[:3]}
    behaviour = behaviour_map[F.lower(F.trim(F.col("behaviour")))]
    event_time = _event_time(settings)
    floor = dt.datetime.fromisoformat(settings.time_floor).replace(tzinfo=dt.UTC)
    day_end = F.to_utc_timestamp(F.lit(f"{ds} 00:00:00").cast("timestamp") + F.expr("INTERVAL 1 DAY"), timezone)

    reason = F.when(F.col("_bad_width"), F.lit(WRONG_WIDTH))
    for column, parsed in ids.items():
        reason = reason.when(_blank(column), F.lit(f"null {column}"))
        reason = reason.when(~F.col(column).rlike(_INTEGER), F.concat(F.lit(f"non-integer {column}: "), F.col(column)))
        reason = reason.when(parsed.isNull(), F.concat(F.lit(f"out-of-range {column}: "), F.col(column)))
    numeric_time = settings.format == "taobao" or settings.time_unit != "iso8601"
    reason = (
        reason.when(_blank("behaviour"), F.lit("null behaviour"))
        .when(behaviour.isNull(), F.concat(F.lit("unknown behaviour: "), F.col("behaviour")))
        .when(_blank("event_time"), F.lit("null event_time"))
        .when(event_time.isNull() & F.lit(numeric_time) & F.trim(F.col("event_time")).rlike(_NUMBER),
              F.concat(F.lit("out-of-range event_time: "), F.col("event_time")))
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


def _unreadable_file_error(exc: Exception) -> InputError | None:
    """Spark's failure to read a file (e.g. Parquet corrupt past a valid footer) as InputError naming it."""
    text = str(exc)
    match = re.search(r"FAILED_READ_FILE\S*\] Encountered error while reading file (\S+)\.\s", text)
    if match is None:
        return None
    causes = re.findall(r"Caused by: ([^\n]+)", text)
    detail = f" ({causes[-1].strip()[:300]})" if causes else ""
    return InputError(
        f"{match.group(1)}: Spark could not read this file{detail}; re-export it or move it out of the "
        f"source; nothing was written"
    )


def _stop_on_changed_layout(classified: DataFrame) -> None:
    """Stop when most rows of a file have the wrong number of fields: its layout changed (a column was
    added or dropped), and quarantining every row would replace ds with nothing."""
    from pyspark.sql import functions as F

    wrong = F.col("reason") == WRONG_WIDTH
    per_file = classified.groupBy("source_file").agg(
        F.count("*").alias("rows"),
        F.count_if(wrong).alias("wrong"),
        F.first(F.when(wrong, F.col("raw")), ignorenulls=True).alias("example"),
    )
    for row in per_file.where(F.col("wrong") * 2 > F.col("rows")).limit(1).collect():
        raise InputError(
            f"{row['source_file']}: {row['wrong']:,} of {row['rows']:,} rows have a different number of fields "
            f"than expected (e.g. {row['example']!r}); the source's layout changed (a column added or "
            f"removed?). Fix the export or the ingest settings; nothing was written."
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
        try:
            counts = {r["_fate"]: r["count"] for r in classified.groupBy("_fate").count().collect()}
        except Exception as exc:  # Spark raises its own wrapper types; only an unreadable file is ours
            unreadable = _unreadable_file_error(exc)
            if unreadable is None:
                raise
            raise unreadable from None
        rows_in = sum(counts.values())
        if rows_in == 0:
            raise EmptyInputError(f"source {source} has no rows; nothing was written for ds={ds}")
        _stop_on_changed_layout(classified)
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
