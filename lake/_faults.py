"""Test-only fault injection: hold one table write just before its Delta commit.

The reliability tests (tests/reliability/) set, in the environment of the process under test:

    SEQREC_FAULT_PAUSE_BEFORE_COMMIT=<table name>
    SEQREC_FAULT_PAUSE_MARKER=<path of a file that does not exist yet>

A write to that table, once its rows have been handed to the writer but before the commit that would
publish them, creates the marker file and waits until the test deletes it, then commits as usual. Where the
hold sits: delta-rs (Arrow) after the writer took the last row; the Spark delta-rs writer after every task
wrote its files, just before the driver's commit; delta-spark after the first finished task handed its last
row to Delta's writer (its files are still open and the job, hence Delta's commit, waits for it). While
it waits, the test can SIGKILL the process (a crash mid-write) or let another writer commit first (a
race with a known interleaving). Writes that find the marker already there are not held, so only one
write is held at a time. Outside those tests the variables are unset and nothing here does anything.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa

PAUSE_ENV = "SEQREC_FAULT_PAUSE_BEFORE_COMMIT"
MARKER_ENV = "SEQREC_FAULT_PAUSE_MARKER"
# A held write that nobody releases fails instead of hanging a test run forever.
PAUSE_LIMIT_SECONDS = 300


def holds_writes_to(table: str) -> bool:
    """Whether the environment asks to hold writes to ``table``."""
    return os.environ.get(PAUSE_ENV) == table


def pause_before_commit(table: str) -> None:
    """Hold here while the marker exists, if the environment asks to hold writes to ``table``."""
    marker = os.environ.get(MARKER_ENV)
    if os.environ.get(PAUSE_ENV) != table or not marker:
        return
    try:
        with open(marker, "x") as handle:
            handle.write(str(os.getpid()))
    except FileExistsError:
        return
    deadline = time.monotonic() + PAUSE_LIMIT_SECONDS
    while Path(marker).exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{PAUSE_ENV}={table}: nobody released the write (delete {marker})")
        time.sleep(0.05)


def held_before_commit(table: str, data: pa.Table) -> pa.Table | pa.RecordBatchReader:
    """``data`` as delta-rs should receive it: unchanged, or streamed with a hold after the last batch.

    delta-rs commits as soon as its input stream ends, so holding the end of the stream holds the write
    after the writer has read the table's snapshot and taken every row, and before it commits.
    """
    if not holds_writes_to(table):
        return data

    def batches() -> Iterator[pa.RecordBatch]:
        yield from data.to_batches()
        pause_before_commit(table)

    return pa.RecordBatchReader.from_batches(data.schema, batches())
