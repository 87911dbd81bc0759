"""Helpers for the fault-injection tests: table snapshots, and `seqrec` processes held before a commit.

A held process runs the real CLI in its own process group with the test-only hold of ``lake._faults``
switched on for one table: it stops once that table's rows are written and before the Delta commit that
would publish them, so a test can SIGKILL it there (a crash mid-write) or let another writer commit
first (a race with a known interleaving) and then release it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from lake import Config, Lake
from lake._faults import MARKER_ENV, PAUSE_ENV

SEQREC = Path(sys.executable).with_name("seqrec")
REPO = Path(__file__).resolve().parents[2]


def write_lines(path: Path, lines: list[str]) -> str:
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def sorted_rows(lake: Lake, name: str, *, drop: tuple[str, ...] = (), partitions: list[str] | None = None) -> list:
    """Every row of ``name`` as a dict, in a canonical order; rows of ``partitions`` only if given."""
    table = lake.read(name)
    rows = table.drop_columns(list(drop)).to_pylist()
    part_col = _partition_column(name)
    if partitions is not None and part_col:
        rows = [r for r in rows if r[part_col] in partitions]
    return sorted(rows, key=lambda r: json.dumps(r, sort_keys=True, default=str))


def _partition_column(name: str) -> str | None:
    from lake.schemas import spec

    return spec(name).partition_by


def snapshot(lake: Lake, names: list[str], **kwargs: Any) -> dict[str, tuple[int, list]]:
    """{table: (version, sorted rows)} for the tables that exist."""
    return {n: (lake.version(n), sorted_rows(lake, n, **kwargs)) for n in names if lake.exists(n)}


def contiguous_history(lake: Lake, name: str) -> list[int]:
    """The versions in the table's log, newest first; a test asserts they run N, N-1, ..., 0."""
    return [entry["version"] for entry in lake.history(name)]


def orphan_files(lake: Lake, name: str) -> set[str]:
    """Parquet files under the table folder that no version of its log ever referenced: written by a writer
    that never committed (files a later commit replaced stay on disk until VACUUM, and are not orphans)."""
    root = Path(lake.uri(name))
    on_disk = {str(p) for p in root.rglob("*.parquet") if "_delta_log" not in p.parts}
    committed = {u.removeprefix("file://") for version in range(lake.version(name) + 1)
                 for u in lake.file_uris(name, version=version)}
    return on_disk - committed


def write_config_file(config: Config, path: Path, *, driver_memory: str = "1g") -> Path:
    """The test's config as a YAML file for a `seqrec` subprocess (a smaller driver: two JVMs share the box)."""
    overrides = json.loads(json.dumps(config.overrides))
    overrides.setdefault("spark", {}).setdefault("conf", {})["spark.driver.memory"] = driver_memory
    path.write_text(yaml.safe_dump(overrides))
    return path


@dataclass
class HeldRun:
    """A `seqrec` process that will hold before committing one table (see lake._faults)."""

    process: subprocess.Popen
    marker: Path
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_until_held(self, timeout: float = 300) -> None:
        deadline = time.monotonic() + timeout
        while not self.marker.exists():
            if self.process.poll() is not None:
                raise AssertionError(f"exited ({self.process.returncode}) before the hold:\n{self.output()[-3000:]}")
            if time.monotonic() > deadline:
                self.kill()
                raise AssertionError(f"never reached the hold in {timeout}s:\n{self.output()[-3000:]}")
            time.sleep(0.1)

    def kill(self) -> None:
        """SIGKILL the whole process group: the driver, its JVM and Python workers, as a lost node would."""
        kill_group(self.process)

    def release(self, timeout: float = 300) -> int:
        """Let the held write commit and the process finish; its exit code."""
        self.marker.unlink()
        try:
            return self.process.wait(timeout=timeout)
        finally:
            self.kill()


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
        return True
    except ProcessLookupError:
        return False


def start_seqrec(args: list[str], *, config_file: Path, log: Path, env: dict[str, str] | None = None,
                 ) -> subprocess.Popen:
    """`seqrec <args>` in its own process group, with only ``config_file`` (no SEQREC* variables of ours)."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith("SEQREC")}
    environment.update({"SEQREC_CONFIG": str(config_file), "PYSPARK_PYTHON": sys.executable, **(env or {})})
    with log.open("wb") as out:
        return subprocess.Popen([str(SEQREC), *args], cwd=REPO, env=environment, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)


def kill_group(process: subprocess.Popen) -> None:
    """SIGKILL the process and everything it started in its group (a JVM, workers), and wait for them."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=60)
    deadline = time.monotonic() + 30
    while _group_alive(process.pid) and time.monotonic() < deadline:
        time.sleep(0.1)


def start_held(args: list[str], *, table: str, config_file: Path, workdir: Path) -> HeldRun:
    """Start `seqrec <args>` holding before its commit to ``table``."""
    marker = workdir / f"held-{table}-{time.monotonic_ns()}"
    log = marker.with_suffix(".log")
    process = start_seqrec(args, config_file=config_file, log=log, env={PAUSE_ENV: table, MARKER_ENV: str(marker)})
    return HeldRun(process, marker, log)


class HeldThread:
    """Runs ``write`` in a thread that holds before its commit until ``release``."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, table: str, write) -> None:
        self.marker = tmp_path / f"held-{table}"
        monkeypatch.setenv(PAUSE_ENV, table)
        monkeypatch.setenv(MARKER_ENV, str(self.marker))
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, args=(write,), daemon=True)
        self.thread.start()
        self._wait_for_marker()

    def _run(self, write) -> None:
        try:
            write()
        except BaseException as exc:
            self.error = exc

    def _wait_for_marker(self) -> None:
        self.thread.join(timeout=0.05)
        for _ in range(1200):
            if self.marker.exists() or not self.thread.is_alive():
                break
            self.thread.join(timeout=0.05)
        assert self.marker.exists(), f"the write never reached its hold ({self.error!r})"

    def release(self) -> BaseException | None:
        self.marker.unlink()
        self.thread.join(timeout=120)
        assert not self.thread.is_alive()
        return self.error
