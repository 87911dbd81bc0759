"""Adapter: a SASRec-format file (``user item`` per line, each user's lines in time order, no timestamps)
-> raw events in the generic ingest format, so the same ingest -> featurize pipeline runs on it.

Writes ``events.parquet`` (``user_id, item_id, category_id, behaviour, event_time``) and ``seqrec.yaml``,
the configuration that reads it::

    seqrec convert-sasrec --input amazon_games.txt --output DIR --ds 2018-01-01
    seqrec ingest --ds 2018-01-01 --source DIR/events.parquet --config DIR/seqrec.yaml
    seqrec featurize --ds 2018-01-01 --config DIR/seqrec.yaml

The file has no time, category or behaviour, so every event is a ``click`` of category 0 on day ``ds``,
and a user's k-th line gets the timestamp local midnight of ``ds`` + k seconds: the order is preserved
exactly, but time gaps (and so gap buckets) are meaningless and a time split is not possible.
The configuration turns off the steps that would misread that: burst collapsing (one-second spacing looks
like reloads) and abnormal users (a whole history lands on one day). It also turns k-core off so the data
set stays exactly the published one: the SASRec preprocessing filtered users and items with fewer than 5
actions once, which is not a fixed point (iterating 5-core to its fixed point on amazon_games.txt takes 12
rounds and removes 55,327 of its 287,107 events). Set featurize.kcore_* back to 5 to run the full filter.
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

__all__ = ["SASREC_CONFIG", "ConvertResult", "convert_sasrec", "read_sasrec", "sasrec_events"]

SECONDS_PER_DAY = 86_400
SASREC_CATEGORY = 0
SASREC_BEHAVIOUR = "click"
# Settings that make ingest read events.parquet and keep featurize from misreading synthetic times.
SASREC_CONFIG = {
    "ingest": {
        "format": "generic",
        "time_unit": "unix_seconds",
        "columns": {c: c for c in ("user_id", "item_id", "category_id", "behaviour", "event_time")},
    },
    "featurize": {
        "burst_window_seconds": 0, "abnormal_quantile": 1.0, "abnormal_min_events_per_day": 0,
        "kcore_user_min_events": 1, "kcore_item_min_events": 1,
    },
}


@dataclass(frozen=True)
class ConvertResult:
    events_file: str
    config_file: str
    events: int
    users: int
    items: int


def read_sasrec(path: str | Path) -> pa.Table:
    """``user_id, item_id`` (int64) in file order; InputError if a line is not two integers."""
    try:
        table = pacsv.read_csv(
            path,
            read_options=pacsv.ReadOptions(column_names=["user_id", "item_id"]),
            parse_options=pacsv.ParseOptions(delimiter=" "),
            convert_options=pacsv.ConvertOptions(column_types={"user_id": pa.int64(), "item_id": pa.int64()}),
        )
    except FileNotFoundError:
        raise InputError(f"{path} does not exist") from None
    except pa.ArrowInvalid as exc:
        raise InputError(f"{path} is not a SASRec file of 'user item' integer pairs: {exc}") from None
    if table.num_rows == 0:
        raise EmptyInputError(f"{path} holds no lines")
    return table


def sasrec_events(pairs: pa.Table, ds: str, timezone: str) -> pa.Table:
    """Generic-format events: a user's k-th pair (k = 0, 1, ...) at local midnight of ``ds`` + k seconds."""
    users = pairs.column("user_id").to_numpy()
    # A stable sort by user keeps each user's lines in file order, wherever they are in the file.
    order = np.argsort(users, kind="stable")
    sorted_users = users[order]
    group_start = np.flatnonzero(np.concatenate([[True], sorted_users[1:] != sorted_users[:-1]]))
    sizes = np.diff(np.concatenate([group_start, [len(users)]]))
    if sizes.max() >= SECONDS_PER_DAY:
        raise InputError(
            f"a user has {sizes.max():,} lines; one-second spacing cannot fit them into one day"
        )
    step = np.empty(len(users), dtype=np.int64)
    step[order] = np.arange(len(users)) - np.repeat(group_start, sizes)
    midnight = dt.datetime.combine(dt.date.fromisoformat(ds), dt.time(), zoneinfo.ZoneInfo(timezone))
    return pa.table({
        "user_id": pairs.column("user_id"),
        "item_id": pairs.column("item_id"),
        "category_id": pa.array(np.full(len(users), SASREC_CATEGORY, dtype=np.int64)),
        "behaviour": pa.array([SASREC_BEHAVIOUR] * len(users), pa.string()),
        "event_time": pa.array(int(midnight.timestamp()) + step, pa.int64()),
    })


def convert_sasrec(
    input_path: str | Path, output: str | Path, ds: str, timezone: str, *, base: Mapping[str, Any] | None = None
) -> ConvertResult:
    """Write ``events.parquet`` and ``seqrec.yaml`` under ``output`` (see the module docstring).

    Args:
        base: the user's configuration overrides (lake root, ...) to carry into ``seqrec.yaml``, beneath
            SASREC_CONFIG, so the written file is the only --config the next stages need.
    """
    dt.date.fromisoformat(ds)
    pairs = read_sasrec(input_path)
    events = sasrec_events(pairs, ds, timezone)
    folder = Path(output)
    folder.mkdir(parents=True, exist_ok=True)
    events_file = folder / "events.parquet"
    pq.write_table(events, events_file)
    config_file = folder / "seqrec.yaml"
    config_file.write_text(
        f"# Reads {events_file.name} (converted from {input_path}, all on ds={ds}); see sources/sasrec_format.py.\n"
        + yaml.safe_dump(beneath(SASREC_CONFIG, base), sort_keys=False)
    )
    return ConvertResult(
        events_file=str(events_file), config_file=str(config_file), events=events.num_rows,
        users=len(pc.unique(pairs.column("user_id"))), items=len(pc.unique(pairs.column("item_id"))),
    )


