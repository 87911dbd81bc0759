"""The drivers' JVM class archive: which options map it, and that a driver really loads Spark from it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from lake import load_config
from lake.class_archive import archive_path, java_options
from lake.spark import submit_launch_conf

JAVA_OPTIONS = "spark.driver.extraJavaOptions"


def _config(tmp_path: Path, archive: str, java: str | None = None):
    spark = {"jars_dir": str(tmp_path / "jars"), "class_archive": archive}
    if java is not None:
        spark["conf"] = {JAVA_OPTIONS: java}
    return load_config(environ={}).with_overrides({"spark": spark})


def test_the_archive_is_mapped_only_once_it_exists(tmp_path: Path):
    archive = tmp_path / "driver-classes.jsa"
    config = _config(tmp_path, str(archive))
    assert java_options(config) == ""
    assert JAVA_OPTIONS not in submit_launch_conf(config)
    archive.write_bytes(b"")
    assert java_options(config) == f"-XX:SharedArchiveFile={archive}"
    assert submit_launch_conf(config)[JAVA_OPTIONS] == f"-XX:SharedArchiveFile={archive}"
    assert JAVA_OPTIONS not in submit_launch_conf(config, with_archive=False)


def test_the_users_java_options_are_kept_before_the_archive(tmp_path: Path):
    archive = tmp_path / "driver-classes.jsa"
    archive.write_bytes(b"")
    config = _config(tmp_path, str(archive), java="-Dfile.encoding=UTF-8")
    assert submit_launch_conf(config)[JAVA_OPTIONS] == f"-Dfile.encoding=UTF-8 -XX:SharedArchiveFile={archive}"
    assert submit_launch_conf(config, with_archive=False)[JAVA_OPTIONS] == "-Dfile.encoding=UTF-8"


def test_the_default_archive_lives_in_the_job_environment():
    assert archive_path(load_config(environ={})) == Path(sys.prefix) / "share" / "seqrec" / "driver-classes.jsa"


def test_an_empty_setting_turns_the_archive_off(tmp_path: Path):
    config = _config(tmp_path, "")
    assert archive_path(config) is None
    assert java_options(config) == ""


_DRIVER = """
from lake import load_config
from lake.spark import get_spark
print("ROWS", get_spark(load_config()).range(100).count())
"""


def _start_driver(tmp_path: Path, config_overrides: str, log: Path) -> subprocess.CompletedProcess:
    """A fresh driver JVM through get_spark (as `seqrec <stage>` starts one), logging where classes came from."""
    config_file = tmp_path / "seqrec.yaml"
    config_file.write_text(config_overrides + f"  conf:\n    {JAVA_OPTIONS}: -Xlog:class+load=info:file={log}\n")
    env = {**os.environ, "SEQREC_CONFIG": str(config_file)}
    return subprocess.run([sys.executable, "-c", _DRIVER], env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_a_driver_loads_spark_from_the_archive_setup_built(tmp_path: Path):
    archive = archive_path(load_config(environ={}))
    assert archive is not None and archive.is_file(), "scripts/setup.sh builds it: python -m lake.class_archive_build"
    log = tmp_path / "classes.log"
    started = _start_driver(tmp_path, "spark:\n", log)
    assert "ROWS 100" in started.stdout, started.stderr[-2000:]
    shared = [line for line in log.read_text().splitlines() if "source: shared objects file (top)" in line]
    assert any(" org.apache.spark.SparkContext " in line for line in shared), "Spark came from the archive"
    assert len(shared) > 2000

    # Other jars make the archive stale: the JVM says so once and starts without it, the job still runs.
    stale_log = tmp_path / "stale-classes.log"
    started = _start_driver(tmp_path, f"spark:\n  jars_dir: {tmp_path / 'no-jars'}\n", stale_log)
    assert "ROWS 100" in started.stdout, started.stderr[-2000:]
    assert "Unable to use shared archive" in started.stdout + started.stderr
    assert "shared objects file (top)" not in stale_log.read_text()


def test_a_failed_build_keeps_the_archive_there_was(tmp_path: Path, monkeypatch):
    from lake import class_archive_build

    archive = tmp_path / "driver-classes.jsa"
    archive.write_bytes(b"the previous archive")
    seen = {}

    def failing_workload(command, **kwargs):
        seen["command"] = command
        dump = next(part for part in command if "ArchiveClassesAtExit=" in part)
        Path(dump.split("ArchiveClassesAtExit=")[1].split()[0]).write_bytes(b"half an archive")
        return subprocess.CompletedProcess(command, 1, stdout="", stderr="Py4JError: the workload broke")

    monkeypatch.setattr(class_archive_build.subprocess, "run", failing_workload)
    with pytest.raises(RuntimeError, match="the workload broke"):
        class_archive_build.build(_config(tmp_path, str(archive)))
    assert seen["command"][-1] == "--workload"
    assert archive.read_bytes() == b"the previous archive"
    assert sorted(path.name for path in tmp_path.iterdir()) == ["driver-classes.jsa"]
