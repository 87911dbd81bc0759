"""`seqrec featurize`: runs the stage for --ds and turns an empty day into one clear line and exit code 2."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from jobs.cli import app
from lake import Lake, load_config
from tests.featurization.conftest import DAY1, DAY2, events_table

pytestmark = [pytest.mark.spark, pytest.mark.slow]


def cli_config(tmp_path: Path) -> Path:
    settings = {
        "lake": {"root": str(tmp_path / "lake")},
        "spark": {"master": "local[1]", "conf": {"spark.sql.shuffle.partitions": "2"}},
        "featurize": {"kcore_user_min_events": 1, "kcore_item_min_events": 1},
    }
    path = tmp_path / "seqrec.yaml"
    path.write_text(yaml.safe_dump(settings))
    return path


def test_featurize_command_reports_the_steps_and_refuses_an_empty_day(tmp_path: Path, spark):
    config = cli_config(tmp_path)
    lake = Lake.from_config(load_config(config, environ={}))
    lake.write("events", events_table([(1, 10, 7, "click", DAY1, 0), (1, 11, 7, "cart", DAY1, 60),
                                       (1, 12, 7, "click", DAY1, 120)]), partition=DAY1)
    runner = CliRunner()

    done = runner.invoke(app, ["featurize", "--ds", DAY1, "--config", str(config)])
    assert done.exit_code == 0, done.output
    assert "users 1;" in done.output and "test 1" in done.output
    assert lake.read("user_sequences", partition=DAY1).column("items").to_pylist() == [[2, 3, 4]]

    empty = runner.invoke(app, ["featurize", "--ds", DAY2, "--config", str(config)])
    assert empty.exit_code == 2
    assert "featurize failed" in empty.output and f"no events for ds={DAY2}" in empty.output
    assert lake.partitions("user_sequences") == [DAY1]
