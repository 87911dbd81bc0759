"""Training cost on CPU: wall time, throughput and validation NDCG@10 of `seqrec train` variants.

Each variant is one real `seqrec train` process (Horovod in-process for --np 1, horovodrun for more) on the
train_examples of --ds in the lake that --config points at; throughput and metrics are read back from the
run's MLflow metrics. --prepare first ingests the shipped Taobao sample day by day and featurizes --ds.

    .venv/bin/python benchmarks/train_cpu.py --config /tmp/bench/cfg.yaml --ds 2017-12-03 --prepare
    .venv/bin/python benchmarks/train_cpu.py --config /tmp/bench/cfg.yaml --variants sasrec-np1,sasrec-np2
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SEQREC = str(Path(sys.executable).with_name("seqrec"))
SAMPLE = REPO.parent / "shared" / "data" / "taobao_user_behavior_sample.csv"
# variant name -> extra `seqrec train` flags (everything else: training/defaults.yaml + --config)
VARIANTS: dict[str, list[str]] = {
    "sasrec-np1": ["--np", "1"],
    "sasrec-np2": ["--np", "2"],
    "sasrec-1block": ["--num-layers", "1"],
    "gru": ["--model-type", "gru"],
    "popularity": ["--model-type", "popularity"],
}


def _run(command: list[str], env: dict[str, str]) -> tuple[str, float]:
    print(f"$ {shlex.join(command)}", flush=True)
    started = time.monotonic()
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True)
    seconds = time.monotonic() - started
    if done.returncode != 0:
        raise SystemExit(f"failed ({done.returncode}) after {seconds:.0f}s:\n{done.stderr[-4000:]}")
    return done.stdout, seconds


def _prepare(ds: str, days: int, env: dict[str, str]) -> None:
    last = dt.date.fromisoformat(ds)
    for back in range(days - 1, -1, -1):
        day = (last - dt.timedelta(days=back)).isoformat()
        _run([SEQREC, "ingest", "--ds", day, "--source", str(SAMPLE)], env)
    _run([SEQREC, "featurize", "--ds", ds], env)


def _epoch_metrics(run_id: str) -> dict[str, list[float]]:
    from mlflow import MlflowClient

    from lake import load_config, registry

    with registry.tracking(load_config()):
        client = MlflowClient()
        return {key: [m.value for m in sorted(client.get_metric_history(run_id, key), key=lambda m: m.step)]
                for key in ("sequences_per_second", "epoch_seconds", "valid_ndcg_at_10")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", type=Path, required=True, help="YAML with lake.root etc. ($SEQREC_CONFIG).")
    parser.add_argument("--ds", default="2017-12-03")
    parser.add_argument("--prepare", action="store_true", help="Ingest the Taobao sample and featurize --ds first.")
    parser.add_argument("--days", type=int, default=9, help="Days ingested by --prepare, ending at --ds.")
    parser.add_argument("--variants", default=",".join(VARIANTS), help=f"Subset of {list(VARIANTS)}.")
    args = parser.parse_args()
    env = {**os.environ, "SEQREC_CONFIG": str(args.config.resolve())}
    os.environ["SEQREC_CONFIG"] = env["SEQREC_CONFIG"]
    if args.prepare:
        _prepare(args.ds, args.days, env)

    from lake import load_config, registry

    rows = []
    for name in args.variants.split(","):
        stdout, seconds = _run([SEQREC, "train", "--ds", args.ds, *VARIANTS[name]], env)
        version = json.loads(stdout.strip().splitlines()[-1])["model_version"]
        card = registry.find(load_config(), version=version, alias=None)
        assert card is not None
        metrics = _epoch_metrics(card.run_id)
        rows.append((name, seconds, card.meta["epochs_trained"], statistics.median(metrics["epoch_seconds"]),
                     statistics.median(metrics["sequences_per_second"]), card.meta["valid_ndcg@10"]))
    print(f"\n{'variant':<15} {'wall s':>7} {'epochs':>6} {'s/epoch':>8} {'seq/s':>8} {'valid NDCG@10':>13}")
    for name, seconds, epochs, per_epoch, throughput, ndcg in rows:
        print(f"{name:<15} {seconds:>7.1f} {epochs:>6} {per_epoch:>8.2f} {throughput:>8.0f} {ndcg:>13.4f}")


if __name__ == "__main__":
    main()
