"""delta-spark backend: used for Spark DataFrames when Delta's jars are on the classpath (clusters)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from lake.schemas import TableSpec

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession


def write_delta_spark(df: DataFrame, uri: str, table_spec: TableSpec, mode: str, partition: str | None) -> None:
    """One Delta commit via Spark: replaceWhere for a partition, else append or overwrite."""
    writer = df.write.format("delta")
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
