"""`seqrec train`: flags, the JSON line Airflow reads, clear failures, idempotent retries, resuming a killed
run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from jobs.cli import app
from lake import Config, Lake, registry
from tests.training.conftest import DS, tiny_config, write_tiny_lake
from tests.training.test_worker import metric_history

REPO = Path(__file__).resolve().parents[2]


def config_file(config: Config, tmp_path: Path, **train: object) -> Path:
    path = tmp_path / "train.yaml"
    path.write_text(yaml.safe_dump(dict(tiny_config(config, **train).overrides)))
    return path


def seqrec_train(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "jobs.train", "--ds", DS, *args], cwd=REPO, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={**os.environ})


def test_help_lists_the_training_flags() -> None:
    result = CliRunner().invoke(app, ["train", "--help"])
    assert result.exit_code == 0
    for flag in ("--np", "--hosts", "--launcher", "--resume", "--model-type", "--epochs", "--loss"):
        assert flag in result.output


def test_missing_examples_fail_with_exit_code_2_and_a_next_step(config: Config, tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["train", "--ds", DS, "--config", str(config_file(config, tmp_path))])
    assert result.exit_code == 2
    output = " ".join(result.output.split())  # rich wraps long lines
    assert "train failed (TableNotFoundError)" in output and "run the stage that writes it first" in output


@pytest.mark.slow
def test_the_last_line_names_the_registered_version(config: Config, lake: Lake, tmp_path: Path) -> None:
    write_tiny_lake(lake)
    finished = subprocess.run(
        [sys.executable, "-m", "jobs.train", "--ds", DS, "--config", str(config_file(config, tmp_path)),
         "--model-type", "gru", "--epochs", "1"], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert finished.returncode == 0, finished.stderr[-3000:]
    last = json.loads(finished.stdout.strip().splitlines()[-1])
    assert last == {"model_version": last["model_version"], "trained_ds": DS, "run_key": None}
    card = registry.find(config, version=last["model_version"], alias=None)
    assert card is not None and card.meta["model_type"] == "gru"


def test_a_retry_after_the_mirror_write_failed_registers_nothing_new(config: Config, lake: Lake,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    from jobs.train import run

    write_tiny_lake(lake)
    tiny = tiny_config(config, num_proc=1, epochs=1, model_type="gru")
    calls = []

    def fail_once(*args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            raise OSError("the models table's storage went away")
        return real(*args, **kwargs)

    real = registry.mirror_to_table
    monkeypatch.setattr(registry, "mirror_to_table", fail_once)
    with pytest.raises(OSError, match="went away"):
        run(tiny, DS, run_key="seqrec_nightly/scheduled__2017-11-26")
    assert [c.version for c in registry.list_versions(tiny)] == ["1"]  # registered, then the mirror failed

    retried = run(tiny, DS, run_key="seqrec_nightly/scheduled__2017-11-26")
    assert retried.version == "1" and [c.version for c in registry.list_versions(tiny)] == ["1"]
    assert [m["model_version"] for m in lake.read("models").to_pylist()] == ["1"]
    assert run(tiny, DS, run_key="another run").version == "2"  # another key trains anew


@pytest.mark.slow
def test_a_run_killed_after_an_epoch_resumes_and_finishes(config: Config, lake: Lake, tmp_path: Path) -> None:
    write_tiny_lake(lake)
    settings = config_file(config, tmp_path, patience=1000)
    manifest = Path(config.lake.root) / "_checkpoints" / DS / "sasrec" / "latest.json"
    running = seqrec_train("--config", str(settings), "--epochs", "500")
    deadline = time.monotonic() + 240
    while not manifest.exists() and running.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    running.send_signal(signal.SIGKILL)
    running.communicate()
    assert manifest.exists(), "the first run wrote no checkpoint"
    killed_after = json.loads(manifest.read_text())["epoch"]
    assert 1 <= killed_after < 500 and running.returncode == -signal.SIGKILL

    resumed = seqrec_train("--config", str(settings), "--epochs", str(killed_after + 2), "--resume")
    stdout, stderr = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, stderr[-3000:]
    assert f"resuming after epoch {killed_after}" in stderr
    version = json.loads(stdout.strip().splitlines()[-1])["model_version"]
    card = registry.find(config, version=version, alias=None)
    assert card is not None and card.meta["epochs_trained"] == killed_after + 2
    steps = [step for step, _ in metric_history(config, card.run_id, "train_loss")]
    assert steps == list(range(1, killed_after + 3))  # one MLflow run across the kill
