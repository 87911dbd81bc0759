"""Benchmark: publishing a day of recommendations file by file (``Lake.republish``) against writing its rows
through Spark (``Lake.write`` of the DataFrame, the way publish copied them before), on the same partition.

Writes --users users x --top-n ranked rows as one ``recommendations`` partition (--files Spark tasks, as the
scoring job would), then, alternating the two ways --rounds times in one Spark session, overwrites
``recommendations_latest`` with that partition and times each; checks that both produce the partition's rows
exactly; prints the best time of each and their ratio.

    .venv/bin/python benchmarks/publish_copy.py --users 200000
    .venv/bin/python benchmarks/publish_copy.py --users 1000000 --driver-memory 8g
"""

from __future__ import annotations

import argparse
import datetime as dt
import shutil
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from lake import Lake, load_config  # noqa: E402

DS = "2017-11-26"
SORT = [("user_id", "ascending"), ("rank", "ascending")]


def recommendations(spark, users: int, top_n: int, files: int):
    from pyspark.sql import functions as F

    row = F.col("id")
    return spark.range(users * top_n, numPartitions=files).select(
        F.floor(row / top_n).alias("user_id"), (row % top_n + 1).cast("int").alias("rank"),
        (F.pmod(F.xxhash64(row), F.lit(100_000)) + 2).alias("item_id"), (F.rand(7) * 10).cast("float").alias("score"),
        F.lit("model").alias("source"), F.lit(False).alias("short_list"), F.lit("12").alias("model_version"),
        F.lit(dt.datetime(2017, 11, 26, 2, tzinfo=dt.UTC)).alias("generated_at"), F.lit(DS).alias("ds"),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=200_000)
    parser.add_argument("--top-n", type=int, default=50)
    parser.add_argument("--files", type=int, default=2, help="Files in the partition (scoring's Spark tasks).")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--driver-memory", default="6g")
    parser.add_argument("--work", type=Path, default=Path("/tmp/publish-copy-bench"))
    args = parser.parse_args()

    shutil.rmtree(args.work, ignore_errors=True)
    config = load_config(environ={}).with_overrides({
        "lake": {"root": str(args.work / "lake")},
        "spark": {"conf": {"spark.driver.memory": args.driver_memory}},
    })
    from lake.spark import get_spark

    spark = get_spark(config)
    lake = Lake.from_config(config, spark=spark)
    version = lake.write("recommendations", recommendations(spark, args.users, args.top_n, args.files), partition=DS)
    expected = lake.read("recommendations", version=version, partition=DS).sort_by(SORT)
    print(f"recommendations ds={DS}: {expected.num_rows:,} rows in {len(lake.file_uris('recommendations'))} files")

    def through_spark_rows() -> int:
        rows = lake.read_spark("recommendations", version=version, partition=DS)
        return lake.write("recommendations_latest", rows, mode="overwrite")

    def file_by_file() -> int:
        return lake.republish("recommendations", version=version, partition=DS, into="recommendations_latest")

    best: dict[str, float] = {}
    for round_ in range(1, args.rounds + 1):
        for name, publish in (("spark rows (before)", through_spark_rows), ("file by file", file_by_file)):
            started = time.perf_counter()
            published = publish()
            seconds = time.perf_counter() - started
            same = lake.read("recommendations_latest", version=published).sort_by(SORT).equals(expected)
            print(f"round {round_}  {name:<20} {seconds:7.2f}s  same rows: {same}")
            if not same:
                raise SystemExit(f"{name} published other rows than the partition holds")
            best[name] = min(best.get(name, float("inf")), seconds)
    before, after = best["spark rows (before)"], best["file by file"]
    print(f"best of {args.rounds}: spark rows {before:.2f}s, file by file {after:.2f}s: {before / after:.2f}x faster")


if __name__ == "__main__":
    main()
