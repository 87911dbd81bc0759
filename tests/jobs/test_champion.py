"""`seqrec champion`: the JSON line the DAG's decide_training reads, now and for a past day."""

from __future__ import annotations

import json
from pathlib import Path

import yaml
from typer.testing import CliRunner

from jobs.cli import app
from lake import Config
from lake.registry import approve, promote
from tests.scoring.conftest import register_model


def _champion(config: Config, tmp_path: Path, *args: str) -> tuple[int, dict | None]:
    config_file = tmp_path / "seqrec.yaml"
    config_file.write_text(yaml.safe_dump(dict(config.overrides)))
    result = CliRunner().invoke(app, ["champion", "--config", str(config_file), *args])
    last = result.stdout.strip().splitlines()[-1] if result.stdout.strip() else ""
    return result.exit_code, json.loads(last) if last.startswith("{") else None


def test_no_champion_is_null_and_a_promoted_one_is_named_now_and_for_its_days(config: Config, tmp_path: Path):
    assert _champion(config, tmp_path) == (0, {"champion": None, "trained_ds": None, "ds": None})
    first = register_model(config, tmp_path / "m1", champion=False)
    second = register_model(config, tmp_path / "m2", champion=False)
    for version, ds in ((first, "2017-12-01"), (second, "2017-12-03")):
        approve(config, version, ds)
        promote(config, version, since_ds=ds)  # what publish does for an approved model

    assert _champion(config, tmp_path)[1]["champion"] == second
    assert _champion(config, tmp_path, "--ds", "2017-12-02")[1] == {
        "champion": first, "trained_ds": "2017-12-02", "ds": "2017-12-02"}
    assert _champion(config, tmp_path, "--ds", "2017-11-30")[1]["champion"] is None


def test_help_and_a_bad_date() -> None:
    assert "champion" in CliRunner().invoke(app, ["champion", "--help"]).output
    assert CliRunner().invoke(app, ["champion", "--ds", "yesterday"]).exit_code == 2
