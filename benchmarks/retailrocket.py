"""Do behaviour-aware sequences pay? Retailrocket's real view/cart/buy events, each model over several seeds.

Runs the real pipeline (each `seqrec` command in its own process) in a fresh lake under --work:
convert-events (the interactions plus the held-out purchases, ids shifted by 1) -> ingest -> featurize, then per
variant and seed train -> evaluate. The test target is each user's held-out purchase (an item the user never
touched before), so the reported figures are the `purchase` target's: the served protocol (the list
`seqrec score` would serve) and sampled99 (the held-out item against 99 sampled unseen items, the protocol of the
papers that publish this split, e.g. CML, WSDM 2022). The baselines (popularity, recent-items, implicit ALS) are
ranked on the same rows by the first evaluation. Prints mean and standard deviation over the seeds and writes
them, with every run, as JSON.

    .venv/bin/python benchmarks/retailrocket.py --work /tmp/rr-bench
    .venv/bin/python benchmarks/retailrocket.py --work /tmp/rr-bench --variants sasrec,sasrec-behaviour --seeds 1
"""

from __future__ import annotations

import argparse
import json
import re
import shlex
import statistics
import sys
from pathlib import Path
from typing import Any

import yaml
from pipeline_runs import REPO, SEQREC, card_meta, last_value, merge, run, test_metrics, work_config

DATA = REPO.parent / "shared" / "data" / "retailrocket"
NO_EXTRAS = {"use_behaviour": False, "use_category": False, "use_time_gap": False}
# The file has no categories, so use_category stays off everywhere (it would add one constant vector).
BEHAVIOUR_AWARE = {"use_behaviour": True, "use_category": False, "use_time_gap": True}
VARIANTS: dict[str, dict[str, Any]] = {
    "gru": {"model_type": "gru", "num_layers": 1, **NO_EXTRAS},
    "sasrec": {"model_type": "sasrec", **NO_EXTRAS},
    "sasrec-behaviour": {"model_type": "sasrec", **BEHAVIOUR_AWARE},
    "sasrec-behaviour-purchase5": {"model_type": "sasrec", **BEHAVIOUR_AWARE, "target_weights": {"purchase": 5.0}},
}
LABELS = {
    "gru": "GRU4Rec (no extras)",
    "sasrec": "SASRec without extras",
    "sasrec-behaviour": "SASRec + behaviour + time-gap embeddings",
    "sasrec-behaviour-purchase5": "SASRec + behaviour + time-gap, purchase targets weigh 5",
}
BASELINES = ["popularity", "recent-items", "als"]
PROTOCOLS = ("served", "sampled99")
METRICS = ("ndcg@10", "hr@10")
GOAL = "best behaviour-aware SASRec >= 1.10 x SASRec without extras, served NDCG@10 (purchase), mean of 3 seeds"


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", type=Path, required=True, help="Folder for the lake, MLflow store and logs.")
    parser.add_argument("--data", type=Path, default=DATA, help="Folder with train_interactions.tsv, test_buy.tsv.")
    parser.add_argument("--variants", default=",".join(VARIANTS), help=f"Comma-separated subset of {list(VARIANTS)}.")
    parser.add_argument("--seeds", default="1,2,3", help="train.seed of each run.")
    parser.add_argument("--config", type=Path, help="YAML overrides applied to every stage.")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "retailrocket.json")
    return parser.parse_args()


def _prepare(args: argparse.Namespace, logs: Path) -> tuple[Path, str]:
    """Convert, ingest and featurize once (kept in --work for later runs); the config file and the ds."""
    work = args.work.resolve()
    converted, done = work / "converted", work / "featurized.ok"
    config_file = converted / "seqrec.yaml"
    if done.exists() and config_file.exists():
        print(f"reusing the featurized lake in {work}")
        return config_file, done.read_text().strip()
    base = work_config(work)
    if args.config:
        base = merge(base, yaml.safe_load(args.config.read_text()) or {})
    base_file = work / "base.yaml"
    base_file.write_text(yaml.safe_dump(base, sort_keys=False))
    run([*SEQREC, "convert-events", "--input", str(args.data / "train_interactions.tsv"),
                     "--heldout", str(args.data / "test_buy.tsv"), "--id-offset", "1", "--output", str(converted),
                     "--config", str(base_file)], logs / "convert.log")
    # the command tells (on stderr, in its log) which day to ingest and featurize: the last one
    ds = re.search(r"seqrec ingest --ds\s+(\d{4}-\d{2}-\d{2})", (logs / "convert.log").read_text()).group(1)
    run([*SEQREC, "ingest", "--ds", ds, "--source", str(converted / "events.parquet"), "--config", str(config_file)],
        logs / "ingest.log")
    run([*SEQREC, "featurize", "--ds", ds, "--config", str(config_file)], logs / "featurize.log")
    done.write_text(ds)
    return config_file, ds


def main() -> None:
    args = _arguments()
    work = args.work.resolve()
    logs = work / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    sys.path.insert(0, str(REPO))
    command = shlex.join([".venv/bin/python", "benchmarks/retailrocket.py", *sys.argv[1:]])
    config_file, ds = _prepare(args, logs)
    base = yaml.safe_load(config_file.read_text())
    finished_file = work / "finished.json"
    finished: dict[str, Any] = json.loads(finished_file.read_text()) if finished_file.exists() else {}
    for name in args.variants.split(","):
        for seed in (int(s) for s in args.seeds.split(",")):
            key = f"{name} seed {seed}"
            if key in finished:
                continue
            first = not finished
            evaluate = {"negatives": 99, "baselines": BASELINES if first else []}
            train = merge(base.get("train") or {}, {**VARIANTS[name], "seed": seed})
            variant_file = work / f"{name}-seed{seed}.yaml"
            variant_file.write_text(yaml.safe_dump({**base, "train": train, "evaluate": evaluate}, sort_keys=False))
            stdout, seconds = run([*SEQREC, "train", "--ds", ds, "--config", str(variant_file)],
                                  logs / f"train-{name}-seed{seed}.log")
            version = last_value(stdout, "model_version")
            run([*SEQREC, "evaluate", "--model", version, "--config", str(variant_file)],
                logs / f"evaluate-{name}-seed{seed}.log")
            meta = card_meta(variant_file, version)
            finished[key] = {"variant": name, "seed": seed, "version": version, "train_seconds": round(seconds, 1),
                             "epochs_trained": meta.get("epochs_trained"), "best_epoch": meta.get("best_epoch"),
                             "train": train, "metrics": test_metrics(variant_file, version, "purchase")}
            finished_file.write_text(json.dumps(finished, indent=2))
    summary = _summary(finished)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"dataset": "retailrocket", "data": str(args.data), "command": command,
                                    "target": "purchase (held out, never touched before)", "goal": GOAL,
                                    "summary": summary, "runs": list(finished.values())}, indent=2) + "\n")
    _print_table(summary)


def _summary(finished: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per model (mean and standard deviation over its seeds) and per baseline."""
    rows = []
    for name in VARIANTS:
        runs = [r for r in finished.values() if r["variant"] == name]
        if not runs:
            continue
        row: dict[str, Any] = {"model": LABELS[name], "variant": name, "seeds": len(runs),
                               "train_seconds": round(statistics.mean(r["train_seconds"] for r in runs), 1)}
        for protocol in PROTOCOLS:
            for metric in METRICS:
                values = [r["metrics"]["model"][protocol][metric] for r in runs]
                row[f"{protocol} {metric}"] = round(statistics.mean(values), 4)
                row[f"{protocol} {metric} sd"] = round(statistics.stdev(values), 4) if len(values) > 1 else None
        rows.append(row)
    baselines = next((r["metrics"] for r in finished.values() if set(BASELINES) <= set(r["metrics"])), {})
    for ranker in BASELINES:
        if ranker in baselines:
            rows.append({"model": f"{ranker} (baseline)", "variant": ranker, "seeds": 1,
                         **{f"{p} {m}": round(baselines[ranker][p][m], 4) for p in PROTOCOLS for m in METRICS}})
    return rows


def _print_table(rows: list[dict[str, Any]]) -> None:
    columns = [f"{p} {m}" for p in PROTOCOLS for m in METRICS]
    print("| model | seeds | " + " | ".join(columns) + " | train s |")
    print("|---|---|" + "---|" * len(columns) + "---|")
    for row in rows:
        cells = []
        for column in columns:
            sd = row.get(f"{column} sd")
            cells.append(f"{row[column]:.4f}" + (f" ± {sd:.4f}" if sd is not None else ""))
        print(f"| {row['model']} | {row['seeds']} | " + " | ".join(cells) + f" | {row.get('train_seconds', '')} |")


if __name__ == "__main__":
    main()
