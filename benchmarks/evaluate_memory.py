"""Evaluation's memory against the number of users: peak RSS of `evaluate` at each size, as a ratio to the first.

For each --users size, writes a generated `train_examples` partition (every user one test row of --length
inputs over a catalogue of --items items) to a fresh lake under --work, then evaluates a small random model
and the baselines on it (the real evaluate code: evaluation.evaluate.evaluate_on_lake, every protocol,
both targets) in a fresh process, and reports how far the evaluation lifts that process's RSS above what it
held just before, and the wall time. Evaluation streams rows from the Delta snapshot in batches, so the
peak should stay roughly flat while users grow.

    .venv/bin/python benchmarks/evaluate_memory.py --work /tmp/evalmem --users 100000,1000000
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DAY, DS = 17503, "2017-12-03"

_EVALUATE = """
import gc, json, sys, time, torch
from lake import Lake, load_config
from lake.serving import ServingRules
from evaluation.evaluate import evaluate_on_lake
from evaluation.settings import EvaluateSettings

def status_mib(key):
    return next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith(key)) / 1024

root, items, hidden = sys.argv[1], int(sys.argv[2]), 64
generator = torch.Generator().manual_seed(0)

class Card:
    version = "1"

class RandomModel:
    card = Card()
    meta = {"max_len": 50, "item_vocab_size": items}
    item_embeddings = torch.randn(items, hidden, generator=generator)
    def encode(self, items, behaviours, categories, gap_buckets):
        return self.item_embeddings[items].mean(dim=1)

config = load_config(environ={}).with_overrides({"lake": {"root": root}})
lake = Lake.from_config(config)
gc.collect()
before = status_mib("VmRSS:")
started = time.monotonic()
settings, rules = EvaluateSettings.from_config(config), ServingRules.from_config(config)
[evaluation], _ = evaluate_on_lake(lake, [RandomModel()], ds=sys.argv[3], split="test", settings=settings,
                                   rules=rules)
print(json.dumps({"users": evaluation.users, "seconds": time.monotonic() - started, "rss_before_mib": before,
                  "peak_mib": status_mib("VmHWM:"), "served_ndcg@10": evaluation.metrics()["ndcg@10"]}))
"""


def write_rows(root: Path, users: int, items: int, length: int) -> None:
    """One test row per user, ``length`` random inputs each, written in slices of 100k users."""
    import numpy as np
    import pyarrow as pa

    from lake import Lake, load_config
    from lake.schemas import spec

    lake = Lake.from_config(load_config(environ={}).with_overrides({"lake": {"root": str(root)}}))
    rng = np.random.default_rng(0)

    def lists(values: np.ndarray) -> pa.ListArray:
        offsets = np.arange(0, values.size + 1, values.shape[1], dtype=np.int32)
        return pa.ListArray.from_arrays(offsets, values.ravel())

    for start in range(0, users, 100_000):
        count = min(100_000, users - start)
        steps = rng.integers(2, items, size=(count, length + 1)).astype(np.int32)
        targets = np.zeros((count, length), dtype=np.int32)
        targets[:, -1] = steps[:, -1]
        behaviours = rng.integers(1, 6, size=(count, length)).astype(np.int32)
        lake.write("train_examples", pa.table({
            "user_id": pa.array(np.arange(start, start + count), pa.int64()), "split": ["test"] * count,
            "items": lists(steps[:, :-1]), "behaviours": lists(behaviours), "categories": lists(behaviours + 1),
            "gap_buckets": lists(np.ones_like(behaviours)), "days": lists(np.full_like(behaviours, DAY)),
            "targets": lists(targets), "target_behaviours": lists((targets > 0).astype(np.int32)),
            "ds": [DS] * count}, schema=spec("train_examples").schema), partition=DS,
            mode="append" if start else "replace_partition")
    lake.write("item_vocab", pa.table({"item_id": pa.array(np.arange(items), pa.int64()),
                                       "item_index": pa.array(np.arange(items), pa.int32()),
                                       "first_seen_ds": [DS] * items}), mode="overwrite")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--users", default="100000,1000000", help="Comma-separated sizes; the first is the baseline.")
    parser.add_argument("--items", type=int, default=20_000)
    parser.add_argument("--length", type=int, default=50)
    args = parser.parse_args()
    results = []
    for users in (int(n) for n in args.users.split(",")):
        root = args.work.resolve() / f"users-{users}"
        started = time.monotonic()
        write_rows(root, users, args.items, args.length)
        written = time.monotonic() - started
        done = subprocess.run([sys.executable, "-c", _EVALUATE, str(root), str(args.items), DS], cwd=REPO,
                              capture_output=True, text=True, check=False)
        if done.returncode:
            raise SystemExit(done.stderr[-3000:])
        result = json.loads(done.stdout.strip().splitlines()[-1])
        result |= {"lifted_mib": result["peak_mib"] - result["rss_before_mib"], "write_seconds": written}
        results.append(result)
        base = results[0]
        print(f"{users:>9,} users: evaluation lifted RSS by {result['lifted_mib']:.0f} MiB "
              f"(x{result['lifted_mib'] / base['lifted_mib']:.2f} of {base['users']:,} users), "
              f"{result['seconds']:.0f} s (x{result['seconds'] / base['seconds']:.2f}), "
              f"process peak {result['peak_mib']:.0f} MiB", flush=True)
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    main()
