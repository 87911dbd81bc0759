"""Does the model use behaviour when it matters, and only then? The default SASRec with and without its
behaviour embedding on the shipped Taobao sample and on two generated controls, each over several seeds.

The controls come from `seqrec generate` with ``generate.next_session`` chained: every event carries a
behaviour drawn uniformly from view/favourite/cart/purchase and the user's next session is in the category
0-3 places on. In ``control-behaviour`` the session's last behaviour sets the shift, so only a model that sees
behaviours can tell where the user goes next; in ``control-random`` the shift is drawn independently, so
behaviour is noise and both models must tie. Everything else (sizes, sessions, popularity) is equal.

Each data set runs through the real pipeline (each `seqrec` command in its own process) in a lake of its own
under --work: generate (controls) -> ingest -> featurize, then per variant and seed train -> evaluate. The
test target is each user's last event whatever its behaviour (the `interaction` target), under the served
protocol (the list `seqrec score` would serve) and the sampled one. Prints mean and standard deviation over
the seeds and writes them, with every run, as JSON.

    .venv/bin/python benchmarks/behaviour_controls.py --work /tmp/behaviour-controls
    .venv/bin/python benchmarks/behaviour_controls.py --work /tmp/bc --datasets control-behaviour --seeds 1
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path
from typing import Any

import yaml
from pipeline_runs import REPO, SEQREC, markdown_table, mean_and_sd, merge, run, train_and_evaluate, work_config

SAMPLE_DS = "2017-12-03"
CONTROL = {
    "events": 80_000, "days": 9, "start_ds": "2017-11-25", "seed": 11, "events_per_user": 40,
    "items_per_event": 0.0125, "categories": 40,
    # Short sessions, so many targets open a new session (where the chain decides the category) ...
    "session_views": 2,
    # ... and no funnel, reloads, bots or bad rows: the chain is the only thing behaviour can tell.
    "reload_probability": 0.0, "favourite_probability": 0.0, "cart_probability": 0.0, "bot_users": 0,
    "duplicate_fraction": 0.0, "malformed_rows": 0,
}
DATASETS: dict[str, dict[str, Any]] = {
    # The sample's own settings (scripts/sample_config.yaml): 39 users after cleaning, so expect noise.
    "taobao-sample": {"config": yaml.safe_load((REPO / "scripts" / "sample_config.yaml").read_text())},
    "control-behaviour": {"generate": {**CONTROL, "next_session": "behaviour"}, "evaluate": {"negatives": 99}},
    "control-random": {"generate": {**CONTROL, "next_session": "random"}, "evaluate": {"negatives": 99}},
}
# The default model (behaviour, category and time-gap embeddings) against the same without behaviour.
VARIANTS: dict[str, dict[str, Any]] = {
    "without-behaviour": {"model_type": "sasrec", "use_behaviour": False, "use_category": True, "use_time_gap": True},
    "with-behaviour": {"model_type": "sasrec", "use_behaviour": True, "use_category": True, "use_time_gap": True},
}
METRICS = ("ndcg@10", "hr@10")


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", type=Path, required=True, help="Folder for the lakes, MLflow stores and logs.")
    parser.add_argument("--datasets", default=",".join(DATASETS), help=f"Comma-separated subset of {list(DATASETS)}.")
    parser.add_argument("--seeds", default="1,2,3", help="train.seed of each run.")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "behaviour_controls.json")
    return parser.parse_args()


def _prepare(name: str, work: Path, logs: Path) -> tuple[Path, str]:
    """Generate (controls), ingest and featurize once (kept in ``work`` for later runs); config file and ds."""
    config_file, done = work / "seqrec.yaml", work / "featurized.ok"
    if done.exists() and config_file.exists():
        print(f"reusing the featurized lake in {work}")
        return config_file, done.read_text().strip()
    spec = DATASETS[name]
    config = merge(work_config(work), spec.get("config") or {})
    config = merge(config, {key: value for key, value in spec.items() if key != "config"})
    config_file.write_text(yaml.safe_dump(config, sort_keys=False))
    if "generate" in spec:
        raw = work / "raw"
        run([*SEQREC, "generate", "--output", str(raw), "--config", str(config_file)], logs / "generate.log")
        files = sorted(raw.glob("user_behavior_*.csv"))
        source = work / "all_days.csv"
        source.write_text("".join(f.read_text() for f in files))
        ds = files[-1].stem.removeprefix("user_behavior_")
    else:
        source, ds = REPO / "tests" / "fixtures" / "taobao_sample.csv", SAMPLE_DS
    # One drop holding every day: ingest files each row under its own day, as for a multi-day export.
    run([*SEQREC, "ingest", "--ds", ds, "--source", str(source), "--config", str(config_file)], logs / "ingest.log")
    run([*SEQREC, "featurize", "--ds", ds, "--config", str(config_file)], logs / "featurize.log")
    done.write_text(ds)
    return config_file, ds


def _protocols(run_record: dict[str, Any]) -> tuple[str, ...]:
    """served, then the sampled protocol the data set's evaluation used (sampled99, sampled20, ...)."""
    return ("served", *sorted(p for p in run_record["metrics"]["model"] if p.startswith("sampled")))


def main() -> None:
    args = _arguments()
    work = args.work.resolve()
    sys.path.insert(0, str(REPO))
    command = shlex.join([".venv/bin/python", "benchmarks/behaviour_controls.py", *sys.argv[1:]])
    finished_file = work / "finished.json"
    finished: dict[str, Any] = json.loads(finished_file.read_text()) if finished_file.exists() else {}
    for dataset in args.datasets.split(","):
        logs = work / dataset / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        config_file, ds = _prepare(dataset, work / dataset, logs)
        for name, train in VARIANTS.items():
            for seed in (int(s) for s in args.seeds.split(",")):
                key = f"{dataset} {name} seed {seed}"
                if key not in finished:
                    record = train_and_evaluate(config_file, ds, name, seed, {"train": train}, logs, "interaction")
                    finished[key] = {"dataset": dataset, **record}
                    finished_file.write_text(json.dumps(finished, indent=2))
    summary = _summary(finished)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"command": command, "target": "interaction (each user's last event)",
                                    "control_generate": CONTROL, "summary": summary,
                                    "runs": list(finished.values())}, indent=2) + "\n")
    for dataset in DATASETS:
        rows = [row for row in summary if row["dataset"] == dataset]
        if rows:
            columns = [f"{p} {m}" for p in rows[0]["protocols"] for m in METRICS]
            print(f"\n{dataset}: with/without behaviour, served NDCG@10 ratio {rows[0]['ratio']:.3f}")
            print(markdown_table(rows, columns, label="variant"))


def _summary(finished: dict[str, Any]) -> list[dict[str, Any]]:
    """Per data set and variant: mean and standard deviation over the seeds, and the with/without ratio of
    mean served NDCG@10 (on the with-behaviour row)."""
    rows = []
    for dataset in DATASETS:
        means = {}
        for name in VARIANTS:
            runs = [r for r in finished.values() if r["dataset"] == dataset and r["variant"] == name]
            if runs:
                protocols = _protocols(runs[0])
                means[name] = {"dataset": dataset, "variant": name, "protocols": list(protocols),
                               **mean_and_sd(runs, protocols, METRICS)}
        if len(means) == len(VARIANTS):
            ratio = means["with-behaviour"]["served ndcg@10"] / max(means["without-behaviour"]["served ndcg@10"], 1e-9)
            for row in means.values():
                row["ratio"] = round(ratio, 3)
        rows.extend(means.values())
    return rows


if __name__ == "__main__":
    main()
