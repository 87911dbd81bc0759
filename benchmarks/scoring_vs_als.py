"""Benchmark: batch top-N of the scoring job against Spark MLlib's ALS ``recommendForAllUsers``, same sizes.

The peer a Spark shop would reach for: an implicit ALS model with as many factors as the scorer's hidden size,
fitted on the same users' sequences (one sweep; its fit is reported, not compared), then
``recommendForAllUsers(N)`` over the same users and items. Both run in one Spark session on this machine
and both are timed into Spark's ``noop`` sink (all of the work, no table write), then the scoring job once
more end to end with its Delta write. The lake and model are scoring_vs_torch.py's (U users x V items,
random H-dim item embeddings, a trivial encoder, so the work is the ranking).

    .venv/bin/python benchmarks/scoring_vs_als.py                     # 100K users x 20K items, H=64, top 50
    .venv/bin/python benchmarks/scoring_vs_als.py --users 20000 --items 5000
"""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
from scoring_vs_torch import DS, _arguments, _timed, fresh_bench, generate, machine


def main() -> None:
    args = _arguments()
    config = fresh_bench(args)
    print(f"scoring vs ALS: {args.users:,} users x {args.items:,} items, rank/H={args.dim}, N={args.top_n}; "
          f"{machine()}", flush=True)
    _, sequences, _ = generate(args, config)

    from pyspark.ml.recommendation import ALS

    from lake.spark import get_spark
    from scoring.score import prepare_scoring, score

    spark = get_spark(config)
    times: dict[str, float] = {}
    _timed("scoring job, first run (workers import torch)", lambda: score(config, DS, spark=spark), {})

    def score_into_noop() -> None:
        prepared = prepare_scoring(config, DS, spark=spark)
        prepared.recommendations.write.format("noop").mode("overwrite").save()
        prepared.release()

    _timed("scoring: driver preparation + executors, noop sink", score_into_noop, times)
    _timed("scoring job end to end, Delta write", lambda: score(config, DS, spark=spark), times)

    with_history = sequences.any(axis=1)  # [U]; users without a sequence have nothing to fit
    steps = sequences.shape[1]
    pairs = pd.DataFrame({"user": np.repeat(np.arange(1, len(sequences) + 1, dtype=np.int32), steps),
                          "item": sequences.ravel().astype(np.int32)})[np.repeat(with_history, steps)]
    ratings = (spark.createDataFrame(pairs).groupBy("user", "item").count()
               .withColumnRenamed("count", "times").cache())
    ratings.count()
    als = ALS(rank=args.dim, maxIter=1, implicitPrefs=True, userCol="user", itemCol="item", ratingCol="times",
              seed=args.seed)
    model = _timed("ALS fit, 1 sweep (not compared)", lambda: als.fit(ratings), {})
    _timed(f"ALS recommendForAllUsers({args.top_n}), noop sink", lambda: model.recommendForAllUsers(
        args.top_n).write.format("noop").mode("overwrite").save(), times)

    scoring = times["scoring: driver preparation + executors, noop sink"]
    als_seconds = times[f"ALS recommendForAllUsers({args.top_n}), noop sink"]
    print(f"ALS recommendForAllUsers / scoring (both noop sink): {als_seconds / scoring:.2f}x (goal >= 2x); "
          f"scoring with its Delta write: {als_seconds / times['scoring job end to end, Delta write']:.2f}x")
    started = time.perf_counter()
    spark.stop()
    print(f"spark stopped in {time.perf_counter() - started:.1f} s")


if __name__ == "__main__":
    main()
