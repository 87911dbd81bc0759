"""What the real-data benchmarks share: running `seqrec` commands, merging configs, reading results back."""

from __future__ import annotations

import json
import os
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml

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


def train_and_evaluate(
    config_file: Path, ds: str, name: str, seed: int, overrides: dict[str, Any], logs: Path, target: str,
) -> dict[str, Any]:
    """Train one variant (``overrides`` laid over ``config_file``, ``train.seed`` = ``seed``), evaluate it, and
    return what a results file keeps of the run: version, training seconds, epochs, the train section and the
    ``target`` targets' test metrics of the model and of every baseline the evaluation ranked."""
    config = merge(yaml.safe_load(config_file.read_text()) or {}, overrides)
    config["train"] = {**(config.get("train") or {}), "seed": seed}
    variant_file = config_file.with_name(f"{name}-seed{seed}.yaml")
    variant_file.write_text(yaml.safe_dump(config, sort_keys=False))
    stdout, seconds = run([*SEQREC, "train", "--ds", ds, "--config", str(variant_file)],
                          logs / f"train-{name}-seed{seed}.log")
    version = last_value(stdout, "model_version")
    run([*SEQREC, "evaluate", "--model", version, "--config", str(variant_file)],
        logs / f"evaluate-{name}-seed{seed}.log")
    meta = card_meta(variant_file, version)
    return {"variant": name, "seed": seed, "version": version, "train_seconds": round(seconds, 1),
            "epochs_trained": meta.get("epochs_trained"), "best_epoch": meta.get("best_epoch"),
            "train": config["train"], "metrics": test_metrics(variant_file, version, target)}


def mean_and_sd(runs: list[dict[str, Any]], protocols: tuple[str, ...], metrics: tuple[str, ...]) -> dict[str, Any]:
    """``{"<protocol> <metric>": mean, "<protocol> <metric> sd": sample standard deviation or None}`` of the
    model's test metrics over ``runs`` (one per seed), and their mean training seconds."""
    row: dict[str, Any] = {"seeds": len(runs),
                           "train_seconds": round(statistics.mean(r["train_seconds"] for r in runs), 1)}
    for protocol in protocols:
        for metric in metrics:
            values = [r["metrics"]["model"][protocol][metric] for r in runs]
            row[f"{protocol} {metric}"] = round(statistics.mean(values), 4)
            row[f"{protocol} {metric} sd"] = round(statistics.stdev(values), 4) if len(values) > 1 else None
    return row


def markdown_table(rows: list[dict[str, Any]], columns: list[str], label: str = "model") -> str:
    """Rows as a Markdown table: ``label``, seeds, each column as "mean ± sd", training seconds."""
    lines = [f"| {label} | seeds | " + " | ".join(columns) + " | train s |",
             "|---|---|" + "---|" * len(columns) + "---|"]
    for row in rows:
        cells = []
        for column in columns:
            sd = row.get(f"{column} sd")
            cells.append(f"{row[column]:.4f}" + (f" ± {sd:.4f}" if sd is not None else ""))
        lines.append(f"| {row[label]} | {row['seeds']} | " + " | ".join(cells) + f" | {row.get('train_seconds', '')} |")
    return "\n".join(lines)
