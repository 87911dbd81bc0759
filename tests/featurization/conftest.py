"""Hand-made events for the featurization tests: (user, item, category, behaviour, ds, seconds into the day)."""

from __future__ import annotations

import datetime as dt
import zoneinfo
from collections.abc import Callable, Iterable

import pyarrow as pa
import pytest

from lake.schemas import BEHAVIOUR_INDEX, spec

# The default lake.timezone: a ds is a local day there.
ZONE = zoneinfo.ZoneInfo("Asia/Shanghai")
DAY1, DAY2, DAY3 = "2017-11-25", "2017-11-26", "2017-11-27"

Event = tuple[int, int, int, str, str, int]


def at(ds: str, seconds: int) -> dt.datetime:
    """``seconds`` after local midnight of ``ds``, in UTC."""
    midnight = dt.datetime.combine(dt.date.fromisoformat(ds), dt.time(), ZONE)
    return (midnight + dt.timedelta(seconds=seconds)).astimezone(dt.UTC)


def events_table(rows: Iterable[Event]) -> pa.Table:
    """Rows in the declared schema of the ``events`` table."""
    rows = list(rows)
    return pa.table({
        "user_id": [r[0] for r in rows],
        "item_id": [r[1] for r in rows],
        "category_id": [r[2] for r in rows],
        "behaviour": [r[3] for r in rows],
        "event_time": pa.array([at(r[4], r[5]) for r in rows], pa.timestamp("us", tz="UTC")),
        "source_file": ["hand-made"] * len(rows),
        "drop_id": ["hand-made"] * len(rows),
        "ds": [r[4] for r in rows],
    }, schema=spec("events").schema)


@pytest.fixture
def make_events(spark) -> Callable[[Iterable[Event]], object]:
    """Hand-made events as the DataFrame the cleaning steps take (behaviour as its index)."""

    def make(rows: Iterable[Event]):
        table = events_table(rows)
        behaviours = pa.array([BEHAVIOUR_INDEX[b] for b in table.column("behaviour").to_pylist()], pa.int32())
        table = table.drop_columns(["behaviour", "source_file", "drop_id"]).append_column("behaviour_index", behaviours)
        return spark.createDataFrame(table)

    return make
