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
    files: list[tuple[str, int, str | None, int]]  # (path relative to the table root, bytes, partition, rows)


def _filesystem(root: str, storage_options: dict[str, str]) -> pafs.FileSystem:
    from deltalake.fs import DeltaStorageHandler

    return pafs.PyFileSystem(DeltaStorageHandler(root, storage_options or None))


class DeltaRsSource(DataSource):
    """Options: table (name), root (table URI), mode, partition, storage_options (JSON)."""

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
        self.partition = options.get("partition") or None
        self.storage_options = json.loads(options.get("storage_options") or "{}")

    def write(self, iterator: Iterator[pa.RecordBatch]) -> _WrittenFiles:
        from lake._arrow import conform
        from lake.errors import SchemaMismatchError
        from lake.schemas import spec

        table_spec = spec(self.table)
        part_col = table_spec.partition_by
        fs = _filesystem(self.root, self.storage_options)
        written: list[tuple[str, int, str | None, int]] = []
        writers: dict[str | None, tuple[str, Any, pq.ParquetWriter]] = {}
        rows_per_file: dict[str | None, int] = {}
        file_schema = table_spec.schema if part_col is None else table_spec.schema.remove(
            table_spec.schema.get_field_index(part_col)
        )
        try:
            for batch in iterator:
                if batch.num_rows == 0:
                    continue
                data = conform(batch, table_spec)
                groups: list[tuple[str | None, pa.Table]]
                if part_col is None:
                    groups = [(None, data)]
                else:
                    values = pc.unique(data.column(part_col)).to_pylist()
                    if self.partition is not None and values != [self.partition]:
                        raise SchemaMismatchError(
                            f"table '{self.table}': writing {part_col}={self.partition} but rows hold {values}"
                        )
                    groups = [
                        (v, data.filter(pc.equal(data.column(part_col), v)).drop_columns([part_col]))
                        for v in values
                    ]
                for value, rows in groups:
                    if value not in writers:
                        folder = "" if value is None else f"{part_col}={value}/"
                        path = f"{folder}part-{uuid.uuid4().hex}.zstd.parquet"
                        stream = fs.open_output_stream(path)
                        writers[value] = (path, stream, pq.ParquetWriter(stream, file_schema, compression="zstd"))
                        rows_per_file[value] = 0
                    writers[value][2].write_table(rows)
                    rows_per_file[value] += rows.num_rows
        finally:
            for value, (path, stream, writer) in writers.items():
                writer.close()
                stream.close()
                written.append((path, fs.get_file_info(path).size, value, rows_per_file[value]))
        return _WrittenFiles(written)

    def commit(self, messages: list[_WrittenFiles | None]) -> None:
        from deltalake import CommitProperties, DeltaTable
        from deltalake.exceptions import CommitFailedError
        from deltalake.transaction import AddAction

        from lake._faults import pause_before_commit
        from lake.errors import ConcurrentWriteError
        from lake.schemas import spec

        table_spec = spec(self.table)
        part_col = table_spec.partition_by
        now_ms = int(time.time() * 1000)
        actions = [
            AddAction(
                path=path,
                size=size,
                partition_values={part_col: value} if part_col else {},
                modification_time=now_ms,
                data_change=True,
                stats=json.dumps({"numRecords": rows}),
            )
            for message in messages
            if message is not None
            for path, size, value, rows in message.files
        ]
        filters = None
        delta_mode = "append"
        if self.mode == "overwrite":
            delta_mode = "overwrite"
        elif self.mode == "replace_partition":
            delta_mode = "overwrite"
            filters = [(part_col, "=", self.partition)]
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
                actions, delta_mode, table_spec.schema, partition_by=[part_col] if part_col else None,
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
