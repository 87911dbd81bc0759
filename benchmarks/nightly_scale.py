"""How each nightly stage's cost grows with the day's events: the whole nightly at several sizes, each stage
through the entry point the DAG runs it with, timed and measured for memory.

Per size N (events per day), in a fresh lake under --work:

- setup, not timed: `seqrec generate` writes --days days of N events each (the generator's sessions, funnel,
  bots, duplicates, malformed rows; --events-per-user sets the users), and the days before the last are
  ingested (`spark-submit jobs/ingest.py`), the history a nightly finds;
- the nightly for the last day, timed stage by stage: ingest and featurize (spark-submit jobs/<stage>.py, as
  the DAG's SparkSubmitOperator), train (`seqrec train`: one epoch of --train-steps steps plus its
  validation, sequences/s from its log), evaluate and gate (`seqrec ...`), score and publish (spark-submit).

For every stage: wall seconds, and the peak resident memory of the driver (the Python process running the
stage), the JVM (driver and executors: Spark runs local[2] here) and the workers (Python processes the
stage starts: Spark's Python workers, Horovod's ranks), sampled every 0.2 s over the whole process tree.
Then each stage's scaling exponent (the slope of log seconds against log events, least squares over the
sizes), a PNG of seconds against events, and JSON with every figure. Featurize reads every day up to ds, so
its input is days x N events.

    .venv/bin/python benchmarks/nightly_scale.py --work /tmp/nightly-scale --sizes 1000000,3000000,10000000
    .venv/bin/python benchmarks/nightly_scale.py --work /tmp/ns --sizes 100000,300000 --train-steps 20
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import re
import shlex
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import psutil
import yaml
from pipeline_runs import REPO, last_value, merge, work_config

VENV_BIN = Path(sys.executable).parent
SPARK_STAGES = ("ingest", "featurize", "score", "publish")
NIGHTLY = ("ingest", "featurize", "train", "evaluate", "gate", "score", "publish")
WITHOUT_TRAINING = tuple(stage for stage in NIGHTLY if stage != "train")
SAMPLE_SECONDS = 0.2


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", type=Path, required=True, help="Folder for the lakes, raw files and logs.")
    parser.add_argument("--sizes", default="1000000,3000000,10000000", help="Events per day, comma-separated.")
    parser.add_argument("--days", type=int, default=2, help="Days of history, the last one the nightly's ds.")
    parser.add_argument("--events-per-user", type=int, default=16, help="generate.events_per_user.")
    parser.add_argument("--items-per-event", type=float, default=0.005, help="generate.items_per_event.")
    parser.add_argument("--train-steps", type=int, default=200, help="Training steps (one epoch of them).")
    parser.add_argument("--driver-memory", default="8g", help="spark.driver.memory of every Spark stage.")
    parser.add_argument("--config", type=Path, help="YAML overrides applied to every stage.")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "nightly_scale.json")
    parser.add_argument("--plot", type=Path, default=REPO / "docs" / "images" / "nightly_scale.png")
    return parser.parse_args()


class TreeMemory:
    """Peak RSS of a process tree, by role: the stage's driver process, JVMs, and the other (worker) processes;
    and the driver's peak of anonymous memory alone (RSS less file-backed and shared pages: memory-mapped
    files and shared-memory segments count in RSS but are not the process's own allocations)."""

    def __init__(self, root: int) -> None:
        self.root = root
        self.peaks = {"driver": 0, "jvm": 0, "workers": 0, "driver_anon": 0}
        self.driver_processes: set[str] = set()  # what was counted as the driver, to check the roles
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        while not self._stop.is_set():
            try:
                root = psutil.Process(self.root)
                processes = [root, *root.children(recursive=True)]
            except psutil.NoSuchProcess:
                return
            now = {"driver": 0, "jvm": 0, "workers": 0, "driver_anon": 0}
            for process in processes:
                try:
                    memory = process.memory_info()
                    role = self._role(process)
                except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
                    continue
                now[role] += memory.rss
                if role == "driver":
                    now["driver_anon"] += memory.rss - memory.shared
                    self.driver_processes.add(f"{process.pid} {process.name()}")
            for role, value in now.items():
                self.peaks[role] = max(self.peaks[role], value)
            self._stop.wait(SAMPLE_SECONDS)

    def _role(self, process: psutil.Process) -> str:
        name = process.name()
        if name == "java":
            return "jvm"
        # the stage's own Python: the `seqrec` CLI at the root, or the application spark-submit's JVM starts
        if process.pid == self.root or (name.startswith("python")
                                        and re.search(r"jobs/\w+\.py", " ".join(process.cmdline()))):
            return "driver"
        return "workers"

    def stop(self) -> dict[str, float]:
        self._stop.set()
        self._thread.join()
        return {**{f"{role}_peak_mb": round(value / 2**20) for role, value in self.peaks.items()},
                "driver_processes": sorted(self.driver_processes)}


def _measured(command: list[str], log: Path, env: dict[str, str]) -> dict[str, Any]:
    """Run one stage; its seconds, peak memory by role, and stdout."""
    print(f"$ {shlex.join(command)}", flush=True)
    started = time.monotonic()
    with log.open("w") as sink:
        process = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=sink, text=True, env=env)
        memory = TreeMemory(process.pid)
        stdout, _ = process.communicate()
        peaks = memory.stop()
        sink.write(stdout)
    seconds = time.monotonic() - started
    if process.returncode != 0:
        raise SystemExit(f"command failed ({process.returncode}) after {seconds:.0f}s; see {log}")
    return {"seconds": round(seconds, 1), **peaks, "stdout": stdout}


class Nightly:
    """One size's lake, raw files and the commands of its stages."""

    def __init__(self, args: argparse.Namespace, per_day: int) -> None:
        self.args = args
        self.per_day = per_day
        self.work = (args.work / f"events-{per_day}").resolve()
        self.logs = self.work / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        config = merge(work_config(self.work), {
            "generate": {"events": per_day * args.days, "days": args.days, "events_per_user": args.events_per_user,
                         "items_per_event": args.items_per_event},
            "train": {"epochs": 1, "max_steps_per_epoch": args.train_steps},
        })
        if args.config:
            config = merge(config, yaml.safe_load(args.config.read_text()) or {})
        self.config_file = self.work / "seqrec.yaml"
        self.config_file.write_text(yaml.safe_dump(config, sort_keys=False))
        self.env = {**os.environ, "PYTHONPATH": str(REPO), "SEQREC_CONFIG": str(self.config_file),
                    "PATH": f"{VENV_BIN}:{os.environ.get('PATH', '')}", "PYSPARK_PYTHON": sys.executable}
        self.start_ds = config.get("generate", {}).get("start_ds", "2017-11-25")

    def day(self, index: int) -> str:
        return (dt.date.fromisoformat(self.start_ds) + dt.timedelta(days=index)).isoformat()

    def stage(self, stage: str, *args: str) -> dict[str, Any]:
        if stage in SPARK_STAGES:
            from lake import load_config
            from lake.spark import submit_launch_conf

            confs = {"spark.driver.memory": self.args.driver_memory,
                     **submit_launch_conf(load_config(self.config_file, environ={}))}
            command = [str(VENV_BIN / "spark-submit"), "--master", "local[2]",
                       *[part for key, value in confs.items() for part in ("--conf", f"{key}={value}")],
                       str(REPO / "jobs" / f"{stage}.py"), *args]
        else:
            command = [str(VENV_BIN / "seqrec"), stage, *args]
        return _measured(command, self.logs / f"{stage}.log", self.env)

    def run(self) -> dict[str, Any]:
        raw = self.work / "raw"
        if not (raw / f"user_behavior_{self.day(self.args.days - 1)}.csv").exists():
            _measured([str(VENV_BIN / "seqrec"), "generate", "--output", str(raw)], self.logs / "generate.log",
                      self.env)
        for index in range(self.args.days - 1):
            ds = self.day(index)
            source = str(raw / f"user_behavior_{ds}.csv")
            _measured([str(VENV_BIN / "seqrec"), "ingest", "--ds", ds, "--source", source],
                      self.logs / f"history-ingest-{ds}.log", self.env)
        ds = self.day(self.args.days - 1)
        stages: dict[str, dict[str, Any]] = {}
        stages["ingest"] = self.stage("ingest", "--ds", ds, "--source", str(raw / f"user_behavior_{ds}.csv"))
        stages["featurize"] = self.stage("featurize", "--ds", ds)
        stages["train"] = self.stage("train", "--ds", ds)
        version = last_value(stages["train"]["stdout"], "model_version")
        stages["evaluate"] = self.stage("evaluate", "--model", version, "--ds", ds)
        stages["gate"] = self.stage("gate", "--model", version, "--ds", ds)
        stages["score"] = self.stage("score", "--ds", ds, "--model", version)
        stages["publish"] = self.stage("publish", "--ds", ds)
        for record in stages.values():
            record.pop("stdout")
        stages["train"]["sequences_per_second"] = _sequences_per_second(self.logs / "train.log")
        return {"events_per_day": self.per_day, "ds": ds, "rows": self._rows(ds), "stages": stages,
                "nightly_seconds": round(sum(stages[s]["seconds"] for s in NIGHTLY), 1),
                "without_training_seconds": round(sum(stages[s]["seconds"] for s in WITHOUT_TRAINING), 1)}

    def _rows(self, ds: str) -> dict[str, int]:
        from lake import Lake, load_config

        lake = Lake.from_config(load_config(self.config_file, environ={}))

        def rows(name: str, partition: str | None = None) -> int:
            return lake.read(name, partition=partition, columns=["ds" if partition else "item_index"]).num_rows

        return {"events_up_to_ds": sum(rows("events", self.day(i)) for i in range(self.args.days)),
                **{name: rows(name, ds) for name in ("events", "user_sequences", "train_examples", "recommendations")},
                "item_vocab": rows("item_vocab")}


def _sequences_per_second(log: Path) -> float | None:
    found = re.findall(r"([\d.]+) seq/s", log.read_text())
    return float(found[-1]) if found else None


def exponent(sizes: list[float], seconds: list[float]) -> float | None:
    """Least-squares slope of log(seconds) against log(size): 1 = linear."""
    if len(sizes) < 2:
        return None
    xs, ys = [math.log(s) for s in sizes], [math.log(max(t, 1e-3)) for t in seconds]
    mean_x, mean_y = sum(xs) / len(xs), sum(ys) / len(ys)
    return sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys, strict=True)) / sum((x - mean_x) ** 2 for x in xs)


def _plot(runs: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sizes = [r["events_per_day"] for r in runs]
    figure, axes = plt.subplots(figsize=(7, 4.5))
    for stage in NIGHTLY:
        axes.plot(sizes, [r["stages"][stage]["seconds"] for r in runs], marker="o", label=stage)
    axes.plot(sizes, [r["without_training_seconds"] for r in runs], marker="s", color="black",
              label="nightly without training")
    axes.set(xscale="log", yscale="log", xlabel="events per day", ylabel="wall seconds",
             title="seqrec nightly stages against the day's events (2 cores)")
    axes.grid(True, which="both", alpha=0.3)
    axes.legend(fontsize=8)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.tight_layout()
    figure.savefig(path, dpi=110)


def main() -> None:
    args = _arguments()
    sys.path.insert(0, str(REPO))
    command = shlex.join([".venv/bin/python", "benchmarks/nightly_scale.py", *sys.argv[1:]])
    finished_file = args.work / "finished.json"
    args.work.mkdir(parents=True, exist_ok=True)
    finished: dict[str, Any] = json.loads(finished_file.read_text()) if finished_file.exists() else {}
    for per_day in (int(s) for s in args.sizes.split(",")):
        if str(per_day) not in finished:
            finished[str(per_day)] = Nightly(args, per_day).run()
            finished_file.write_text(json.dumps(finished, indent=2))
    runs = sorted(finished.values(), key=lambda r: r["events_per_day"])
    sizes = [r["events_per_day"] for r in runs]
    exponents = {stage: exponent(sizes, [r["stages"][stage]["seconds"] for r in runs]) for stage in NIGHTLY}
    exponents["without_training"] = exponent(sizes, [r["without_training_seconds"] for r in runs])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"command": command, "days": args.days, "events_per_user": args.events_per_user,
                                    "items_per_event": args.items_per_event, "train_steps": args.train_steps,
                                    "exponents": exponents, "runs": runs}, indent=2) + "\n")
    _plot(runs, args.plot)
    print("\n| stage | " + " | ".join(f"{s:,} ev/day" for s in sizes) + " | exponent |")
    print("|---|" + "---|" * len(sizes) + "---|")
    for stage in (*NIGHTLY, "without_training"):
        cells = []
        for r in runs:
            if stage == "without_training":
                cells.append(f"{r['without_training_seconds']:.0f} s")
            else:
                m = r["stages"][stage]
                cells.append(f"{m['seconds']:.0f} s (driver {m['driver_peak_mb']} MB, JVM {m['jvm_peak_mb']} MB, "
                             f"workers {m['workers_peak_mb']} MB)")
        slope = exponents[stage]
        print(f"| {stage} | " + " | ".join(cells) + (f" | {slope:.2f} |" if slope is not None else " | - |"))
    print(f"\nplot: {args.plot}; JSON: {args.out}")


if __name__ == "__main__":
    main()
