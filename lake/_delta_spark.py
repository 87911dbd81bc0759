"""delta-spark backend: used for Spark DataFrames when Delta's jars are on the classpath (clusters)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from lake._arrow import castable
from lake.errors import SchemaMismatchError
from lake.schemas import TableSpec

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession


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


def write_delta_spark(df: DataFrame, uri: str, table_spec: TableSpec, mode: str, partition: str | None) -> None:
    """One Delta commit via Spark: replaceWhere for a partition, else append or overwrite."""
    writer = conform_spark(df, table_spec).write.format("delta")
    if table_spec.partition_by:
        writer = writer.partitionBy(table_spec.partition_by)
    if mode == "replace_partition":
        escaped = (partition or "").replace("'", "''")
        writer = writer.mode("overwrite").option("replaceWhere", f"{table_spec.partition_by} = '{escaped}'")
    else:
        writer = writer.mode("append" if mode == "append" else "overwrite")
    writer.save(uri)


def read_delta_spark(spark: SparkSession, uri: str, version: int | None) -> DataFrame:
    reader = spark.read.format("delta")
    if version is not None:
        reader = reader.option("versionAsOf", version)
    return reader.load(uri)
