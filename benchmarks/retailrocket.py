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
import sys
from pathlib import Path
from typing import Any

import yaml
from pipeline_runs import REPO, SEQREC, markdown_table, mean_and_sd, merge, run, train_and_evaluate, work_config

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
    finished_file = work / "finished.json"
    finished: dict[str, Any] = json.loads(finished_file.read_text()) if finished_file.exists() else {}
    for name in args.variants.split(","):
        for seed in (int(s) for s in args.seeds.split(",")):
            key = f"{name} seed {seed}"
            if key in finished:
                continue
            evaluate = {"negatives": 99, "baselines": [] if finished else BASELINES}
            overrides = {"train": VARIANTS[name], "evaluate": evaluate}
            finished[key] = train_and_evaluate(config_file, ds, name, seed, overrides, logs, "purchase")
            finished_file.write_text(json.dumps(finished, indent=2))
    summary = _summary(finished)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"dataset": "retailrocket", "data": str(args.data), "command": command,
                                    "target": "purchase (held out, never touched before)", "goal": GOAL,
                                    "summary": summary, "runs": list(finished.values())}, indent=2) + "\n")
    print(markdown_table(summary, [f"{p} {m}" for p in PROTOCOLS for m in METRICS]))


def _summary(finished: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per model (mean and standard deviation over its seeds) and per baseline."""
    rows = []
    for name in VARIANTS:
        runs = [r for r in finished.values() if r["variant"] == name]
        if runs:
            rows.append({"model": LABELS[name], "variant": name, **mean_and_sd(runs, PROTOCOLS, METRICS)})
    baselines = next((r["metrics"] for r in finished.values() if set(BASELINES) <= set(r["metrics"])), {})
    for ranker in BASELINES:
        if ranker in baselines:
            rows.append({"model": f"{ranker} (baseline)", "variant": ranker, "seeds": 1,
                         **{f"{p} {m}": round(baselines[ranker][p][m], 4) for p in PROTOCOLS for m in METRICS}})
    return rows


if __name__ == "__main__":
    main()
