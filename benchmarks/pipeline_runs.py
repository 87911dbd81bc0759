"""What the real-data benchmarks share: running `seqrec` commands, merging configs, reading results back."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
SEQREC = [str(Path(sys.executable).with_name("seqrec"))]


def run(command: list[str], log: Path) -> tuple[str, float]:
    """Run one pipeline command, its output teed to ``log``; returns (stdout, seconds)."""
    started = time.monotonic()
    print(f"$ {shlex.join(command)}", flush=True)
    with log.open("w") as sink:
        result = subprocess.run(command, cwd=REPO, stdout=subprocess.PIPE, stderr=sink, text=True,
                                env={**os.environ, "PYTHONPATH": str(REPO)})
        sink.write(result.stdout)
    seconds = time.monotonic() - started
    if result.returncode != 0:
        raise SystemExit(f"command failed ({result.returncode}) after {seconds:.0f}s; see {log}")
    return result.stdout, seconds


def last_value(stdout: str, key: str) -> str:
    """``key`` from the command's output: its last line is JSON (train, gate), else a ``key=value`` token."""
    lines = stdout.strip().splitlines()
    try:
        return str(json.loads(lines[-1])[key])
    except (IndexError, ValueError, KeyError, TypeError):
        pass
    for line in reversed(lines):
        for token in line.split():
            if token.startswith(f"{key}="):
                return token.split("=", 1)[1]
    raise SystemExit(f"no {key}=... line in the command's output")


def merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """``base`` with ``override`` laid over it, nested sections merged key by key."""
    out = dict(base)
    for key, value in override.items():
        out[key] = merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def work_config(work: Path) -> dict[str, Any]:
    """A lake, MLflow store and reports folder of their own under ``work``; Spark on this machine's 2 cores."""
    work = work.resolve()
    return {
        "lake": {"root": str(work / "lake"), "mlflow_tracking_uri": f"sqlite:///{work / 'mlflow.db'}",
                 "mlflow_artifact_root": str(work / "mlflow-artifacts"), "reports_dir": str(work / "reports")},
        "spark": {"master": "local[2]"},
    }


def card_meta(config_file: Path, version: str) -> dict[str, Any]:
    """The registered model card's metadata (epochs trained, best epoch, training config...)."""
    from lake import load_config
    from lake.registry import find

    card = find(load_config(config_file, environ={}), version=version)
    return dict(card.meta) if card else {}


def test_metrics(config_file: Path, version: str, target: str) -> dict[str, dict[str, dict[str, float]]]:
    """``{ranker: {protocol: {"hr@10": ..., "users": ..., "repeat_share": ...}}}`` of ``target`` targets
    (interaction, purchase) from the model_metrics rows `seqrec evaluate` wrote for the test split: the model
    and each baseline on the same rows."""
    from lake import Lake, load_config

    lake = Lake.from_config(load_config(config_file, environ={}))
    out: dict[str, dict[str, dict[str, float]]] = {}
    users: dict[tuple[str, str, str], int] = {}
    for row in lake.read("model_metrics", partition=version).to_pylist():
        if row["split"] != "test" or row["target"] != target:
            continue
        users[(row["ranker"], row["protocol"], row["segment"])] = row["users"]
        if row["segment"] == "all":
            key = row["metric"] if row["k"] == 0 else f"{row['metric']}@{row['k']}"
            out.setdefault(row["ranker"], {}).setdefault(row["protocol"], {})[key] = row["value"]
    for ranker, protocols in out.items():
        for protocol, metrics in protocols.items():
            metrics["users"] = users[(ranker, protocol, "all")]
            metrics["repeat_share"] = users.get((ranker, protocol, "repeat"), 0) / max(metrics["users"], 1)
    return out
