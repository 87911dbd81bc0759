"""Benchmark: the publish checks (scoring/checks.py) of this checkout against those of an earlier git revision,
on one scored lake, in one Spark session, alternating, so both see the same data, cache and JVM.

The baseline's ``validation_failures`` is loaded from ``git show <rev>:scoring/checks.py``; the checks'
inputs are built as ``scoring.publish`` builds them (active users, excluded pairs, item vocabulary; the deny
list is left out). Both must report the same failures; the ratio is the baseline's best time over this
checkout's best time.

    .venv/bin/python benchmarks/publish_checks.py --config /tmp/ns/events-3000000/seqrec.yaml \
        --ds 2017-11-26 --baseline 8d16bbe
"""

from __future__ import annotations

import argparse
import importlib.util
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import ModuleType

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from lake import Lake, load_config  # noqa: E402 - after the repo is importable
from lake.registry import find  # noqa: E402
from lake.serving import ServingRules  # noqa: E402
from lake.spark import get_spark  # noqa: E402
from scoring.checks import Expectations, validation_failures  # noqa: E402
from scoring.inputs import active_users, excluded_pairs  # noqa: E402
from scoring.settings import ScoreSettings  # noqa: E402


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", type=Path, required=True, help="The scored lake's seqrec.yaml.")
    parser.add_argument("--ds", required=True, help="A ds of `recommendations`.")
    parser.add_argument("--baseline", required=True, help="The git revision whose checks are the baseline.")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--master", default="local[2]")
    parser.add_argument("--driver-memory", default="8g")
    return parser.parse_args()


def _baseline(revision: str, folder: Path) -> ModuleType:
    source = subprocess.run(["git", "show", f"{revision}:scoring/checks.py"], cwd=REPO, check=True,
                            capture_output=True, text=True).stdout
    path = folder / "baseline_checks.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("baseline_checks", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


def main() -> None:
    args = _arguments()
    config = load_config(args.config, environ={}).with_overrides(
        {"spark": {"master": args.master, "conf": {"spark.driver.memory": args.driver_memory}}})
    spark = get_spark(config)
    lake = Lake.from_config(config, spark=spark)
    settings, rules = ScoreSettings.from_config(config), ServingRules.from_config(config)
    rows = lake.read_spark("recommendations", partition=args.ds)
    card = find(config, version=rows.select("model_version").first()[0])
    events = lake.read_spark("events")
    expected = Expectations(
        ds=args.ds, top_n=rules.top_n, active=active_users(events, args.ds, settings.active_window_days),
        excluded_pairs=excluded_pairs(events, args.ds, rules.exclude_window_days, rules.exclude_behaviours),
        denied=None, vocab=lake.read_spark("item_vocab"), item_vocab_size=int(card.meta["item_vocab_size"]))
    print(f"recommendations ds={args.ds}: {rows.count():,} rows", flush=True)
    with tempfile.TemporaryDirectory() as folder:
        checks = {"baseline": _baseline(args.baseline, Path(folder)).validation_failures,
                  "this checkout": validation_failures}
        seconds: dict[str, list[float]] = {name: [] for name in checks}
        found: dict[str, list[str]] = {}
        for round_ in range(args.rounds):
            for name, check in checks.items():
                started = time.monotonic()
                found[name] = check(rows, expected)
                seconds[name].append(time.monotonic() - started)
                print(f"  round {round_ + 1} {name:<14} {seconds[name][-1]:7.2f} s  failures: {found[name]}",
                      flush=True)
    if found["baseline"] != found["this checkout"]:
        raise SystemExit(f"the checks disagree: {found}")
    best = {name: min(values) for name, values in seconds.items()}
    print(f"baseline ({args.baseline}) {best['baseline']:.2f} s, this checkout {best['this checkout']:.2f} s: "
          f"{best['baseline'] / best['this checkout']:.2f}x")
    spark.stop()


if __name__ == "__main__":
    main()
