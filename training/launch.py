"""Start the training workers and return the model version they registered.

- one worker on this machine: in this process (Horovod with a world of one);
- several: ``horovodrun -np N -H hosts --gloo python -m training.worker ...`` (hosts default to
  localhost:N; rank 0 runs on the first host, which must be this one for --resume to find the checkpoint);
- ``launcher: spark``: ``horovod.spark.run``, one worker per Spark task, on the configured Spark master.

The launcher pins the table versions once (or takes them from the checkpoint when resuming), so every
worker reads the same snapshot even if featurize commits meanwhile.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import subprocess
import sys
import tempfile
import uuid
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.compute as pc

from lake import Config, ConfigError, Lake, SeqrecError, registry
from lake.registry import ModelCard
from lake.storage import split_secrets
from training.checkpoint import Checkpoints
from training.data import user_shard
from training.settings import TrainSettings
from training.worker import PINNED_TABLES, SECRETS_FILE_ENV, TrainRequest, checkpoint_folder, train

__all__ = ["horovodrun_command", "launch", "plan"]

log = logging.getLogger(__name__)


def launch(config: Config, ds: str, *, resume: bool = False, run_key: str | None = None) -> ModelCard:
    """Train for ``ds`` with the workers ``train.num_proc`` / ``hosts`` / ``launcher`` ask for.

    Args:
        config: user configuration (the `train:` section is read from it).
        ds: the logical date whose train_examples partition to train on.
        resume: continue from the last checkpoint of this ds and model type, if there is one.
        run_key: the scheduler's id of this training task's run (e.g. Airflow's dag run id); when a version
            was already registered under it (a retry after a later failure), that version is returned and
            nothing is trained again.
    """
    if run_key:
        done = registry.find_by_run_key(config, run_key)
        if done is not None:
            log.info("model version %s was already registered for run %s: not training again", done.version,
                     run_key)
            registry.mirror_to_table(config, Lake.from_config(config))
            return done
    settings = TrainSettings.from_config(config)
    request = replace(plan(config, settings, ds, resume=resume), run_key=run_key)
    settings = replace(settings, num_proc=workers_with_data(config, request, settings.num_proc))
    if settings.launcher == "spark":
        return _on_spark(config, settings, request)
    if settings.num_proc == 1 and not settings.hosts:
        card = train(config, request)
        assert card is not None  # a world of one is rank 0
        return card
    return _with_horovodrun(config, settings, request)


def plan(config: Config, settings: TrainSettings, ds: str, *, resume: bool) -> TrainRequest:
    """The request every worker gets: pinned table versions, from the checkpoint when resuming one."""
    launch_id = uuid.uuid4().hex
    if resume:
        manifest = Checkpoints(checkpoint_folder(config, settings, ds)).latest()
        if manifest is not None:
            if manifest.get("architecture") != settings.architecture():
                raise ConfigError(
                    f"the checkpoint for ds={ds} was written with {manifest.get('architecture')} but the settings "
                    f"now say {settings.architecture()}; resume with the same settings or rerun without --resume"
                )
            return TrainRequest(ds, launch_id, manifest["versions"], resume=True)
    lake = Lake.from_config(config)
    versions = {table: lake.version(table) for table in PINNED_TABLES if table != "category_vocab"}
    versions["category_vocab"] = lake.version("category_vocab") if lake.exists("category_vocab") else None
    return TrainRequest(ds, launch_id, versions, resume=resume)


def workers_with_data(config: Config, request: TrainRequest, wanted: int) -> int:
    """The most workers, up to ``wanted``, that each get training rows when users are sharded by hash.

    A small day (the first days of a new shop, the shipped sample) can hold fewer training users than
    workers, or an unlucky split of them; a worker with an empty shard would fail the whole run.
    """
    if wanted <= 1:
        return wanted
    lake = Lake.from_config(config)
    examples = lake.read("train_examples", version=request.versions["train_examples"], partition=request.ds,
                         columns=["user_id", "split"])
    users = examples.filter(pc.equal(examples.column("split"), "train")).column("user_id").to_numpy()
    for workers in range(wanted, 1, -1):
        if len(np.unique(user_shard(users, workers))) == workers:
            break
    else:
        workers = 1
    if workers < wanted:
        log.warning("train_examples ds=%s has %d training users: %d of the %d workers asked for would get none, "
                    "so training runs %d worker(s)", request.ds, len(users), wanted - workers, wanted, workers)
    return workers


def horovodrun_command(settings: TrainSettings, request: TrainRequest, overrides: dict[str, Any]) -> list[str]:
    """The horovodrun command line that starts ``settings.num_proc`` workers."""
    horovodrun = Path(sys.executable).with_name("horovodrun")
    hosts = settings.hosts or f"localhost:{settings.num_proc}"
    encoded = base64.urlsafe_b64encode(json.dumps(overrides).encode()).decode()
    remote = [*(["--ssh-port", str(settings.ssh_port)] if settings.ssh_port else []),
              *(["--ssh-identity-file", settings.ssh_identity_file] if settings.ssh_identity_file else []),
              *(["--network-interfaces", settings.network_interfaces] if settings.network_interfaces else [])]
    return [
        str(horovodrun) if horovodrun.exists() else "horovodrun",
        "-np", str(settings.num_proc), "-H", hosts, "--gloo", *remote,
        sys.executable, "-m", "training.worker", "--request", request.encode(), "--overrides", encoded,
    ]


def _with_horovodrun(config: Config, settings: TrainSettings, request: TrainRequest) -> ModelCard:
    command = horovodrun_command(settings, request, dict(config.overrides))
    log.info("starting %d workers on %s", settings.num_proc, settings.hosts or "this machine")
    # horovodrun's gloo launcher starts every worker as `env K=V ... python ...`, the whole environment on
    # the command line, where `ps` shows it: credentials go to the workers in a private file instead.
    environ, secrets = split_secrets(os.environ)
    with tempfile.TemporaryDirectory(prefix="seqrec-secrets-") as private:  # mode 0700
        if secrets:
            path = Path(private) / "environ.json"
            path.touch(mode=0o600)
            path.write_text(json.dumps(secrets))
            environ[SECRETS_FILE_ENV] = str(path)
        # workers log to our stderr: stdout stays for the final JSON line
        finished = subprocess.run(command, stdout=sys.stderr, stderr=sys.stderr, env=environ, check=False)
    if finished.returncode != 0:
        raise SeqrecError(
            f"training workers failed (horovodrun exit code {finished.returncode}); the worker output above says why"
        )
    for card in reversed(registry.list_versions(config)):
        if card.meta.get("launch_id") == request.launch_id:
            return card
    raise SeqrecError(f"the workers finished but registered no model for launch {request.launch_id}")


def _on_spark(config: Config, settings: TrainSettings, request: TrainRequest) -> ModelCard:
    import horovod.spark

    from lake.spark import get_spark
    from training.worker import train_in_spark_task

    context = get_spark(config).sparkContext  # horovod.spark.run uses the active session's context
    if context.master.startswith("local") and context.defaultParallelism < settings.num_proc:
        # each worker holds a task slot for the whole run; horovod would wait start_timeout (10 min) for more
        raise ConfigError(
            f"Spark master {context.master} has {context.defaultParallelism} task slots but train.num_proc is "
            f"{settings.num_proc}; use local[{settings.num_proc}] or more (spark.master) or fewer workers (--np)"
        )
    versions = horovod.spark.run(train_in_spark_task, args=(dict(config.overrides), request.encode()),
                                 num_proc=settings.num_proc, stdout=sys.stderr, stderr=sys.stderr)
    card = registry.find(config, version=versions[0], alias=None)
    if card is None:
        raise SeqrecError(f"the Spark workers reported model version {versions[0]}, which is not registered")
    return card
