"""Large catalogues: exact ranking against a million items, and the approximate index (serve.retrieval: ivf).

In one process, with the functions scoring's executors run (lake.serving.served_top_of_users, lake.retrieval):
item embeddings [V, H] and a sample of user vectors, the serving rules on (blocked items, a few excluded items
per user), top N. It times

- exact: every user against every item, in chunks of score.users_per_batch users;
- ivf: building the index (once per executor process) and serving the same users from it, per ivf_probe;

and measures each ivf list's recall@N against the exact list (the share of the exact list's items it holds),
then projects a night: seconds for --night-users users on one executor process of this machine's cores.

Embeddings: `clustered` (items around --clusters centres, users near one of them: what trained embeddings of
a catalogue with categories look like) and `gaussian` (no structure: the worst case for a clustered index).

    .venv/bin/python benchmarks/large_catalogue.py                       # 1M items, H=64, N=50
    .venv/bin/python benchmarks/large_catalogue.py --items 200000 --users 2048 --probes 8,32
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import torch  # noqa: E402 - after the repo is importable

from lake.retrieval import ItemIndex, ivf_lists_for  # noqa: E402
from lake.serving import ServingRules, served_top_of_users  # noqa: E402


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=int, default=1_000_000)
    parser.add_argument("--users", type=int, default=4096, help="Users served and timed (a sample of a night).")
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--top-n", type=int, default=50)
    parser.add_argument("--users-per-batch", type=int, default=512)
    parser.add_argument("--probes", default="8,32,128", help="ivf_probe values, comma-separated.")
    parser.add_argument("--clusters", type=int, default=2000, help="Centres of the clustered embeddings.")
    parser.add_argument("--kinds", default="clustered,gaussian")
    parser.add_argument("--night-users", type=int, default=1_000_000, help="Users a night scores (projection).")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (the index itself is searched on the CPU).")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "large_catalogue.json")
    return parser.parse_args()


def embeddings(kind: str, args: argparse.Namespace) -> tuple[np.ndarray, np.ndarray]:
    """(items [V, H], users [U, H]) float32, unit-variance scale."""
    rng = np.random.default_rng(args.seed)
    shape = (args.items, args.dim)
    if kind == "gaussian":
        items = rng.standard_normal(shape, dtype=np.float32)
        users = rng.standard_normal((args.users, args.dim), dtype=np.float32)
    else:
        centres = rng.standard_normal((args.clusters, args.dim), dtype=np.float32)
        items = centres[rng.integers(0, args.clusters, args.items)] + 0.5 * rng.standard_normal(shape, dtype=np.float32)
        users = (centres[rng.integers(0, args.clusters, args.users)]
                 + 0.5 * rng.standard_normal((args.users, args.dim), dtype=np.float32))
    return items / np.sqrt(args.dim), users / np.sqrt(args.dim)


def serve_all(users: torch.Tensor, items: torch.Tensor, blocked: torch.Tensor, excluded: tuple[torch.Tensor, ...],
              rules: ServingRules, index: ItemIndex | None, chunk: int) -> tuple[torch.Tensor, float]:
    """Every user's served list, in chunks as an executor serves them; (item indexes [U, N], seconds)."""
    rows, excluded_items = excluded
    lists = []
    if users.is_cuda:
        torch.cuda.synchronize()
    started = time.perf_counter()
    with torch.inference_mode():
        for start in range(0, len(users), chunk):
            inside = (rows >= start) & (rows < start + chunk)
            lists.append(served_top_of_users(users[start:start + chunk], items, blocked, rows[inside] - start,
                                             excluded_items[inside], rules=rules, index=index)[1])
    if users.is_cuda:
        torch.cuda.synchronize()
    return torch.cat(lists), time.perf_counter() - started


def recall(found: torch.Tensor, exact: torch.Tensor) -> float:
    """Share of the exact lists' items the found lists hold."""
    hits = sum(len(set(a.tolist()) & set(b.tolist())) for a, b in zip(found.cpu(), exact.cpu(), strict=True))
    return hits / exact.numel()


def run(kind: str, args: argparse.Namespace, threads: int) -> dict[str, Any]:
    item_array, user_array = embeddings(kind, args)
    device = torch.device(args.device)
    items, users = torch.from_numpy(item_array).to(device), torch.from_numpy(user_array).to(device)
    rng = np.random.default_rng(args.seed + 1)
    blocked = np.unique(np.concatenate([[0, 1], rng.choice(args.items, args.items // 100, replace=False)]))
    excluded = (torch.from_numpy(np.repeat(np.arange(args.users), 3)).to(device),
                torch.from_numpy(rng.integers(2, args.items, 3 * args.users)).to(device))
    servable = np.ones(args.items, dtype=bool)
    servable[blocked] = False
    blocked_tensor = torch.from_numpy(blocked.astype(np.int64)).to(device)
    base = {"top_n": args.top_n, "exclude_behaviours": ("purchase",), "exclude_window_days": 90,
            "honour_deny_list": True, "max_per_category": 0}
    exact_lists, exact_seconds = serve_all(users, items, blocked_tensor, excluded, ServingRules(**base), None,
                                           args.users_per_batch)
    per_user = exact_seconds / args.users
    print(f"[{kind}] exact: {exact_seconds:.2f} s for {args.users:,} users x {args.items:,} items "
          f"= {per_user * 1e3:.2f} ms/user -> {per_user * args.night_users / 60:.1f} min for "
          f"{args.night_users:,} users", flush=True)
    result: dict[str, Any] = {"exact_seconds": exact_seconds, "exact_ms_per_user": per_user * 1e3,
                              "exact_night_minutes": per_user * args.night_users / 60, "ivf": []}
    lists = ivf_lists_for(int(servable.sum()), 0)
    started = time.perf_counter()
    index = ItemIndex.build(item_array, servable, lists=0, probe=1, threads=threads)
    build_seconds = time.perf_counter() - started
    print(f"[{kind}] ivf index: {lists} lists over {int(servable.sum()):,} items, built in {build_seconds:.1f} s",
          flush=True)
    result.update(ivf_lists=lists, ivf_build_seconds=build_seconds)
    for probe in (int(p) for p in args.probes.split(",")):
        index.index.nprobe = probe
        rules = ServingRules(**base, retrieval="ivf", ivf_probe=probe)
        found, seconds = serve_all(users, items, blocked_tensor, excluded, rules, index, args.users_per_batch)
        per_user_ivf = seconds / args.users
        night = (build_seconds + per_user_ivf * args.night_users) / 60
        row = {"probe": probe, "candidates": rules.candidates, "seconds": seconds,
               "ms_per_user": per_user_ivf * 1e3, "recall": recall(found, exact_lists),
               "speedup": exact_seconds / seconds, "night_minutes": night}
        result["ivf"].append(row)
        print(f"[{kind}] ivf probe {probe:>4}: {seconds:.2f} s ({row['speedup']:.1f}x exact), "
              f"recall@{args.top_n} {row['recall']:.4f}, night {night:.1f} min (build included)", flush=True)
    return result


def main() -> None:
    args = _arguments()
    threads = torch.get_num_threads()
    print(f"large catalogue: {args.items:,} items, H={args.dim}, top {args.top_n}, {args.users:,} users in chunks "
          f"of {args.users_per_batch}; {os.cpu_count()} cores, {threads} torch threads, {args.device}", flush=True)
    results = {kind: run(kind, args, threads) for kind in args.kinds.split(",")}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    command = " ".join([".venv/bin/python", "benchmarks/large_catalogue.py", *sys.argv[1:]])
    summary = {"command": command, "device": args.device, "items": args.items, "dim": args.dim,
               "top_n": args.top_n, "users": args.users, "night_users": args.night_users, "results": results}
    args.out.write_text(json.dumps(summary, indent=2) + "\n")
    print(f"JSON: {args.out}")


if __name__ == "__main__":
    main()
