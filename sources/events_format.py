"""Adapter: a delimited file of ``user, item, behaviour, timestamp`` rows with a header (any column names,
any behaviour words the ingest mapping knows), plus an optional held-out file of ``user, item`` rows (one
later event per user, no time) -> raw events in the generic ingest format, so the same ingest -> featurize
-> train -> evaluate pipeline runs on it. Retailrocket's multi-behaviour form (../shared/data/retailrocket)
is one such pair::

    seqrec convert-events --input train_interactions.tsv --heldout test_buy.tsv --output DIR
    seqrec ingest --ds <last day> --source DIR/events.parquet --config DIR/seqrec.yaml
    seqrec featurize --ds <last day> --config DIR/seqrec.yaml

A held-out row becomes an event of ``heldout_behaviour`` one second after its user's last event, so the
leave-one-out split makes it the user's test target (and the user's last real event the validation target):
ranking it is the protocol of the papers that publish such files. Users of the held-out file without
events are counted and left out (nothing to rank from). Without a named category column every event is
category 0. Ingest reads an id of 0 or below as missing (quarantined with its reason), so a file that
numbers from 0 needs ``id_offset=1`` (``--id-offset 1``): it is added to every user and item id, in both
files, and the output's ids are the source's plus the offset. The written configuration keeps every row of
the published data set (k-core off: it would remove held-out items and users) and leaves the other cleaning
steps on.
"""

from __future__ import annotations

import datetime as dt
import zoneinfo
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import yaml

from lake import EmptyInputError, InputError
from sources._config import beneath

__all__ = ["EVENTS_CONFIG", "EventColumns", "EventsConvertResult", "convert_events", "events_with_heldout",
           "read_events"]

NO_CATEGORY = 0
EVENT_COLUMNS = ("user_id", "item_id", "category_id", "behaviour", "event_time")
# Settings that make ingest read events.parquet and keep the data set whole.
EVENTS_CONFIG = {
    "ingest": {
        "format": "generic",
        "time_unit": "unix_seconds",
        "columns": {c: c for c in EVENT_COLUMNS},
    },
    "featurize": {"kcore_user_min_events": 1, "kcore_item_min_events": 1},
}


@dataclass(frozen=True)
class EventColumns:
    """The source's column names (``category`` None: the file has none)."""

    user: str = "user"
    item: str = "item"
    behaviour: str = "behavior"
    time: str = "timestamp"
    category: str | None = None


DEFAULT_COLUMNS = EventColumns()


@dataclass(frozen=True)
class EventsConvertResult:
    events_file: str
    config_file: str
    events: int
    heldout_events: int
    heldout_without_history: int
    users: int
    items: int
    # rows whose user or item id is 0 or below after the offset: ingest will quarantine them
    non_positive_ids: int
    first_ds: str
    last_ds: str


def _delimiter(path: Path, delimiter: str | None) -> str:
    if delimiter:
        return delimiter
    return "\t" if path.suffix.lower() in (".tsv", ".tab") else ","


def _read_table(path: Path, delimiter: str | None, types: Mapping[str, pa.DataType]) -> pa.Table:
    try:
        table = pacsv.read_csv(
            path,
            parse_options=pacsv.ParseOptions(delimiter=_delimiter(path, delimiter)),
            convert_options=pacsv.ConvertOptions(column_types=dict(types), include_columns=list(types)),
        )
    except FileNotFoundError:
        raise InputError(f"{path} does not exist") from None
    except (pa.ArrowInvalid, KeyError) as exc:
        raise InputError(f"{path}: expected a header with columns {list(types)} ({exc})") from None
    if table.num_rows == 0:
        raise EmptyInputError(f"{path} holds no rows")
    return table


def read_events(path: str | Path, columns: EventColumns, *, delimiter: str | None = None) -> pa.Table:
    """The generic-format events of ``path``: ``user_id, item_id, category_id, behaviour, event_time``."""
    types: dict[str, pa.DataType] = {columns.user: pa.int64(), columns.item: pa.int64(),
                                     columns.behaviour: pa.string(), columns.time: pa.int64()}
    if columns.category:
        types[columns.category] = pa.int64()
    raw = _read_table(Path(path), delimiter, types)
    categories = (raw.column(columns.category) if columns.category
                  else pa.array(np.full(raw.num_rows, NO_CATEGORY, dtype=np.int64)))
    return pa.table({
        "user_id": raw.column(columns.user), "item_id": raw.column(columns.item), "category_id": categories,
        "behaviour": raw.column(columns.behaviour), "event_time": raw.column(columns.time),
    })


def events_with_heldout(events: pa.Table, heldout: pa.Table, behaviour: str) -> tuple[pa.Table, int]:
    """``events`` plus each held-out ``(user_id, item_id)`` as a ``behaviour`` event one second after its user's
    last event (category of the item's latest event, else 0); also the number of held-out rows whose user has
    no event (left out)."""
    last = events.group_by("user_id").aggregate([("event_time", "max")])
    placed = heldout.join(last, "user_id", join_type="inner")
    dropped = heldout.num_rows - placed.num_rows
    newest_first = events.take(pc.sort_indices(events, [("event_time", "descending")]))
    latest_category = (newest_first.select(["item_id", "category_id"])
                       .group_by("item_id", use_threads=False).aggregate([("category_id", "first")]))
    placed = placed.join(latest_category, "item_id", join_type="left outer")
    appended = pa.table({
        "user_id": placed.column("user_id"),
        "item_id": placed.column("item_id"),
        "category_id": pc.fill_null(placed.column("category_id_first"), NO_CATEGORY),
        "behaviour": pa.array([behaviour] * placed.num_rows, pa.string()),
        "event_time": pc.add(placed.column("event_time_max"), 1),
    })
    return pa.concat_tables([events, appended]), dropped


def _offset_ids(table: pa.Table, offset: int) -> pa.Table:
    if offset == 0:
        return table
    for name in ("user_id", "item_id"):
        table = table.set_column(table.schema.get_field_index(name), name, pc.add(table.column(name), offset))
    return table


def _local_day(seconds: int, timezone: str) -> str:
    return dt.datetime.fromtimestamp(seconds, zoneinfo.ZoneInfo(timezone)).date().isoformat()


def convert_events(
    input_path: str | Path, output: str | Path, timezone: str, *, heldout_path: str | Path | None = None,
    columns: EventColumns = DEFAULT_COLUMNS, heldout_behaviour: str = "buy", delimiter: str | None = None,
    base: Mapping[str, Any] | None = None, id_offset: int = 0,
) -> EventsConvertResult:
    """Write ``events.parquet`` and ``seqrec.yaml`` under ``output`` (see the module docstring).

    Args:
        heldout_behaviour: the raw behaviour word of the held-out events (it must map in ``ingest.behaviours``).
        base: the user's configuration overrides (lake root, ...) to carry into ``seqrec.yaml``, beneath
            EVENTS_CONFIG, so the written file is the only --config the next stages need.
        id_offset: added to every user and item id (1 for files that number from 0).
    """
    events = _offset_ids(read_events(input_path, columns, delimiter=delimiter), id_offset)
    heldout_events = dropped = 0
    if heldout_path is not None:
        heldout = _read_table(Path(heldout_path), delimiter, {columns.user: pa.int64(), columns.item: pa.int64()})
        heldout = _offset_ids(heldout.rename_columns(["user_id", "item_id"]), id_offset)
        events, dropped = events_with_heldout(events, heldout, heldout_behaviour)
        heldout_events = heldout.num_rows - dropped
    times = pc.min_max(events.column("event_time")).as_py()
    folder = Path(output)
    folder.mkdir(parents=True, exist_ok=True)
    events_file = folder / "events.parquet"
    pq.write_table(events, events_file)
    first_ds, last_ds = _local_day(times["min"], timezone), _local_day(times["max"], timezone)
    config_file = folder / "seqrec.yaml"
    config_file.write_text(
        f"# Reads {events_file.name} (converted from {input_path}"
        + (f" and the held-out rows of {heldout_path}" if heldout_path else "")
        + f"; {first_ds} .. {last_ds}); see sources/events_format.py.\n"
        + yaml.safe_dump(beneath(EVENTS_CONFIG, base), sort_keys=False)
    )
    return EventsConvertResult(
        events_file=str(events_file), config_file=str(config_file), events=events.num_rows,
        heldout_events=heldout_events, heldout_without_history=dropped,
        users=len(pc.unique(events.column("user_id"))), items=len(pc.unique(events.column("item_id"))),
        non_positive_ids=int(pc.sum(pc.or_(pc.less_equal(events.column("user_id"), 0),
                                           pc.less_equal(events.column("item_id"), 0))).as_py() or 0),
        first_ds=first_ds, last_ds=last_ds,
    )
