"""The one place a SparkSession is built, so every stage runs with the same settings.

Two ways a stage starts Spark:

- from plain Python (``seqrec <stage>``, tests): this module launches the JVM, so the ``spark`` config
  section decides everything: the master, the driver's memory and classpath, the session's settings;
- under ``spark-submit`` (``jobs/<stage>.py``, the Airflow DAG): spark-submit launched the JVM, so its
  ``--master`` and ``--conf`` values win and the config only fills in what they leave unset. The driver's
  classpath and Java options are fixed by then: pass Delta's jars with ``--conf
  spark.driver.extraClassPath=...`` and the class archive with ``--conf spark.driver.extraJavaOptions=...``
  (:func:`submit_launch_conf` gives the values; the DAG passes them).
"""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING

from lake.class_archive import DRIVER_JAVA_OPTIONS, java_options
from lake.config import Config
from lake.errors import ConfigError
from lake.storage import spark_s3_conf

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

__all__ = ["delta_jars_loaded", "get_spark", "submit_launch_conf", "under_spark_submit"]

# Settings every stage relies on, whatever the user's config says.
_REQUIRED_CONF = {
    # Timestamps land in Parquet as INT64 micros (delta-rs and pyarrow read them; INT96 is legacy).
    "spark.sql.parquet.outputTimestampType": "TIMESTAMP_MICROS",
    # Keep `ds=2017-11-25` a string when Spark reads partition folders.
    "spark.sql.sources.partitionColumnTypeInference.enabled": "false",
    "spark.sql.execution.arrow.pyspark.enabled": "true",
}
_DELTA_CONF = {
    "spark.sql.extensions": "io.delta.sql.DeltaSparkSessionExtension",
    "spark.sql.catalog.spark_catalog": "org.apache.spark.sql.delta.catalog.DeltaCatalog",
}
_DELTA_CLASS = "io.delta.tables.DeltaTable"


def under_spark_submit() -> bool:
    """Whether spark-submit started this process (pyspark then joins the JVM it launched)."""
    return "PYSPARK_GATEWAY_PORT" in os.environ


def submit_launch_conf(config: Config, *, with_archive: bool = True) -> dict[str, str]:
    """The ``--conf`` values a driver's JVM needs when it starts: ``spark.jars_dir``'s jars on the driver's
    and executors' classpath and, when ``with_archive`` and the file exists, the class archive
    (:mod:`lake.class_archive`) after the driver's Java options from ``spark.conf``."""
    launch: dict[str, str] = {}
    jars = config.spark.jars()
    if jars:
        classpath = ":".join(jars)
        launch = {"spark.driver.extraClassPath": classpath, "spark.executor.extraClassPath": classpath}
    options = [str(config.spark.conf.get(DRIVER_JAVA_OPTIONS, "")), java_options(config) if with_archive else ""]
    if any(options):
        launch[DRIVER_JAVA_OPTIONS] = " ".join(option for option in options if option)
    return launch


def _wants_delta(config: Config) -> bool:
    return config.lake.spark_backend != "delta-rs" and any(
        os.path.basename(jar).startswith("delta-spark") for jar in config.spark.jars())


def get_spark(config: Config) -> SparkSession:
    """Return the active SparkSession or build one from the ``spark`` config section (see the module doc)."""
    from pyspark.sql import SparkSession

    settings = config.spark
    # Workers must run the same interpreter (and so the same pinned pyarrow/torch) as the driver.
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    wanted: dict[str, str] = {"spark.master": settings.master, "spark.app.name": settings.app_name,
                              **submit_launch_conf(config)}
    if _wants_delta(config):
        wanted.update(_DELTA_CONF)
    wanted.update(spark_s3_conf(config.lake.root, config.lake.storage_options))
    # The driver's Java options came in whole from submit_launch_conf, with the archive after them.
    wanted.update({key: str(value) for key, value in settings.conf.items() if key != DRIVER_JAVA_OPTIONS})
    submitted = _submitted_conf() if under_spark_submit() else {}
    builder = SparkSession.builder
    for key, value in wanted.items():
        if key not in submitted:
            builder = builder.config(key, value)
    for key, value in _REQUIRED_CONF.items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("WARN")
    if config.lake.spark_backend == "delta-spark" and not delta_jars_loaded(spark):
        flags = " ".join(f"--conf {k}={v}" for k, v in submit_launch_conf(config).items())
        raise ConfigError(
            "lake.spark_backend is delta-spark but this Spark session cannot load Delta's classes. "
            + (f"Under spark-submit, pass {flags}" if under_spark_submit() and flags else
               f"Run scripts/setup.sh (it puts Delta's jars in spark.jars_dir={settings.jars_dir!r})")
            + ", or set lake.spark_backend: delta-rs."
        )
    return spark


def _submitted_conf() -> dict[str, str]:
    """The settings spark-submit gave the JVM (its --master, --conf and spark-defaults.conf)."""
    from pyspark import SparkConf, SparkContext

    SparkContext._ensure_initialized()  # joins spark-submit's JVM; launches nothing
    return dict(SparkConf().getAll())


def delta_jars_loaded(spark: SparkSession) -> bool:
    """Whether Delta Lake's JVM classes are on this session's classpath."""
    try:
        jvm = spark.sparkContext._jvm
        jvm.java.lang.Class.forName(_DELTA_CLASS, True, jvm.java.lang.Thread.currentThread().getContextClassLoader())
        return True
    except Exception:
        return False
