"""Parallel Spark -> Delta writes without Delta's JVM jars.

A Spark 4 Python Data Source: each task conforms its Arrow batches to the table's declared schema and
writes Parquet files into the table folder; the driver-side ``commit`` adds them all to the Delta log in
one delta-rs transaction. Until that commit the new files are invisible to readers; if the job fails,
``abort`` deletes them, so a failed run leaves the table exactly as it was.
"""

from __future__ import annotations

import contextlib
import json
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.parquet as pq
from pyspark.sql.datasource import DataSource, DataSourceArrowWriter, WriterCommitMessage

SOURCE_NAME = "seqrec_delta_rs"


@dataclass
class _WrittenFiles(WriterCommitMessage):
    # (path relative to the table root, bytes, {partition column: value}, rows)
    files: list[tuple[str, int, dict[str, str], int]]


def _filesystem(root: str, storage_options: dict[str, str]) -> pafs.FileSystem:
    from deltalake.fs import DeltaStorageHandler

    return pafs.PyFileSystem(DeltaStorageHandler(root, storage_options or None))


class DeltaRsSource(DataSource):
    """Options: table (name), root (table URI), mode, replaced ({partition column: value} as JSON, or null),
    storage_options (JSON)."""

    @classmethod
    def name(cls) -> str:
        return SOURCE_NAME

    def writer(self, schema, overwrite: bool) -> DeltaRsWriter:
        return DeltaRsWriter(dict(self.options))


class DeltaRsWriter(DataSourceArrowWriter):
    def __init__(self, options: dict[str, str]) -> None:
        self.table = options["table"]
        self.root = options["root"]
        self.mode = options["mode"]
        self.replaced: dict[str, str] | None = json.loads(options.get("replaced") or "null")
        self.storage_options = json.loads(options.get("storage_options") or "{}")

    def write(self, iterator: Iterator[pa.RecordBatch]) -> _WrittenFiles:
        from lake._arrow import conform
        from lake.errors import SchemaMismatchError
        from lake.schemas import spec

        table_spec = spec(self.table)
        part_cols = table_spec.partition_columns
        fs = _filesystem(self.root, self.storage_options)
        written: list[tuple[str, int, dict[str, str], int]] = []
        writers: dict[tuple[str, ...], tuple[str, Any, pq.ParquetWriter]] = {}
        rows_per_file: dict[tuple[str, ...], int] = {}
        file_schema = pa.schema([f for f in table_spec.schema if f.name not in part_cols])
        try:
            for batch in iterator:
                if batch.num_rows == 0:
                    continue
                data = conform(batch, table_spec)
                for column, value in (self.replaced or {}).items():
                    values = pc.unique(data.column(column)).to_pylist()
                    if values != [value]:
                        raise SchemaMismatchError(
                            f"table '{self.table}': replacing {column}={value} but rows hold {column}={values}"
                        )
                for key, rows in _by_partition(data, part_cols):
                    if key not in writers:
                        folder = "".join(f"{column}={value}/" for column, value in zip(part_cols, key, strict=True))
                        path = f"{folder}part-{uuid.uuid4().hex}.zstd.parquet"
                        stream = fs.open_output_stream(path)
                        writers[key] = (path, stream, pq.ParquetWriter(stream, file_schema, compression="zstd"))
                        rows_per_file[key] = 0
                    writers[key][2].write_table(rows.drop_columns(part_cols))
                    rows_per_file[key] += rows.num_rows
        finally:
            for key, (path, stream, writer) in writers.items():
                writer.close()
                stream.close()
                values = dict(zip(part_cols, key, strict=True))
                written.append((path, fs.get_file_info(path).size, values, rows_per_file[key]))
        return _WrittenFiles(written)

    def commit(self, messages: list[_WrittenFiles | None]) -> None:
        from deltalake import CommitProperties, DeltaTable
        from deltalake.exceptions import CommitFailedError
        from deltalake.transaction import AddAction

        from lake._faults import pause_before_commit
        from lake.errors import ConcurrentWriteError
        from lake.schemas import spec

        table_spec = spec(self.table)
        part_cols = table_spec.partition_columns
        now_ms = int(time.time() * 1000)
        actions = [
            AddAction(
                path=path,
                size=size,
                partition_values=values,
                modification_time=now_ms,
                data_change=True,
                stats=json.dumps({"numRecords": rows}),
            )
            for message in messages
            if message is not None
            for path, size, values, rows in message.files
        ]
        filters = None
        delta_mode = "append"
        if self.mode == "overwrite":
            delta_mode = "overwrite"
        elif self.mode in ("replace_partition", "replace_where"):
            delta_mode = "overwrite"
            filters = [(column, "=", value) for column, value in (self.replaced or {}).items()]
        storage_options = self.storage_options or None
        seen = DeltaTable(self.root, storage_options=storage_options)
        pause_before_commit(self.table)
        table = DeltaTable(self.root, storage_options=storage_options)
        # delta-rs rebases a commit over concurrent ones without noticing that they added files to the partition
        # it replaces (both copies would stay), so a replace fails if what it replaces changed, and the commit
        # may not rebase at all.
        replaced = sorted(seen.file_uris(file_pruning_predicate=filters))
        if self.mode != "append" and sorted(table.file_uris(file_pruning_predicate=filters)) != replaced:
            self.abort(messages)
            raise ConcurrentWriteError(f"table '{self.table}': another writer committed first, to the rows this "
                                       f"write replaces; rerun the task")
        try:
            table.create_write_transaction(
                actions, delta_mode, table_spec.schema, partition_by=part_cols or None,
                partition_filters=filters, commit_properties=CommitProperties(max_commit_retries=0),
            )
        except CommitFailedError as exc:
            self.abort(messages)
            raise ConcurrentWriteError(
                f"table '{self.table}': another writer committed first ({exc}); rerun the task"
            ) from exc

    def abort(self, messages: list[_WrittenFiles | None]) -> None:
        fs = _filesystem(self.root, self.storage_options)
        for message in messages:
            for path, *_ in (message.files if message else []):
                with contextlib.suppress(OSError):
                    fs.delete_file(path)


def _by_partition(data: pa.Table, columns: list[str]) -> Iterator[tuple[tuple[str, ...], pa.Table]]:
    """``data``'s rows grouped by their values of the partition ``columns`` (one group when there are none)."""
    if not columns:
        yield (), data
        return
    keys = data.select(columns).group_by(columns).aggregate([]).to_pylist()
    for key in keys:
        mask = None
        for column in columns:
            match = pc.equal(data.column(column), key[column])
            mask = match if mask is None else pc.and_(mask, match)
        yield tuple(key[column] for column in columns), data.filter(mask)
