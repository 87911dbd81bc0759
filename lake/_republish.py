"""One partition of a table republished as the whole of another, file by file (``Lake.republish``).

Publishing a day of recommendations copies tens of millions of rows that were checked and must not change.
Sending them through Spark's rows and back out through a writer decodes and re-encodes every value twice; here
each executor task reads one of the partition's Parquet files with Arrow, adds the partition column the
target stores as an ordinary column, and writes it into the target's folder (measured: docs/benchmarks.md).
The driver then commits every file in one overwrite through the same delta-rs transaction as the lake's
Spark writes, so readers see the old table or the new one, never a mix. A failed run deletes the files it
wrote (a task Spark was still cancelling may leave one more behind; not in the log, no reader sees it).
"""

from __future__ import annotations

import contextlib
import json
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from lake._arrow import conform
from lake._spark_writer import DeltaRsWriter, _filesystem, _WrittenFiles
from lake.schemas import spec

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

BATCH_ROWS = 65_536


@dataclass(frozen=True)
class FileCopy:
    """What every task needs: where the files come from, where they go, and the column value to add."""

    source_root: str
    target_root: str
    target: str  # the target table's name (its declared schema)
    column: str
    value: str
    storage_options: dict[str, str]
    prefix: str  # every file this run writes starts with it, so a failed run's files can be found

    def rewrite(self, numbered: tuple[int, str]) -> tuple[str, int, dict[str, str], int]:
        """Copy one source file (relative to ``source_root``) into the target; (path, bytes, {}, rows)."""
        index, relative = numbered
        source = _filesystem(self.source_root, self.storage_options)
        target = _filesystem(self.target_root, self.storage_options)
        table_spec = spec(self.target)
        path = f"{self.prefix}-{index:05d}.zstd.parquet"
        rows = 0
        with source.open_input_file(relative) as handle, target.open_output_stream(path) as stream, \
                pq.ParquetWriter(stream, table_spec.schema, compression="zstd") as writer:
            for batch in pq.ParquetFile(handle).iter_batches(batch_size=BATCH_ROWS):
                values = pa.array([self.value] * batch.num_rows, pa.string())
                writer.write_table(conform(pa.Table.from_batches([batch]).append_column(self.column, values),
                                           table_spec))
                rows += batch.num_rows
        return path, target.get_file_info(path).size, {}, rows

    def delete_written(self) -> None:
        """Delete every file this run wrote (the commit never happened, so no reader can see them)."""
        target = _filesystem(self.target_root, self.storage_options)
        for info in target.get_file_info(pafs.FileSelector("", allow_not_found=True)):
            if info.base_name.startswith(self.prefix):
                with contextlib.suppress(OSError):
                    target.delete_file(info.path)


def republish(spark: SparkSession | None, copy: FileCopy, sources: list[str]) -> None:
    """Write ``sources`` (paths under ``copy.source_root``) into the target and commit them as its new whole
    content; with a session the executors write one file per task, without one this process does."""
    numbered = list(enumerate(sources))
    writer = DeltaRsWriter({"table": copy.target, "root": copy.target_root, "mode": "overwrite",
                            "replaced": "null", "storage_options": json.dumps(copy.storage_options)})
    try:
        if spark is not None and numbered:
            written = spark.sparkContext.parallelize(numbered, len(numbered)).map(copy.rewrite).collect()
        else:
            written = [copy.rewrite(item) for item in numbered]
        writer.commit([_WrittenFiles(written)])
    except BaseException:
        copy.delete_written()
        raise


def new_prefix() -> str:
    return f"part-{uuid.uuid4().hex}"
