"""`seqrec publish`: publishes a scored ds, refuses one that was not scored (exit code 2)."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from jobs.cli import app
from lake import Lake, load_config
from tests.jobs.test_score import cli_config
from tests.scoring.conftest import DS

pytestmark = [pytest.mark.spark, pytest.mark.slow]


def test_publish_command_publishes_only_a_scored_ds(tmp_path: Path, spark):
    config = cli_config(tmp_path)
    runner = CliRunner()

    refused = runner.invoke(app, ["publish", "--ds", DS, "--config", str(config)])
    assert refused.exit_code == 2 and "ValidationError" in refused.output

    assert runner.invoke(app, ["score", "--ds", DS, "--config", str(config)]).exit_code == 0
    done = runner.invoke(app, ["publish", "--ds", DS, "--config", str(config)])
    assert done.exit_code == 0, done.output
    assert f"now holds ds={DS} (12 rows" in done.output
    assert Lake.from_config(load_config(config, environ={})).read("recommendations_latest").num_rows == 12
