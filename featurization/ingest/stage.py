"""The ingest stage: one raw drop -> its rows in ``events`` (each in its own day), the rest in
``events_quarantine`` with a reason, and the accounting in ``deliveries`` and ``ingest_stats``.

The delivery model (docs/tables.md, Deliveries): a drop is a file or folder named by its path (``drop_id``)
and fingerprinted by its content. Every valid row goes to the ``events`` partition of its own local day, under
the drop's ``drop_id``, whatever the run's ds; writing a drop replaces everything that drop delivered before,
in every day, in one commit. So a drop cut at UTC midnight fills two local days, a multi-day export fills
all of its days, the same drop ingested again changes nothing, and a redelivery replaces the old one.
Refused rows are quarantined once per drop. A drop that adds rows to a day whose ingest already ran is
recorded in ``late_events``: that day's features and recommendations predate the rows.

Nothing is written before every check passed: the drop's files (drops.py), the row accounting
(``rows_in = accepted + other_day + quarantined``), a layout change, an implausible time unit, and the
guard rails ``ingest.max_quarantined_share`` and ``ingest.min_kept_share``.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from featurization.ingest.drops import Drop, open_drop
from featurization.ingest.reader import read_raw
from featurization.ingest.rows import NOT_UTF8, WRONG_WIDTH, classify
from featurization.ingest.settings import CANONICAL, IngestSettings
from lake import Config, EmptyInputError, InputError, Lake
from lake.schemas import spec

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

__all__ = ["IngestResult", "ingest"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class IngestResult:
    ds: str
    source: str
    drop_id: str
    fingerprint: str
    rows_in: int
    accepted: int  # rows of ds itself
    other_day: int  # rows of other days, written to their own days
    quarantined: int
    quarantine_reasons: dict[str, int]
    days: dict[str, int] = field(default_factory=dict)  # event day -> this drop's rows of that day
    late_days: dict[str, tuple[int, int]] = field(default_factory=dict)  # day -> (rows before, after)


@dataclass(frozen=True)
class _Counts:
    """One aggregation over the classified rows."""

    days: dict[str, int]
    reasons: dict[str, int]
    not_utf8_by_file: dict[str, int]
    wrong_width_by_file: dict[str, tuple[int, int, str | None]]  # file -> (rows, wrong width, an example)
    numeric_times: int
    implausible_times: int
    implausible_example: str | None

    @property
    def accepted_rows(self) -> int:
        return sum(self.days.values())

    @property
    def quarantined(self) -> int:
        return sum(self.reasons.values())


def ingest(config: Config, ds: str, source: str, *, spark: SparkSession, now: dt.datetime | None = None,
           allow_quarantine: bool = False, allow_shrink: bool = False) -> IngestResult:
    """Ingest the drop at ``source`` in the run for day ``ds`` (see the module docstring).

    Args:
        config: user configuration; the ``ingest`` section is read from featurization/defaults.yaml.
        ds: the run's logical date; rows of other days go to their own days.
        source: a file or folder, a local path or a URI (``file://``, ``s3://``).
        spark: the session whose executors read and write.
        now: events after this instant are quarantined as in the future (defaults to the current time).
        allow_quarantine: accept a drop whose quarantined share exceeds ``ingest.max_quarantined_share``.
        allow_shrink: accept a drop that leaves a day below ``ingest.min_kept_share`` of its rows.
    """
    from pyspark import StorageLevel

    dt.date.fromisoformat(ds)
    settings = IngestSettings.from_config(config)
    timezone = config.lake.timezone
    now = now or dt.datetime.now(dt.UTC)
    lake = Lake.from_config(config, spark=spark)
    drop = open_drop(source, settings, config.lake.storage_options)
    log.info("drop %s: %d file(s), %d bytes, fingerprint %s (drop_id %s)", drop.path, len(drop.files), drop.bytes,
             drop.fingerprint[:12], drop.drop_id)
    classified = classify(read_raw(spark, drop, settings), settings, ds, timezone, now).persist(
        StorageLevel.MEMORY_AND_DISK)
    try:
        counts = _count(classified)
        rows_in = counts.accepted_rows + counts.quarantined
        if rows_in == 0:
            raise EmptyInputError(f"source {source} has no rows; nothing was written for ds={ds}")
        _check_encoding(drop, counts)
        _check_layout(counts)
        _check_time_unit(settings, counts)
        _check_quarantine(settings, counts, rows_in, allow_quarantine, source)
        before = _rows_by_day_and_drop(lake)
        _check_shrink(settings, before, drop, counts, allow_shrink, source)
        late = _late_days(lake, before, drop, counts, ds)
        result = IngestResult(
            ds=ds, source=drop.path, drop_id=drop.drop_id, fingerprint=drop.fingerprint, rows_in=rows_in,
            accepted=counts.days.get(ds, 0), other_day=counts.accepted_rows - counts.days.get(ds, 0),
            quarantined=counts.quarantined, quarantine_reasons=counts.reasons, days=counts.days, late_days=late,
        )
        _write(lake, spark, classified, drop, result, now)
        return result
    finally:
        classified.unpersist()


# -- counting ------------------------------------------------------------------------------------------
def _count(classified: DataFrame) -> _Counts:
    from pyspark.sql import functions as F

    kind = F.regexp_replace("reason", ": .*$", "")  # the reason's kind ("unknown behaviour"), not each value
    groups = classified.groupBy(
        F.when(F.col("reason").isNull(), F.col("event_ds")).alias("event_ds"), kind.alias("kind"), "source_file",
    ).agg(
        F.count(F.lit(1)).alias("rows"),
        F.count_if(F.col("implausible_unit")).alias("implausible"),
        F.first(F.when(F.col("implausible_unit"), F.col("raw")), ignorenulls=True).alias("implausible_example"),
        F.first(F.when(F.col("reason") == WRONG_WIDTH, F.col("raw")), ignorenulls=True).alias("wrong_width_example"),
        F.count_if(F.col("numeric_time")).alias("timed"),
    )
    try:
        rows = groups.collect()
    except Exception as exc:  # Spark raises its own wrapper types; only an unreadable file is ours
        unreadable = _unreadable_file_error(exc)
        if unreadable is None:
            raise
        raise unreadable from None
    days: dict[str, int] = {}
    reasons: dict[str, int] = {}
    not_utf8: dict[str, int] = {}
    width: dict[str, tuple[int, int, str | None]] = {}
    implausible, timed, example = 0, 0, None
    for row in rows:
        if row["kind"] is None:
            days[row["event_ds"]] = days.get(row["event_ds"], 0) + row["rows"]
        else:
            reasons[row["kind"]] = reasons.get(row["kind"], 0) + row["rows"]
        total, wrong, sample = width.get(row["source_file"], (0, 0, None))
        is_wrong = row["kind"] == WRONG_WIDTH
        width[row["source_file"]] = (total + row["rows"], wrong + (row["rows"] if is_wrong else 0),
                                     sample or (row["wrong_width_example"] if is_wrong else None))
        if row["kind"] == NOT_UTF8:
            not_utf8[row["source_file"]] = not_utf8.get(row["source_file"], 0) + row["rows"]
        implausible += row["implausible"]
        timed += row["timed"]
        example = example or row["implausible_example"]
    return _Counts(dict(sorted(days.items())), dict(sorted(reasons.items())), not_utf8, width, timed, implausible,
                   example)


def _rows_by_day_and_drop(lake: Lake) -> dict[tuple[str, str], int]:
    return lake.row_counts("events") if lake.exists("events") else {}  # type: ignore[return-value]


# -- checks (before anything is written) ---------------------------------------------------------------
def _check_encoding(drop: Drop, counts: _Counts) -> None:
    """Spark's rows flagged as not UTF-8 must be exactly the lines the drop scan found, file by file."""
    for file in drop.files:
        flagged = counts.not_utf8_by_file.get(file.uri, 0)
        if flagged != file.invalid_count:
            raise InputError(
                f"{file.name}: {file.invalid_count} line(s) are not valid UTF-8, but {flagged} row(s) read from it "
                f"hold U+FFFD; a line that holds the replacement character itself cannot be told apart. Re-export "
                f"the file as UTF-8; nothing was written"
            )


def _check_layout(counts: _Counts) -> None:
    """Stop when most rows of a file have the wrong number of fields: its layout changed (a column was
    added or dropped), and quarantining every row would replace ds with nothing."""
    for file, (rows, wrong, example) in sorted(counts.wrong_width_by_file.items()):
        if wrong * 2 > rows:
            raise InputError(
                f"{file}: {wrong:,} of {rows:,} rows have a different number of fields than expected (e.g. "
                f"{example!r}); the source's layout changed (a column added or removed?). Fix the export or the "
                f"ingest settings; nothing was written."
            )


def _check_time_unit(settings: IngestSettings, counts: _Counts) -> None:
    if counts.numeric_times and counts.implausible_times * 2 > counts.numeric_times:
        other = "unix_millis" if settings.time_unit == "unix_seconds" else "unix_seconds"
        raise InputError(
            f"{counts.implausible_times:,} of {counts.numeric_times:,} event times read as ingest.time_unit="
            f"{settings.time_unit} fall outside 1973..5138 (e.g. {counts.implausible_example!r}): the drop looks "
            f"written in {other}. Set ingest.time_unit: {other} if it is; the unit is never guessed. "
            f"Nothing was written"
        )


def _check_quarantine(settings: IngestSettings, counts: _Counts, rows_in: int, allowed: bool, source: str) -> None:
    share = counts.quarantined / rows_in
    if share > settings.max_quarantined_share and not allowed:
        largest = sorted(counts.reasons.items(), key=lambda kind_rows: -kind_rows[1])[:3]
        worst = ", ".join(f"{kind} {rows:,}" for kind, rows in largest)
        raise InputError(
            f"{source}: {counts.quarantined:,} of {rows_in:,} rows ({share:.1%}) would be quarantined, above "
            f"ingest.max_quarantined_share={settings.max_quarantined_share:.1%} ({worst}). Fix the drop, or ingest "
            f"it anyway with --allow-quarantine; nothing was written"
        )


def _check_shrink(settings: IngestSettings, before: dict[tuple[str, str], int], drop: Drop, counts: _Counts,
                  allowed: bool, source: str) -> None:
    """No day may keep less than ``min_kept_share`` of the rows it holds (a bad redelivery replacing a good
    one), counting this drop's new rows in place of its old ones."""
    if allowed:
        return
    totals: dict[str, int] = {}
    mine: dict[str, int] = {}
    for (day, drop_id), rows in before.items():
        totals[day] = totals.get(day, 0) + rows
        if drop_id == drop.drop_id:
            mine[day] = mine.get(day, 0) + rows
    for day in sorted(set(mine) | set(counts.days)):
        held = totals.get(day, 0)
        after = held - mine.get(day, 0) + counts.days.get(day, 0)
        if held and after < settings.min_kept_share * held:
            raise InputError(
                f"{source}: events ds={day} holds {held:,} rows and would keep {after:,} ({after / held:.1%}), below "
                f"ingest.min_kept_share={settings.min_kept_share:.0%}: this drop replaces {mine.get(day, 0):,} of "
                f"its rows with {counts.days.get(day, 0):,}. If the new drop is right, ingest it with "
                f"--allow-shrink; nothing was written"
            )


def _late_days(lake: Lake, before: dict[tuple[str, str], int], drop: Drop, counts: _Counts,
               ds: str) -> dict[str, tuple[int, int]]:
    """Days other than ds whose ingest already ran and whose rows from this drop change."""
    ingested = set(lake.partitions("ingest_stats")) if lake.exists("ingest_stats") else set()
    mine = {day: rows for (day, drop_id), rows in before.items() if drop_id == drop.drop_id}
    return {day: (mine.get(day, 0), counts.days.get(day, 0))
            for day in sorted(set(mine) | set(counts.days))
            if day != ds and day in ingested and mine.get(day, 0) != counts.days.get(day, 0)}


# -- writing -------------------------------------------------------------------------------------------
def _write(lake: Lake, spark: SparkSession, classified: DataFrame, drop: Drop, result: IngestResult,
           now: dt.datetime) -> None:
    from pyspark.sql import functions as F

    ds_col = F.lit(result.ds).alias("ds")
    drop_col = F.lit(drop.drop_id).alias("drop_id")
    refused = classified.where(F.col("reason").isNotNull() & (F.col("reason") != NOT_UTF8)).select(
        "source_file", F.lit(None).cast("long").alias("line"), "raw", "reason", drop_col, ds_col)
    not_utf8 = _not_utf8_rows(drop, result.ds)
    if not_utf8.num_rows:
        from pyspark.sql.pandas.types import from_arrow_schema

        refused = refused.unionByName(spark.createDataFrame(not_utf8, from_arrow_schema(not_utf8.schema)))
    lake.write("events_quarantine", refused, mode="replace_where", where={"drop_id": drop.drop_id})
    accepted = classified.where(F.col("reason").isNull()).select(
        *CANONICAL, "source_file", drop_col, F.col("event_ds").alias("ds"))
    lake.write("events", accepted, mode="replace_where", where={"drop_id": drop.drop_id})
    lake.write("deliveries", _deliveries(drop, result, now), partition=result.ds)
    lake.write("ingest_stats", pa.table({
        "source_file": [drop.path], "rows_in": [result.rows_in], "accepted": [result.accepted],
        "other_day": [result.other_day], "quarantined": [result.quarantined], "ingested_at": [now],
        "ds": [result.ds],
    }), partition=result.ds)
    if result.late_days:
        log.warning("drop %s changed %d day(s) whose ingest already ran: %s (recorded in late_events)", drop.path,
                    len(result.late_days), ", ".join(result.late_days))
        lake.write("late_events", pa.table({
            "event_ds": list(result.late_days), "drop_id": [drop.drop_id] * len(result.late_days),
            "drop_path": [drop.path] * len(result.late_days), "arrived_ds": [result.ds] * len(result.late_days),
            "rows_before": [before for before, _ in result.late_days.values()],
            "rows_after": [after for _, after in result.late_days.values()],
            "recorded_at": [now] * len(result.late_days),
        }, schema=spec("late_events").schema), mode="append")


def _not_utf8_rows(drop: Drop, ds: str) -> pa.Table:
    """The lines the drop scan found not UTF-8, as quarantine rows with their line numbers and bytes."""
    rows: dict[str, list[Any]] = {name: [] for name in spec("events_quarantine").schema.names}
    for file in drop.files:
        lines = list(file.invalid_lines)
        for line in lines:
            rows["source_file"].append(file.uri)
            rows["line"].append(line.line)
            rows["raw"].append(line.raw)
        # beyond the ones kept with their bytes, the line is still counted
        for _ in range(file.invalid_count - len(lines)):
            rows["source_file"].append(file.uri)
            rows["line"].append(None)
            rows["raw"].append("(not kept)")
    count = len(rows["source_file"])
    rows["reason"] = [NOT_UTF8] * count
    rows["drop_id"] = [drop.drop_id] * count
    rows["ds"] = [ds] * count
    return pa.table(rows, schema=spec("events_quarantine").schema)


def _deliveries(drop: Drop, result: IngestResult, now: dt.datetime) -> pa.Table:
    destinations = [("events", day, None, rows) for day, rows in result.days.items()]
    destinations += [("quarantine", None, reason, rows) for reason, rows in result.quarantine_reasons.items()]
    count = len(destinations)
    return pa.table({
        "drop_id": [drop.drop_id] * count, "drop_path": [drop.path] * count,
        "fingerprint": [drop.fingerprint] * count, "files": [len(drop.files)] * count,
        "bytes": [drop.bytes] * count, "destination": [d[0] for d in destinations],
        "event_ds": [d[1] for d in destinations], "reason": [d[2] for d in destinations],
        "rows": [d[3] for d in destinations], "ingested_at": [now] * count, "ds": [result.ds] * count,
    }, schema=spec("deliveries").schema)


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
