"""Launching workers: pinned versions, the horovodrun command, and real multi-process runs."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest
import yaml

from lake import Config, ConfigError, Lake, registry
from tests.training.conftest import DS, TinyData, tiny_config, write_tiny_lake
from tests.training.test_worker import metric_history
from training.launch import horovodrun_command, launch, plan, workers_with_data
from training.settings import TrainSettings
from training.worker import TrainRequest

REPO = Path(__file__).resolve().parents[2]


class ArgvWatcher(threading.Thread):
    """Polls every process's command line while the block runs; records the ones that contain ``needle``."""

    def __init__(self, needle: str) -> None:
        super().__init__(daemon=True)
        self.needle, self.leaks, self.done = needle, [], threading.Event()
        self.workers: set[int] = set()  # pids of training workers seen running

    def run(self) -> None:
        while not self.done.is_set():
            for process in psutil.process_iter(["pid", "cmdline"]):
                command = " ".join(process.info["cmdline"] or [])
                if "training.worker" in command:
                    self.workers.add(process.info["pid"])
                if self.needle in command:
                    self.leaks.append(command[:200])
            time.sleep(0.05)

    def __enter__(self) -> ArgvWatcher:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.done.set()
        self.join()


def test_plan_pins_the_current_table_versions(config: Config, lake: Lake, tiny_data: TinyData) -> None:
    request = plan(config, TrainSettings.from_config(config), DS, resume=False)
    assert request.versions == {"train_examples": lake.version("train_examples"),
                                "item_vocab": lake.version("item_vocab"),
                                "category_vocab": lake.version("category_vocab")}
    assert TrainRequest.decode(request.encode()) == request


def test_resume_refuses_a_checkpoint_of_another_architecture(config: Config, lake: Lake,
                                                             tiny_data: TinyData) -> None:
    launch(tiny_config(config, epochs=1), DS)
    with pytest.raises(ConfigError, match="rerun without --resume"):
        launch(tiny_config(config, epochs=2, hidden_size=32), DS, resume=True)


def test_workers_are_capped_so_that_none_gets_an_empty_shard(config: Config, lake: Lake) -> None:
    write_tiny_lake(lake, users=1)
    request = plan(config, TrainSettings.from_config(config), DS, resume=False)
    assert workers_with_data(config, request, 2) == 1
    write_tiny_lake(lake, users=48)
    request = plan(config, TrainSettings.from_config(config), DS, resume=False)
    assert workers_with_data(config, request, 2) == 2
    assert workers_with_data(config, request, 1) == 1


def test_horovodrun_command_runs_the_worker_module(config: Config) -> None:
    settings = TrainSettings.from_config(config.with_overrides({"train": {"num_proc": 4}}))
    request = TrainRequest(DS, "abc", {"train_examples": 1, "item_vocab": 0, "category_vocab": 0})
    command = horovodrun_command(settings, request, {"train": {"epochs": 2}})
    assert command[1:7] == ["-np", "4", "-H", "localhost:4", "--gloo", sys.executable]
    assert command[7:9] == ["-m", "training.worker"]
    hosts = TrainSettings.from_config(config.with_overrides({"train": {"num_proc": 8, "hosts": "a:4,b:4"}}))
    assert horovodrun_command(hosts, request, {})[4] == "a:4,b:4"
    remote = TrainSettings.from_config(config.with_overrides({"train": {
        "num_proc": 2, "hosts": "a:1,b:1", "ssh_port": 2222, "ssh_identity_file": "/k", "network_interfaces": "eth1"}}))
    assert horovodrun_command(remote, request, {})[5:12] == [
        "--gloo", "--ssh-port", "2222", "--ssh-identity-file", "/k", "--network-interfaces", "eth1"]


@pytest.mark.slow
@pytest.mark.horovod
def test_two_gloo_workers_learn_and_end_with_identical_weights(config: Config, lake: Lake, tiny_data: TinyData,
                                                               capfd: pytest.CaptureFixture[str],
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    secret = "sentinel-secret-4f1c9a"  # a credential in the launcher's environment must never reach an argv
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", secret)
    with ArgvWatcher(secret) as watcher:
        card = launch(tiny_config(config, num_proc=2, epochs=3, patience=10), DS)
    assert len(watcher.workers) >= 2 and watcher.leaks == []
    output = capfd.readouterr().err
    # both workers got the credentials (the test session's own PYSPARK_GATEWAY_SECRET travels the same way)
    assert len(re.findall(r"read \d+ credential variable\(s\) from the launcher's file", output)) == 2
    digests = dict(re.findall(r"worker (\d) of 2: final weights sha256 (\w+)", output))
    assert set(digests) == {"0", "1"} and digests["0"] == digests["1"]
    losses = [value for _, value in metric_history(config, card.run_id, "train_loss")]
    assert len(losses) == 3 and losses[-1] < losses[0]
    assert card.meta["world_size"] == 2 and card.meta["valid_hr@10"] > 0.5


@pytest.mark.slow
@pytest.mark.spark
@pytest.mark.horovod
def test_spark_launcher_runs_workers_in_spark_tasks(config: Config, lake: Lake, tiny_data: TinyData,
                                                    tmp_path: Path) -> None:
    # its own process: horovod.spark.run needs two task slots, the shared test session has one
    overrides = {**tiny_config(config, epochs=2).overrides}
    overrides["spark"] = {**overrides["spark"], "master": "local[2]"}
    config_file = tmp_path / "spark.yaml"
    config_file.write_text(yaml.safe_dump(overrides))
    env = {**os.environ, "PYSPARK_PYTHON": sys.executable}
    finished = subprocess.run(
        [sys.executable, "-m", "jobs.train", "--ds", DS, "--config", str(config_file), "--np", "2",
         "--launcher", "spark"], cwd=REPO, env=env, capture_output=True, text=True, timeout=600,
    )
    assert finished.returncode == 0, finished.stderr[-3000:]
    version = json.loads(finished.stdout.strip().splitlines()[-1])["model_version"]
    card = registry.find(config, version=version, alias=None)
    assert card is not None and card.meta["world_size"] == 2
