"""The one place a SparkSession is built, so every stage runs with the same settings."""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING

from lake.config import Config

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

__all__ = ["delta_jars_loaded", "get_spark"]

# Settings every stage relies on, whatever the user's config says.
_REQUIRED_CONF = {
    # Timestamps land in Parquet as INT64 micros (delta-rs and pyarrow read them; INT96 is legacy).
    "spark.sql.parquet.outputTimestampType": "TIMESTAMP_MICROS",
    # Keep `ds=2017-11-25` a string when Spark reads partition folders.
    "spark.sql.sources.partitionColumnTypeInference.enabled": "false",
    "spark.sql.execution.arrow.pyspark.enabled": "true",
}


def get_spark(config: Config) -> SparkSession:
    """Return the active SparkSession or build one from the ``spark`` config section.

    Under spark-submit the master and resources come from spark-submit; otherwise from config.
    """
    from pyspark import SparkConf
    from pyspark.sql import SparkSession

    settings = config.spark
    # Workers must run the same interpreter (and so the same pinned pyarrow/torch) as the driver.
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    builder = SparkSession.builder.appName(settings.app_name)
    if not SparkConf().contains("spark.master"):
        builder = builder.master(settings.master)
    for key, value in {**settings.conf, **_REQUIRED_CONF}.items():
        builder = builder.config(key, str(value))
    if config.lake.backend == "delta-spark":
        builder = builder.config("spark.sql.extensions", "io.delta.sql.DeltaSparkSessionExtension").config(
            "spark.sql.catalog.spark_catalog", "org.apache.spark.sql.delta.catalog.DeltaCatalog"
        )
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("WARN")
    return spark


def delta_jars_loaded(spark: SparkSession) -> bool:
    """Whether Delta Lake's JVM classes are on this session's classpath (a cluster with delta-spark)."""
    try:
        jvm = spark.sparkContext._jvm
        jvm.java.lang.Class.forName(
            "io.delta.tables.DeltaTable", True, jvm.java.lang.Thread.currentThread().getContextClassLoader()
        )
        return True
    except Exception:
        return False
