"""Fixtures for the fault-injection tests: held `seqrec` processes that are always cleaned up. The small real
pipeline they copy lives in tests/pipeline.py."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from lake import Config
from tests.reliability.harness import HeldRun, start_held, write_config_file


@pytest.fixture
def held_runs(tmp_path: Path) -> Iterator[Callable[..., HeldRun]]:
    """``start(args, table=..., config=...)`` runs `seqrec args` held before its commit to ``table``."""
    runs: list[HeldRun] = []

    def start(args: list[str], *, table: str, config: Config) -> HeldRun:
        config_file = write_config_file(config, tmp_path / f"held-config-{len(runs)}.yaml")
        run = start_held(args, table=table, config_file=config_file, workdir=tmp_path)
        runs.append(run)
        return run

    yield start
    for run in runs:
        run.kill()

