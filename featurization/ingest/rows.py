"""Raw rows (featurization.ingest.reader) -> typed events, each with its local day or the reason it is refused.

The first reason that applies wins, in this order: not UTF-8, wrong number of fields, ids (null,
non-integer, beyond the long range; user and item ids also zero or negative, since scoring reads a
non-positive item id as "no item"), behaviour (null,
unknown), event_time (null, a number beyond range, unparseable, before ``ingest.time_floor``, in the
future), and with ``single_day_source`` an event after the end of ds.

Times: ``unix_seconds`` and ``unix_millis`` are numbers of that unit (fractions kept); ``iso8601`` strings
with an offset or ``Z`` are the instant they name, those without one are a wall clock in ``lake.timezone``.
An event's day (``event_ds``) is its local date in ``lake.timezone``.
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING

from featurization.ingest.settings import CANONICAL, IngestSettings

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame

__all__ = ["NOT_UTF8", "WRONG_WIDTH", "classify", "implausible_unit"]

WRONG_WIDTH = "wrong number of fields (expected 5)"
NOT_UTF8 = "not valid UTF-8"
_INTEGER = r"^\s*-?[0-9]+\s*$"
_NUMBER = r"^\s*-?[0-9]+(\.[0-9]+)?\s*$"
_OFFSET = r"(Z|z|[+-][0-9]{2}(:?[0-9]{2})?)$"
# A time value past this many of the configured unit is not that unit: 1e11 seconds is the year 5138, and
# 1e11 milliseconds is 1973-03-03, before any data this job sees.
_UNIT_BOUNDARY = 1e11


def _event_time(settings: IngestSettings, timezone: str) -> Column:
    from pyspark.sql import functions as F

    value = F.trim(F.col("event_time"))
    if settings.time_unit == "unix_seconds":
        return F.when(value.rlike(_NUMBER), F.timestamp_micros((value.cast("double") * 1e6).try_cast("long")))
    if settings.time_unit == "unix_millis":
        return F.when(value.rlike(_NUMBER), F.timestamp_micros((value.cast("double") * 1e3).try_cast("long")))
    parsed = F.try_to_timestamp(value)  # no offset: read in the session's zone (UTC), made local below
    return F.when(value.rlike(_OFFSET), parsed).otherwise(F.to_utc_timestamp(parsed, timezone))


def implausible_unit(settings: IngestSettings) -> Column:
    """True for a numeric event_time that reads as the other unit (seconds vs milliseconds)."""
    from pyspark.sql import functions as F

    value = F.trim(F.col("event_time"))
    number = F.when(value.rlike(_NUMBER), value.cast("double"))
    if settings.time_unit == "unix_seconds":
        return F.coalesce(F.abs(number) > _UNIT_BOUNDARY, F.lit(False))
    if settings.time_unit == "unix_millis":
        return F.coalesce(F.abs(number) < _UNIT_BOUNDARY, F.lit(False))
    return F.lit(False)


def _blank(column: str) -> Column:
    from pyspark.sql import functions as F

    return F.col(column).isNull() | (F.trim(F.col(column)) == "")


def classify(raw: DataFrame, settings: IngestSettings, ds: str, timezone: str, now: dt.datetime) -> DataFrame:
    """``user_id, item_id, category_id, behaviour, event_time, event_ds, raw, source_file, reason`` (null =
    valid), ``numeric_time`` (event_time is a number) and ``implausible_unit`` (see :func:`implausible_unit`)."""
    from pyspark.sql import functions as F

    behaviour_map = F.create_map(*[F.lit(x) for kv in settings.behaviours.items() for x in kv])
    # try_cast: under ANSI SQL one id beyond the long range would otherwise fail the whole job.
    ids = {c: F.when(F.col(c).rlike(_INTEGER), F.trim(F.col(c)).try_cast("long")) for c in CANONICAL[:3]}
    behaviour = behaviour_map[F.lower(F.trim(F.col("behaviour")))]
    event_time = _event_time(settings, timezone)
    floor = dt.datetime.fromisoformat(settings.time_floor).replace(tzinfo=dt.UTC)
    day_end = F.to_utc_timestamp(F.lit(f"{ds} 00:00:00").cast("timestamp") + F.expr("INTERVAL 1 DAY"), timezone)

    reason = F.when(F.col("_bad_encoding"), F.lit(NOT_UTF8)).when(F.col("_bad_width"), F.lit(WRONG_WIDTH))
    for column, parsed in ids.items():
        reason = reason.when(_blank(column), F.lit(f"null {column}"))
        reason = reason.when(~F.col(column).rlike(_INTEGER), F.concat(F.lit(f"non-integer {column}: "), F.col(column)))
        reason = reason.when(parsed.isNull(), F.concat(F.lit(f"out-of-range {column}: "), F.col(column)))
        if column != "category_id":  # category 0 is a source's "none" (the SASRec adapter writes it)
            reason = reason.when(parsed <= 0, F.concat(F.lit(f"non-positive {column}: "), F.trim(F.col(column))))
    numeric_time = settings.time_unit != "iso8601"
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
        F.coalesce(F.trim(F.col("event_time")).rlike(_NUMBER), F.lit(False)).alias("numeric_time"),
        implausible_unit(settings).alias("implausible_unit"),
    )
