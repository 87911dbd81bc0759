"""A class-data-sharing archive of the classes a seqrec Spark driver loads, so every stage's JVM starts sooner.

Each nightly stage is its own spark-submit, so each pays the JVM's start: finding, parsing and verifying
the thousands of classes of Spark, Delta, Hadoop and Arrow it loads. The JDK can keep them parsed and
verified in a file it maps at start (AppCDS's dynamic archive, JEP 350). :mod:`lake.class_archive_build`
records one by running a small workload through the stages' own code paths (Delta writes and reads through
:class:`lake.Lake`, a shuffle, a window, Arrow to and from Python) under ``-XX:ArchiveClassesAtExit``;
:func:`java_options` then gives drivers ``-XX:SharedArchiveFile``. scripts/setup.sh builds it after fetching
the jars.

The archive is only ever a speed-up: classes it lacks load as before, and an archive the JVM cannot use
(other jars on the classpath, another JDK) is refused with one warning line and the JVM starts without it.
Executors on a cluster start their own JVMs with another classpath; the archive is for the driver (and
so for every ``local[N]`` run, whose executors live in the driver's JVM).

    .venv/bin/python -m lake.class_archive_build        # (re)build spark.class_archive for this config
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from lake.config import Config

__all__ = ["DRIVER_JAVA_OPTIONS", "archive_path", "java_options"]

# The Spark setting the archive's JVM option travels in, after the user's own options.
DRIVER_JAVA_OPTIONS = "spark.driver.extraJavaOptions"


def archive_path(config: Config) -> Path | None:
    """Where ``spark.class_archive`` keeps the archive; None when the setting is empty (archive off).

    ``{venv}`` stands for this interpreter's environment: the archive records the classpath, and Spark's own
    jars are in the environment's pyspark, so each job environment needs its own archive.
    """
    path = config.spark.class_archive
    return Path(os.path.expanduser(path.replace("{venv}", sys.prefix))) if path else None


def java_options(config: Config) -> str:
    """The driver's JVM option that maps the archive, or "" when there is none to map."""
    path = archive_path(config)
    return f"-XX:SharedArchiveFile={path}" if path is not None and path.is_file() else ""
