"""Benchmark on real data: convert -> ingest -> featurize -> train -> evaluate, for a grid of models.

Runs the real pipeline (the `seqrec` commands, each in its own process) in a fresh lake under --work on a
SASRec-format file (``user item`` per line, each user's lines in time order), then prints HR@10, NDCG@10,
MRR and F1-Test@10 of every model and of the baselines ranked on the same rows (popularity, recent-items)
under the served protocol (the list `seqrec score` serves), full and sampled100, with the share of repeat
targets, and writes them as JSON.

    .venv/bin/python benchmarks/amazon_games.py --work /tmp/amazon-bench
    .venv/bin/python benchmarks/amazon_games.py --work /tmp/b --epochs 5 --models sasrec-2 --extras without

Another dataset of the same format needs configuration only: --data FILE --name NAME, and --config FILE for
any other overrides (train: hidden_size, dropout, ...; featurize: ...). With --reuse, a work folder that
already holds the featurized lake, or finished models, is not recomputed.
Published reference (SASRec, sampled protocol, Amazon Games): HR@10 0.7410, NDCG@10 0.5360.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import sys
from pathlib import Path
from typing import Any

import yaml
from pipeline_runs import REPO, SEQREC, card_meta, last_value, merge, run, test_metrics, work_config

DEFAULT_DATA = REPO.parent / "shared" / "data" / "amazon_games.txt"
REPORTED = ("hr@10", "ndcg@10", "mrr", "f1_test@10")
EXTRA_EMBEDDINGS = ("use_behaviour", "use_category", "use_time_gap")
# Model name -> train settings. The extra embeddings (behaviour, category, time gap) are switched per row.
MODELS: dict[str, dict[str, Any]] = {
    "popularity": {"model_type": "popularity"},
    "gru": {"model_type": "gru", "num_layers": 1},
    "lstm": {"model_type": "lstm", "num_layers": 1},
    "sasrec-1": {"model_type": "sasrec", "num_layers": 1},
    "sasrec-2": {"model_type": "sasrec", "num_layers": 2},
}
# The training settings each row records, so rows from runs with different --config files can be told apart.
TUNABLE = ("hidden_size", "inner_size", "num_layers", "dropout", "learning_rate", "batch_size", "weight_decay")
REFERENCE = {"model": "SASRec (Kang & McAuley 2018)", "protocol": "sampled100", "hr@10": 0.7410,
             "ndcg@10": 0.5360}
GOAL = {"protocol": "served", "hr@10": 0.120, "ndcg@10": 0.066}


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="SASRec-format file.")
    parser.add_argument("--name", default="amazon_games", help="Dataset name recorded in the results.")
    parser.add_argument("--work", type=Path, required=True, help="Folder for the lake, MLflow store and logs.")
    parser.add_argument("--ds", default="2018-01-01", help="The day the converted events are placed on.")
    parser.add_argument("--config", type=Path, help="YAML overrides applied to every stage.")
    parser.add_argument("--models", default=",".join(MODELS), help=f"Comma-separated subset of {list(MODELS)}.")
    parser.add_argument("--extras", choices=("both", "with", "without"), default="both",
                        help="Train each neural model with and/or without the extra embeddings.")
    parser.add_argument("--epochs", type=int, help="train.epochs (early stopping may end sooner).")
    parser.add_argument("--np", dest="num_proc", type=int, default=1, help="Horovod workers per training run.")
    parser.add_argument("--out", type=Path, help="Where the JSON results go (benchmarks/results/<name>.json).")
    parser.add_argument("--tag", default="",
                        help="Appended to each model's label (e.g. the --config it ran with), so tuned runs get "
                             "rows of their own instead of replacing the default ones.")
    parser.add_argument("--reuse", action="store_true", help="Keep the featurized lake and finished models.")
    parser.add_argument("--report-only", action="store_true",
                        help="Train nothing: write the results of the models already finished in --work.")
    return parser.parse_args()


def _base_config(args: argparse.Namespace) -> dict[str, Any]:
    base = work_config(args.work)
    if args.config:
        base = merge(base, yaml.safe_load(args.config.read_text()) or {})
    train = {"num_proc": args.num_proc}
    if args.epochs is not None:
        train["epochs"] = args.epochs
    return merge(base, {"train": train})


def _featurize(args: argparse.Namespace, logs: Path) -> Path:
    """Convert, ingest and featurize once; returns the config file every later stage uses."""
    work = args.work.resolve()
    converted = work / "converted"
    config_file = converted / "seqrec.yaml"
    done = work / "featurized.ok"
    if args.reuse and done.exists() and config_file.exists():
        print(f"reusing the featurized lake in {work}")
        return config_file
    if args.report_only:
        raise SystemExit(f"{work} holds no featurized lake; run without --report-only first")
    base_file = work / "base.yaml"
    base_file.write_text(yaml.safe_dump(_base_config(args), sort_keys=False))
    run([*SEQREC, "convert-sasrec", "--input", str(args.data.resolve()), "--output", str(converted),
          "--ds", args.ds, "--config", str(base_file)], logs / "convert.log")
    run([*SEQREC, "ingest", "--ds", args.ds, "--source", str(converted / "events.parquet"),
          "--config", str(config_file)], logs / "ingest.log")
    run([*SEQREC, "featurize", "--ds", args.ds, "--config", str(config_file)], logs / "featurize.log")
    done.write_text(args.ds)
    return config_file


def _variants(args: argparse.Namespace) -> list[tuple[str, dict[str, Any]]]:
    out = []
    for name in args.models.split(","):
        settings = MODELS[name.strip()]
        if settings["model_type"] == "popularity":
            out.append((name, settings))
            continue
        for extras in ("with", "without"):
            if args.extras in (extras, "both"):
                label = f"{name} {'+' if extras == 'with' else '-'}extras" + (f" {args.tag}" if args.tag else "")
                out.append((label, {**settings, **dict.fromkeys(EXTRA_EMBEDDINGS, extras == "with")}))
    return out


def _device(train: dict[str, Any]) -> str:
    """Where the model trained: this host, and the workers and torch threads its train config gave it
    (torch_threads 0 = the host's cores shared among the workers, as the trainer resolves it)."""
    import torch

    cores = os.cpu_count() or 1
    workers = int(train.get("num_proc") or 1)
    threads = int(train.get("torch_threads") or 0) or max(1, cores // workers)
    return (f"cpu ({platform.machine()}, {cores} cores, torch {torch.__version__}, "
            f"{workers} worker{'s' if workers > 1 else ''} x {threads} thread{'s' if threads > 1 else ''})")


def main() -> None:
    args = _arguments()
    args.out = args.out or REPO / "benchmarks" / "results" / f"{args.name}.json"
    work = args.work.resolve()
    logs = work / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    sys.path.insert(0, str(REPO))
    command = shlex.join([".venv/bin/python", "benchmarks/amazon_games.py", *sys.argv[1:]])
    if args.report_only:
        args.reuse = True
    config_file = _featurize(args, logs)
    # The converted config carries the lake paths; --config and --epochs/--np apply to every later stage.
    base = merge(yaml.safe_load(config_file.read_text()), _base_config(args))
    finished_file = work / "finished.json"
    finished: dict[str, Any] = json.loads(finished_file.read_text()) if args.reuse and finished_file.exists() else {}

    rows: list[dict[str, Any]] = []
    for label, settings in _variants(args):
        slug = "".join(c if c.isalnum() or c in "-_." else "_" for c in
                       label.replace("+extras", "plus-extras").replace("-extras", "minus-extras"))
        if label not in finished:
            if args.report_only:
                print(f"not run yet: {label}")
                continue
            train_section = merge(base.get("train") or {}, settings)
            variant_file = work / f"{slug}.yaml"
            variant_file.write_text(yaml.safe_dump({**base, "train": train_section}, sort_keys=False))
            stdout, train_seconds = run([*SEQREC, "train", "--ds", args.ds, "--config", str(variant_file)],
                                         logs / f"train-{slug}.log")
            version = last_value(stdout, "model_version")
            run([*SEQREC, "evaluate", "--model", version, "--config", str(variant_file)],
                 logs / f"evaluate-{slug}.log")
            finished[label] = {"version": version, "train_seconds": round(train_seconds, 1), "command": command,
                               "train": train_section, "metrics": test_metrics(variant_file, version, "interaction")}
            finished_file.write_text(json.dumps(finished, indent=2))
        # the variant's own file: it names this work folder's registry even when the folder was copied
        rows += _rows(label, finished[label], work / f"{slug}.yaml")
        _write(args, rows)
    _print_table(rows)


def _earlier_results(out: Path, dataset: str) -> dict[str, Any]:
    """What an earlier run wrote to ``out`` for the same dataset (rows and commands), so a grid too long for
    one sitting can be filled in by several runs."""
    earlier = json.loads(out.read_text()) if out.exists() else {}
    return earlier if earlier.get("dataset") == dataset else {"rows": [], "command": ""}


def _protocol_order(protocol: str) -> int:
    return {"served": 0, "full": 1}.get(protocol, 2)


def _rows(label: str, result: dict[str, Any], config_file: Path) -> list[dict[str, Any]]:
    """One row per (ranker, protocol) for a finished model: the model, then the baselines ranked on the same
    rows; served first, then full, then sampled<N>."""
    meta = card_meta(config_file, result["version"])
    train = meta.get("train_config") or {}
    out = []
    for ranker, protocols in result["metrics"].items():
        name = label if ranker == "model" else f"{ranker} (baseline)"
        for protocol in sorted(protocols, key=_protocol_order):
            metrics = protocols[protocol]
            row = {"model": name, "protocol": protocol, **{k: round(metrics[k], 4) for k in REPORTED},
                   "repeat_share": round(metrics["repeat_share"], 4), "users": metrics["users"]}
            if ranker == "model":
                row |= {"train_seconds": result["train_seconds"], "device": _device(train),
                        "model_version": result["version"], "max_epochs": train.get("epochs"),
                        "epochs_trained": meta.get("epochs_trained"), "best_epoch": meta.get("best_epoch"),
                        "loss": meta.get("loss"), "settings": {k: train.get(k) for k in TUNABLE if k in train}}
            out.append(row | {"command": result.get("command")})
    return out


def _write(args: argparse.Namespace, rows: list[dict[str, Any]]) -> None:
    """Write ``rows`` to ``args.out``, keeping the earlier rows (and commands) of the models this run did not
    produce. The file is re-read just before each write, so runs in separate --work folders can fill in one
    results file at the same time."""
    args.out.parent.mkdir(parents=True, exist_ok=True)
    earlier = _earlier_results(args.out, args.name)
    rows = list({(row["model"], row["protocol"]): row for row in rows}.values())  # a baseline once
    rerun = {row["model"] for row in rows}
    kept = [row for row in earlier["rows"] if row["model"] not in rerun]
    rows = kept + rows
    # A row's command may itself be several commands joined by " ; " (a run finished by hand).
    joined = ([earlier["command"]] if kept else []) + [r["command"] for r in rows if r.get("command")]
    commands = list(dict.fromkeys(c for line in joined for c in line.split(" ; ") if c))
    args.out.write_text(json.dumps({
        "dataset": args.name, "data_file": str(args.data), "command": " ; ".join(commands),
        "reference": REFERENCE, "goal": GOAL, "rows": rows,
    }, indent=2) + "\n")


def _print_table(rows: list[dict[str, Any]]) -> None:
    header = ["model", "protocol", *REPORTED, "repeat_share", "train_seconds", "epochs_trained"]
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for row in rows:
        print("| " + " | ".join(str(row.get(h, "")) for h in header) + " |")


if __name__ == "__main__":
    main()
