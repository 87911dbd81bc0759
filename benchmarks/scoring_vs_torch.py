"""Benchmark: the Spark scoring job against a bare in-process torch matmul + topk over the same embeddings.

Generates a lake with U users x V items (random H-dim item embeddings, random sequences, one click per
user on ds, some purchases), registers a model whose encoder sums the item embeddings of the sequence
(so the model part is trivial and the work is the ranking), then times in one run:

- bare: user vectors precomputed in-process, then per chunk ``scores = U @ E.T``, padding masked,
  ``torch.topk`` (all of this process's torch threads);
- job: ``scoring.score.score`` end to end (model fetch, inputs, executors scoring, table write, summary),
  cold (the session's first: its Python workers start, import torch and load the model) and warm;
- the nightly's cold start: ``spark-submit jobs/score.py`` in its own process, as the DAG runs it (JVM,
  session, driver imports, workers, model: everything a night pays), its driver's JVM started with the
  class archive (lake/class_archive.py) and without, alternated;
- where the job's time goes: driver preparation, scoring without writing (Spark ``noop`` sink), the table
  write alone (the written partition rewritten from the table), and the job's final summary.

    .venv/bin/python benchmarks/scoring_vs_torch.py                      # 100K users x 20K items, H=64
    .venv/bin/python benchmarks/scoring_vs_torch.py --users 20000 --items 5000 --master 'local[2]'
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from lake import Config, Lake, load_config  # noqa: E402 - after the repo is importable
from lake.schemas import spec  # noqa: E402
from lake.vocab import vocab_fingerprint  # noqa: E402

DS = "2018-01-31"
AT = dt.datetime(2018, 1, 31, 12, tzinfo=dt.UTC)
ITEM_ID_BASE = 1_000_000


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--items", type=int, default=20_000)
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--top-n", type=int, default=50)
    parser.add_argument("--seq-len", type=int, default=20, help="Items per user sequence (and model max_len).")
    parser.add_argument("--no-history", type=float, default=0.01,
                        help="Share of active users without a sequence (popularity fallback).")
    parser.add_argument("--master", default="local[2]")
    parser.add_argument("--work", type=Path, default=Path("/tmp/seqrec-bench-scoring"))
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--submit-rounds", type=int, default=2,
                        help="spark-submit runs with and without the class archive, alternated.")
    return parser.parse_args()


def _timed(label: str, action: Callable[[], Any], times: dict[str, float]) -> Any:
    started = time.perf_counter()
    result = action()
    times[label] = time.perf_counter() - started
    print(f"  {label:<44} {times[label]:8.2f} s", flush=True)
    return result


class SumOfItems:
    """u = sum of item embeddings over the sequence (padding row 0 is zero): a trivial encoder."""

    @staticmethod
    def export(embeddings: Any, max_len: int) -> Any:
        import torch

        class Module(torch.nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.items = torch.nn.Embedding.from_pretrained(embeddings)

            def forward(self, items, behaviours, categories, gap_buckets):  # [B, L] each -> [B, H]
                return self.items(items).sum(dim=1)

        example = tuple(torch.zeros(2, max_len, dtype=torch.int64) + k for k in range(4))
        batch = torch.export.Dim("batch")
        return torch.export.export(Module(), example, dynamic_shapes=({0: batch},) * 4)


def machine() -> str:
    """This host in a few words, with its load at the start (the figures depend on it)."""
    return (f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
            f"load average {os.getloadavg()[0]:.1f}")


def fresh_bench(args: argparse.Namespace) -> Config:
    """An emptied ``args.work`` for the lake, MLflow store and reports; Spark on ``args.master``; lists of
    ``args.top_n``."""
    shutil.rmtree(args.work, ignore_errors=True)
    args.work.mkdir(parents=True)
    return load_config(environ={}).with_overrides({
        "lake": {"root": str(args.work / "lake"), "mlflow_tracking_uri": f"sqlite:///{args.work / 'mlflow.db'}",
                 "mlflow_artifact_root": str(args.work / "artifacts"), "reports_dir": str(args.work / "reports")},
        "spark": {"master": args.master, "conf": {"spark.driver.memory": "6g", "spark.sql.shuffle.partitions": "4",
                                                  "spark.ui.enabled": "false"}},
        "serve": {"top_n": args.top_n},
    })


def generate(args: argparse.Namespace, config: Config) -> tuple[np.ndarray, np.ndarray, dict]:
    """Write the lake tables and register the model; returns (item embeddings [V, H], sequences [U, L], meta)."""
    import mlflow
    import torch

    from lake.artifacts import save
    from lake.registry import approve, experiment_id, promote, register, tracking

    rng = np.random.default_rng(args.seed)
    size = args.items + 2  # indexes 0 (padding) and 1 (unknown) have no item
    embeddings = rng.standard_normal((size, args.dim), dtype=np.float32) / np.sqrt(args.dim)
    embeddings[:2] = 0
    lake = Lake.from_config(config)
    indexes = np.arange(2, size, dtype=np.int32)
    vocab = pa.table({"item_id": ITEM_ID_BASE + indexes.astype(np.int64), "item_index": indexes,
                      "first_seen_ds": ["2018-01-01"] * args.items}, schema=spec("item_vocab").schema)
    lake.write("item_vocab", vocab, mode="overwrite")

    users = np.arange(1, args.users + 1, dtype=np.int64)
    # Zipf-like popularity so the fallback and exclusions see a realistic head of popular items.
    weights = 1.0 / np.arange(1, args.items + 1) ** 0.8
    weights /= weights.sum()
    sequences = rng.choice(indexes, size=(args.users, args.seq_len), p=weights).astype(np.int32)
    with_history = rng.random(args.users) >= args.no_history
    flat = pa.array(sequences[with_history].ravel())
    offsets = pa.array(np.arange(0, len(flat) + 1, args.seq_len, dtype=np.int32))
    as_lists = pa.ListArray.from_arrays(offsets, flat)
    ones = pa.ListArray.from_arrays(offsets, pa.array(np.ones(len(flat), dtype=np.int32)))
    kept = int(with_history.sum())
    lake.write("user_sequences", pa.table({
        "user_id": users[with_history], "items": as_lists, "behaviours": ones, "categories": ones,
        "gap_buckets": ones, "length": np.full(kept, args.seq_len, dtype=np.int32),
        "truncated": np.zeros(kept, dtype=np.int32), "last_event_time": pa.array([AT] * kept, spec(
            "events").schema.field("event_time").type), "ds": [DS] * kept,
    }, schema=spec("user_sequences").schema), partition=DS)

    last_items = sequences[:, -1].astype(np.int64) + ITEM_ID_BASE
    buyers = rng.random(args.users) < 0.2
    event_users = np.concatenate([users, users[buyers]])
    event_items = np.concatenate([last_items, last_items[buyers]])
    behaviour = ["click"] * args.users + ["purchase"] * int(buyers.sum())
    lake.write("events", pa.table({
        "user_id": event_users, "item_id": event_items, "category_id": np.ones(len(event_users), dtype=np.int64),
        "behaviour": behaviour, "event_time": pa.array([AT] * len(event_users), spec("events").schema.field(
            "event_time").type), "source_file": ["bench"] * len(event_users), "drop_id": ["bench"] * len(event_users),
        "ds": [DS] * len(event_users),
    }, schema=spec("events").schema), partition=DS)

    folder = args.work / "model"
    table = torch.from_numpy(embeddings)
    save(folder, SumOfItems.export(table, args.seq_len), table, {"items.weight": table})
    meta = {"model_type": "sum_of_items", "max_len": args.seq_len, "item_vocab_size": size,
            "vocab_fingerprint": vocab_fingerprint(vocab, size), "trained_ds": DS}
    with tracking(config):
        run = mlflow.MlflowClient().create_run(experiment_id(config))
    version = register(config, folder, meta, run_id=run.info.run_id).version
    approve(config, version, DS)
    promote(config, version)
    padded = np.where(with_history[:, None], sequences, 0)
    return embeddings, padded, meta


def bare_torch(embeddings: np.ndarray, sequences: np.ndarray, top_n: int, chunk: int) -> dict[str, float]:
    """In-process: encode (untimed), then matmul + mask + topk per chunk of users, all torch threads."""
    import torch

    items = torch.from_numpy(embeddings)  # [V, H]
    users = items[torch.from_numpy(sequences.astype(np.int64))].sum(dim=1)  # [U, H]
    times: dict[str, float] = {}

    def rank() -> None:
        with torch.inference_mode():
            for start in range(0, users.shape[0], chunk):
                scores = users[start:start + chunk] @ items.T  # [B, V]
                scores[:, :2] = float("-inf")
                torch.topk(scores, top_n, dim=1)

    _timed(f"bare torch matmul + topk ({torch.get_num_threads()} threads)", rank, times)
    return times


def main() -> None:
    args = _arguments()
    config = fresh_bench(args)
    print(f"scoring benchmark: {args.users:,} users x {args.items:,} items, H={args.dim}, N={args.top_n}, "
          f"L={args.seq_len}; {machine()}", flush=True)
    started = time.perf_counter()
    embeddings, sequences, _ = generate(args, config)
    print(f"  generated lake and model in {time.perf_counter() - started:.1f} s", flush=True)

    from lake.spark import get_spark
    from scoring.score import prepare_scoring, score
    from scoring.settings import ScoreSettings

    times: dict[str, float] = {}
    times.update(bare_torch(embeddings, sequences, args.top_n, ScoreSettings.from_config(config).users_per_batch))
    spark = _timed("spark session start", lambda: get_spark(config), {})
    lake = Lake.from_config(config, spark=spark)
    result = _timed("job, cold (first run: workers import torch)", lambda: score(config, DS, spark=spark), times)
    result = _timed("job, warm (second run)", lambda: score(config, DS, spark=spark), times)
    assert result.rows == result.users * args.top_n - _short_rows(lake, args.top_n), "lists are full"

    print("  where the job's time goes (each phase on its own):", flush=True)
    prepared = _timed("  driver: model, inputs, catalogue, broadcast", lambda: prepare_scoring(
        config, DS, spark=spark), times)
    _timed("  executors: scoring, no write (noop sink)", lambda: prepared.recommendations.write.format(
        "noop").mode("overwrite").save(), times)
    prepared.release()
    written = lake.read_spark("recommendations", partition=DS)
    _timed("  write: the same rows rewritten to the table", lambda: lake.write(
        "recommendations", written, partition=DS), times)
    from pyspark.sql import functions as F

    _timed("  summary read-back", lambda: lake.read_spark("recommendations", partition=DS).agg(
        F.count(F.lit(1)), F.sum(F.col("short_list").cast("long"))).first(), times)

    bare = times[next(k for k in times if k.startswith("bare"))]
    job = times["job, warm (second run)"]
    write = times["  write: the same rows rewritten to the table"]
    print(f"result: {result.users:,} users, {result.rows:,} rows "
          f"({result.popular_users:,} popularity fallback, {result.short_lists:,} short lists)")
    print(f"job (warm) {job:.2f} s / bare torch {bare:.2f} s = {job / bare:.2f}x; "
          f"job / (bare + write {write:.2f} s) = {job / (bare + write):.2f}x (goal <= 2x)")
    cold = times["job, cold (first run: workers import torch)"]
    # Alternated, so a drift in the machine's speed touches both alike.
    nightly = {with_archive: [] for with_archive in (False, True)}
    for _ in range(args.submit_rounds):
        for with_archive in nightly:
            nightly[with_archive].append(_spark_submit_seconds(args, config, with_archive=with_archive))
    plain, archived = (min(nightly[with_archive]) for with_archive in (False, True))
    print(f"job (cold) {cold:.2f} s = {cold / (bare + write):.2f}x bare + write; spark-submit jobs/score.py "
          f"(the nightly's cold start, JVM included; best of {args.submit_rounds}): {archived:.2f} s = "
          f"{archived / (bare + write):.2f}x with the class archive, {plain:.2f} s = {plain / (bare + write):.2f}x "
          f"without (the archive saves {plain - archived:.2f} s, {plain / archived:.2f}x)")


def _spark_submit_seconds(args: argparse.Namespace, config: Config, *, with_archive: bool) -> float:
    """Wall seconds of ``spark-submit jobs/score.py`` in its own process, on the same lake and settings, its
    driver's JVM started with or without the class archive (lake/class_archive.py)."""
    import subprocess

    import yaml

    from lake.spark import submit_launch_conf

    config_file = args.work / "seqrec.yaml"
    config_file.write_text(yaml.safe_dump(json.loads(json.dumps(config.overrides)), sort_keys=False))
    bin_dir = Path(sys.executable).parent
    confs = {"spark.driver.memory": "6g", **submit_launch_conf(config, with_archive=with_archive)}
    if with_archive and "SharedArchiveFile" not in confs.get("spark.driver.extraJavaOptions", ""):
        raise SystemExit("no class archive to compare with: python -m lake.class_archive_build builds it")
    command = [str(bin_dir / "spark-submit"), "--master", args.master,
               *[part for key, value in confs.items() for part in ("--conf", f"{key}={value}")],
               str(REPO / "jobs" / "score.py"), "--ds", DS]
    env = {**os.environ, "SEQREC_CONFIG": str(config_file), "PYTHONPATH": str(REPO),
           "PYSPARK_PYTHON": sys.executable, "PATH": f"{bin_dir}:{os.environ.get('PATH', '')}"}
    started = time.perf_counter()
    subprocess.run(command, cwd=REPO, env=env, check=True, capture_output=True)
    seconds = time.perf_counter() - started
    label = f"spark-submit jobs/score.py ({'class archive' if with_archive else 'no archive'})"
    print(f"  {label:<44} {seconds:8.2f} s", flush=True)
    return seconds


def _short_rows(lake: Lake, top_n: int) -> int:
    """Rows missing from full lists (users whose rules left fewer than N items)."""
    table = lake.read("recommendations", partition=DS, columns=["user_id", "short_list"])
    import pyarrow.compute as pc

    short = table.filter(table.column("short_list"))
    counts = short.group_by("user_id").aggregate([("user_id", "count")])
    return int(top_n * counts.num_rows - pc.sum(counts.column("user_id_count")).as_py()) if counts.num_rows else 0


if __name__ == "__main__":
    main()
