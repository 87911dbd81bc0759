"""Evaluating a fixed sample of users (`evaluate.max_users`) against every user: the time saved and how far
the sample's figures are from the full ones, on an existing lake and model, in one run.

Runs `seqrec evaluate` twice on the same model, ds and split, each in its own process: every user, then a
sample of --max-users. Prints both wall times, their ratio, and per protocol the model's NDCG@10 and HR@10
(interaction target) with the sample's standard error and its distance from the full figure in standard
errors.

    .venv/bin/python benchmarks/evaluate_sample.py --config /tmp/nightly-scale/events-3000000/seqrec.yaml \\
        --model 1 --ds 2017-11-26 --max-users 50000
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

import yaml
from pipeline_runs import REPO, SEQREC, run

METRICS = ("ndcg@10", "hr@10")


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", type=Path, required=True, help="The lake's seqrec config file.")
    parser.add_argument("--model", required=True, help="Registered model version.")
    parser.add_argument("--ds", required=True)
    parser.add_argument("--max-users", type=int, default=50_000)
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "evaluate_sample.json")
    return parser.parse_args()


def _model_rows(config_file: Path, version: str) -> dict[str, dict[str, tuple[float, float, int]]]:
    """``{protocol: {metric@k: (value, std_error, users)}}`` of the model, interaction target, all users."""
    from lake import Lake, load_config

    lake = Lake.from_config(load_config(config_file, environ={}))
    out: dict[str, dict[str, tuple[float, float, int]]] = {}
    for row in lake.read("model_metrics", partition=version).to_pylist():
        if (row["ranker"], row["target"], row["segment"], row["split"]) == ("model", "interaction", "all", "test"):
            out.setdefault(row["protocol"], {})[f"{row['metric']}@{row['k']}"] = (
                row["value"], row["std_error"], row["users"])
    return out


def main() -> None:
    args = _arguments()
    sys.path.insert(0, str(REPO))
    work = args.config.resolve().parent
    logs = work / "logs"
    logs.mkdir(exist_ok=True)
    base = yaml.safe_load(args.config.read_text()) or {}
    runs = {}
    for name, max_users in (("every user", 0), (f"sample of {args.max_users:,}", args.max_users)):
        config_file = work / f"evaluate-max-users-{max_users}.yaml"
        config_file.write_text(yaml.safe_dump({**base, "evaluate": {**(base.get("evaluate") or {}),
                                                                    "max_users": max_users}}, sort_keys=False))
        _, seconds = run([*SEQREC, "evaluate", "--model", args.model, "--ds", args.ds, "--config", str(config_file)],
                         logs / f"evaluate-max-users-{max_users}.log")
        runs[name] = {"max_users": max_users, "seconds": round(seconds, 1),
                      "model": _model_rows(config_file, args.model)}
    full, sample = runs.values()
    print(f"\nevery user: {full['seconds']} s; sample: {sample['seconds']} s; "
          f"speed-up {full['seconds'] / sample['seconds']:.2f}x")
    print("| protocol | metric | every user (users) | sample ± std error (users) | distance in std errors |")
    print("|---|---|---|---|---|")
    for protocol, metrics in full["model"].items():
        for metric in METRICS:
            value, _, users = metrics[metric]
            s_value, s_error, s_users = sample["model"][protocol][metric]
            distance = abs(s_value - value) / s_error if s_error else float("nan")
            print(f"| {protocol} | {metric} | {value:.4f} ({users:,}) | {s_value:.4f} ± {s_error:.4f} ({s_users:,}) "
                  f"| {distance:.2f} |")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    command = shlex.join([".venv/bin/python", "benchmarks/evaluate_sample.py", *sys.argv[1:]])
    args.out.write_text(json.dumps({"command": command, "runs": runs}, indent=2) + "\n")


if __name__ == "__main__":
    main()
