"""Build the drivers' JVM class archive (:mod:`lake.class_archive`): a small workload through the stages' code
paths in a fresh spark-submit whose JVM dumps the classes it loaded when it exits.

    .venv/bin/python -m lake.class_archive_build        # (re)build spark.class_archive for this config
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

from lake.class_archive import DRIVER_JAVA_OPTIONS, archive_path
from lake.config import Config, load_config
from lake.spark import submit_launch_conf

__all__ = ["build"]


def build(config: Config) -> Path:
    """Run the workload in a fresh spark-submit that dumps the classes it loaded; returns the archive.

    The new archive replaces the old one only once it is complete: a driver starting meanwhile maps the
    previous file or none.
    """
    path = archive_path(config)
    if path is None:
        raise ValueError("spark.class_archive is empty: set it to the file the archive should go to")
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
    confs = submit_launch_conf(config, with_archive=False)
    dump = f"-XX:ArchiveClassesAtExit={partial} -Xlog:cds=off"
    confs[DRIVER_JAVA_OPTIONS] = f"{confs.get(DRIVER_JAVA_OPTIONS, '')} {dump}".strip()
    spark_submit = Path(sys.executable).parent / "spark-submit"
    # Local mode: the archive is the driver's, and setup must not need a cluster to build it.
    command = [str(spark_submit), "--master", "local[2]",
               *[part for key, value in confs.items() for part in ("--conf", f"{key}={value}")],
               __file__, "--workload"]
    env = {**os.environ, "PYSPARK_PYTHON": sys.executable, "PYSPARK_DRIVER_PYTHON": sys.executable}
    try:
        finished = subprocess.run(command, env=env, capture_output=True, text=True)
        if finished.returncode != 0 or not partial.is_file():
            raise RuntimeError(f"the class-archive workload failed (exit {finished.returncode}):\n"
                               f"{finished.stdout[-2000:]}{finished.stderr[-3000:]}")
        partial.replace(path)
    finally:
        partial.unlink(missing_ok=True)
    return path


def _workload(config: Config) -> None:
    """What the stages do, small: Delta commits and reads, a shuffle, a window, Arrow both ways."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    from lake.spark import delta_jars_loaded, get_spark
    from lake.tables import Lake

    # "auto" configures Delta's session extension whenever its jars are there, so both writers can run.
    spark = get_spark(config.with_overrides({"lake": {"spark_backend": "auto"}}))
    backends = ["delta-rs"] + (["delta-spark"] if delta_jars_loaded(spark) else [])
    with tempfile.TemporaryDirectory(prefix="seqrec-class-archive-") as root:
        for backend in backends:
            lake = Lake.from_config(config.with_overrides(
                {"lake": {"root": f"{root}/{backend}", "spark_backend": backend}}), spark=spark)
            vocab = spark.range(2, 40).select((F.col("id") + 100).alias("item_id"),
                                              F.col("id").cast("int").alias("item_index"),
                                              F.lit("2017-11-25").alias("first_seen_ds"))
            lake.write("item_vocab", vocab, mode="overwrite")
            rows = spark.range(0, 2000, numPartitions=2).select(
                (F.col("id") % 50).alias("user_id"), F.col("id").alias("item_id"),
                F.when(F.col("id") % 7 == 0, "purchase").otherwise("click").alias("behaviour"))
            ranked = rows.withColumn("position", F.row_number().over(
                Window.partitionBy("user_id").orderBy("item_id"))).groupBy("user_id").agg(
                F.collect_list("item_id").alias("items"), F.max("position").alias("length"))
            ranked.join(lake.read_spark("item_vocab"), F.col("length") == F.col("item_index"), "left").toArrow()
            rows.mapInArrow(lambda batches: (batch for batch in batches), rows.schema).count()
    spark.stop()


if __name__ == "__main__":
    if sys.argv[1:] == ["--workload"]:
        _workload(load_config())
    else:
        print(f"class archive written: {build(load_config())}")
