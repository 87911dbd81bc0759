"""`seqrec score`: the CLI runs the stage with --model/--top-n flags and turns refusals into one line."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from jobs.cli import app
from lake import Lake, load_config
from tests.scoring.conftest import DS, register_model, write_world

pytestmark = [pytest.mark.spark, pytest.mark.slow]


def cli_config(tmp_path: Path) -> Path:
    """A --config file with the lake and registry under tmp_path, the tiny model registered as champion."""
    settings = {
        "lake": {"root": str(tmp_path / "lake"), "mlflow_tracking_uri": f"sqlite:///{tmp_path / 'mlflow.db'}",
                 "mlflow_artifact_root": str(tmp_path / "artifacts"), "reports_dir": str(tmp_path / "reports")},
        "spark": {"master": "local[1]", "conf": {"spark.sql.shuffle.partitions": "2"}},
        "serve": {"top_n": 3}, "score": {"partitions": 2},
    }
    path = tmp_path / "seqrec.yaml"
    path.write_text(yaml.safe_dump(settings))
    config = load_config(path, environ={})
    register_model(config, tmp_path / "model")
    write_world(Lake.from_config(config))
    return path


def test_score_command_writes_the_partition_and_refuses_unknown_models(tmp_path: Path, spark):
    config = cli_config(tmp_path)
    runner = CliRunner()

    done = runner.invoke(app, ["score", "--ds", DS, "--top-n", "2", "--config", str(config)])
    assert done.exit_code == 0, done.output
    assert "4 users, 8 rows" in done.output, "--top-n 2 overrides serve.top_n: 3 from the file"

    refused = runner.invoke(app, ["score", "--ds", DS, "--model", "99", "--config", str(config)])
    assert refused.exit_code == 2
    assert "ModelNotFoundError" in refused.output and "version 99" in refused.output
    lake = Lake.from_config(load_config(config, environ={}))
    assert lake.read("recommendations").num_rows == 8, "the refused run wrote nothing"
