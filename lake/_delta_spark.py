"""delta-spark backend (``lake.spark_backend: delta-spark``): Delta Lake's own Spark writer and reader.

Each write is one Delta transaction: ``replaceWhere`` for a partition, else append or overwrite. Delta's
optimistic concurrency refuses a commit whose reads were changed by a concurrent one; that surfaces here as
the retryable :class:`~lake.errors.ConcurrentWriteError`, as with the delta-rs backend.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from lake._arrow import castable
from lake._faults import holds_writes_to, pause_before_commit
from lake.errors import ConcurrentWriteError, SchemaMismatchError
from lake.schemas import TableSpec

if TYPE_CHECKING:
    import pyarrow as pa
    from pyspark.sql import DataFrame, SparkSession

# Delta's commit-conflict exceptions (io.delta.exceptions.*), as their Java class names appear in errors.
_CONFLICTS = (
    "ConcurrentAppendException", "ConcurrentDeleteReadException", "ConcurrentDeleteDeleteException",
    "ConcurrentTransactionException", "ConcurrentWriteException", "MetadataChangedException",
    "ProtocolChangedException",
)


def conform_spark(df: DataFrame, table_spec: TableSpec) -> DataFrame:
    """``df`` cast to the declared Spark types, refusing casts that could change meaning (as lake._arrow does)."""
    from pyspark.sql import functions as F
    from pyspark.sql.pandas.types import from_arrow_schema, to_arrow_schema

    declared = from_arrow_schema(table_spec.schema)
    actual = to_arrow_schema(df.select(*table_spec.schema.names).schema)
    columns = []
    for field in table_spec.schema:
        source = actual.field(field.name).type
        if not castable(source, field.type):
            raise SchemaMismatchError(
                f"table '{table_spec.name}', column '{field.name}': got {source}, declared {field.type}"
            )
        columns.append(F.col(field.name).cast(declared[field.name].dataType).alias(field.name))
    return df.select(*columns)


def _checked_replaced(df: DataFrame, table_spec: TableSpec, replaced: dict[str, str]) -> DataFrame:
    """Rows outside the replaced partitions fail the write (replaceWhere would too, less clearly)."""
    from pyspark.sql import functions as F

    for column, value in replaced.items():
        message = F.concat(F.lit(f"lake.errors.SchemaMismatchError: table '{table_spec.name}': replacing "
                                 f"{column}={value} but rows hold {column}="), F.col(column).cast("string"))
        df = df.withColumn(column, F.when(F.col(column) == value, F.col(column)).otherwise(F.raise_error(message)))
    return df


def _held(df: DataFrame, table: str) -> DataFrame:
    """Test-only (lake._faults): the write's first task to finish its rows holds before the commit."""

    def pass_through(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        yield from batches
        pause_before_commit(table)

    return df.mapInArrow(pass_through, df.schema)


def write_delta_spark(df: DataFrame, uri: str, table_spec: TableSpec, mode: str,
                      replaced: dict[str, str] | None) -> None:
    """One Delta commit via Spark: replaceWhere for the replaced partitions, else append or overwrite."""
    df = conform_spark(df, table_spec)
    if replaced:
        df = _checked_replaced(df, table_spec, replaced)
    if holds_writes_to(table_spec.name):
        df = _held(df, table_spec.name)
    writer = df.write.format("delta")
    if table_spec.partition_columns:
        writer = writer.partitionBy(*table_spec.partition_columns)
    if replaced:
        condition = " AND ".join(f"{column} = '{value.replace(chr(39), chr(39) * 2)}'"
                                 for column, value in replaced.items())
        writer = writer.mode("overwrite").option("replaceWhere", condition)
    else:
        writer = writer.mode("append" if mode == "append" else "overwrite")
    try:
        writer.save(uri)
    except Exception as exc:  # py4j / pyspark wrap the JVM's exception types
        conflict = next((name for name in _CONFLICTS if name in str(exc)), None)
        if conflict is None:
            raise
        raise ConcurrentWriteError(
            f"table '{table_spec.name}': another writer committed first ({conflict}); rerun the task"
        ) from exc


def read_delta_spark(spark: SparkSession, uri: str, version: int | None) -> DataFrame:
    reader = spark.read.format("delta")
    if version is not None:
        reader = reader.option("versionAsOf", version)
    return reader.load(uri)
