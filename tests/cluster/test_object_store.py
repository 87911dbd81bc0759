"""The lake on an S3-compatible object store (moto's server on loopback): the nightly job from ingest to
publish through each Spark backend (reads through s3a with hadoop-aws), model artifacts in the same store,
and concurrent commits that never lose a write (delta-rs with conditional put)."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
import threading
from pathlib import Path

import pyarrow as pa
import pytest

from lake import ConcurrentWriteError, Config, Lake
from lake._faults import PAUSE_ENV
from tests.cluster.conftest import REPO, S3Server
from tests.conftest import TAOBAO_SAMPLE, _config_for
from tests.reliability.harness import HeldThread, contiguous_history, sorted_rows, write_config_file
from tests.training.conftest import tiny_config

pytestmark = [pytest.mark.cluster, pytest.mark.slow]
DS = "2017-11-29"
NOW = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
COMPARED = ["events", "user_sequences", "train_examples", "item_vocab", "recommendations_latest"]


def s3_config(s3: S3Server, tmp_path: Path, prefix: str, spark_backend: str = "delta-rs") -> Config:
    """The lake and MLflow's artifacts under s3://bucket/prefix/; the MLflow database, checkpoints and the
    local model store stay on this machine."""
    base = f"s3://{s3.bucket}/{prefix}"
    return tiny_config(_config_for(tmp_path, spark_backend), epochs=2).with_overrides({
        "lake": {"root": f"{base}/lake", "storage_options": s3.storage_options(),
                 "mlflow_artifact_root": f"{base}/mlflow-artifacts"},
        "train": {"checkpoint_dir": str(tmp_path / "checkpoints"), "model_store": str(tmp_path / "models")},
        "featurize": {"kcore_item_min_events": 2},
        "serve": {"top_n": 5}, "score": {"partitions": 2},
    })


def run_nightly(config: Config, tmp_path: Path) -> subprocess.Popen:
    """Ingest, featurize, train + gate, score and publish DS in one local[2] Spark session (tests.cluster.stages)."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    config_file = write_config_file(config, tmp_path / "nightly.yaml")
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("SEQREC")}, "SEQREC_CONFIG": str(config_file)}
    log = (tmp_path / "nightly.log").open("wb")
    return subprocess.Popen([sys.executable, "-m", "tests.cluster.stages", "--ds", DS, "--source",
                             str(TAOBAO_SAMPLE), "--stages", "ingest,featurize,train,score,publish"],
                            cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)


def test_the_nightly_job_runs_on_the_object_store_through_both_backends(s3_server: S3Server, tmp_path: Path):
    configs = {backend: s3_config(s3_server, tmp_path / backend, backend, backend)
               for backend in ("delta-rs", "delta-spark")}
    # the two runs are independent: one machine, two Spark sessions side by side
    runs = {backend: run_nightly(config, tmp_path / backend) for backend, config in configs.items()}
    for backend, run in runs.items():
        assert run.wait(timeout=900) == 0, (tmp_path / backend / "nightly.log").read_text()[-4000:]

    lakes = {backend: Lake.from_config(config) for backend, config in configs.items()}
    for backend, lake in lakes.items():
        keys = s3_server.keys(f"{backend}/")
        assert any(key.startswith(f"{backend}/lake/recommendations/_delta_log/") for key in keys)
        assert any(key.startswith(f"{backend}/mlflow-artifacts/") and key.endswith("/scorer.pt2") for key in keys)
        assert lake.partitions("recommendations") == [DS]
    for name in COMPARED:
        drop = ("source_file",) if name == "events" else ()
        # Each backend trains its own model. Training reads train_examples' files in name order and the
        # names are random per write, so the two models see the rows in different orders: their lists are
        # compared for who gets what kind of list, not for the items (tests/cluster/test_standalone.py
        # compares recommendations exactly, with one model).
        if name.startswith("recommendations"):
            drop = ("generated_at", "item_id", "score")
        rows = sorted_rows(lakes["delta-rs"], name, drop=drop)
        assert rows, name
        assert rows == sorted_rows(lakes["delta-spark"], name, drop=drop), name


def stats(ds: str, source: str) -> pa.Table:
    return pa.table({"source_file": [source], "rows_in": [1], "accepted": [1], "other_day": [0], "quarantined": [0],
                     "ingested_at": pa.array([NOW], pa.timestamp("us", tz="UTC")), "ds": [ds]})


def test_a_commit_racing_another_on_s3_fails_retryably_or_lands_after_it(
    s3_server: S3Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    lake = Lake.from_config(s3_config(s3_server, tmp_path, "race"))
    lake.write("ingest_stats", stats("2017-11-25", "first"), partition="2017-11-25")

    # the same partition: the writer that read the older snapshot must not commit over the other
    held = HeldThread(monkeypatch, tmp_path, "ingest_stats",
                      lambda: lake.write("ingest_stats", stats("2017-11-26", "a"), partition="2017-11-26"))
    lake.write("ingest_stats", stats("2017-11-26", "b"), partition="2017-11-26")
    error = held.release()
    assert isinstance(error, ConcurrentWriteError)
    # another partition: both commits land, one after the other
    (tmp_path / "second").mkdir()
    held = HeldThread(monkeypatch, tmp_path / "second", "ingest_stats",
                      lambda: lake.write("ingest_stats", stats("2017-11-27", "c"), partition="2017-11-27"))
    lake.write("ingest_stats", stats("2017-11-28", "d"), partition="2017-11-28")
    assert held.release() is None
    monkeypatch.delenv(PAUSE_ENV)

    assert [(r["ds"], r["source_file"]) for r in sorted_rows(lake, "ingest_stats")] == [
        ("2017-11-25", "first"), ("2017-11-26", "b"), ("2017-11-27", "c"), ("2017-11-28", "d")]
    history = contiguous_history(lake, "ingest_stats")
    assert history == list(range(history[0], -1, -1))


def test_writers_appending_at_once_on_s3_lose_nothing(s3_server: S3Server, tmp_path: Path):
    config = s3_config(s3_server, tmp_path, "appends")
    start = threading.Barrier(4)
    landed: list[int] = []
    refused: list[BaseException] = []

    def append(item: int) -> None:
        writer = Lake.from_config(config)
        start.wait()
        try:
            writer.write("deny_list", pa.table({"item_id": [item], "reason": ["x"]}), mode="append")
            landed.append(item)
        except ConcurrentWriteError as exc:
            refused.append(exc)

    threads = [threading.Thread(target=append, args=(item,)) for item in range(1, 5)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    lake = Lake.from_config(config)
    assert len(landed) + len(refused) == 4 and landed
    assert sorted(lake.read("deny_list").column("item_id").to_pylist()) == sorted(landed)
    history = contiguous_history(lake, "deny_list")
    assert history == list(range(history[0], -1, -1))
