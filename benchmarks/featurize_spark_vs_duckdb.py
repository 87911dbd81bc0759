"""Benchmark: the Spark featurize stage against the same featurization in DuckDB SQL, on the same events.

Generates N synthetic events (sources.synthetic: power-law items, sessions, funnel, bots,
duplicates), writes them straight into the ``events`` table of a fresh lake (bypassing ingest, which is
not what is measured), then times in one run, each from the same Parquet files:

- spark: ``featurization.featurize.featurize`` for the last day, end to end (cleaning, vocabularies,
  user_sequences, train_examples and the small tables, all committed to Delta); the session is started
  before the clock starts;
- duckdb: the same steps in DuckDB SQL (same window-function cleaning, exact quantile, iterative k-core,
  vocabularies, sequences, leave-one-out rows), written as zstd Parquet files;

then checks that both built the same user_sequences and train_examples, and prints both wall times and
their ratio. DuckDB gets as many threads as Spark has local cores.

    .venv/bin/python benchmarks/featurize_spark_vs_duckdb.py --events 1000000
    .venv/bin/python benchmarks/featurize_spark_vs_duckdb.py --events 10000000 --driver-memory 8g
"""

from __future__ import annotations

import argparse
import datetime as dt
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from featurization.featurize import FeaturizeSettings, featurize  # noqa: E402
from lake import Config, Lake, load_config  # noqa: E402
from lake.schemas import BEHAVIOUR_INDEX, spec  # noqa: E402
from sources.synthetic import GenerateSettings, day_starts, generate_events  # noqa: E402

TAOBAO_TO_CANONICAL = {"pv": "click", "fav": "favourite", "cart": "cart", "buy": "purchase"}


def write_events(config: Config, events: int, days: int, seed: int) -> tuple[str, int]:
    """Generated events -> the ``events`` table (all days, one commit); returns the last ds and the rows."""
    settings = GenerateSettings.from_config(config.with_overrides(
        {"generate": {"events": events, "days": days, "seed": seed, "malformed_rows": 0}}))
    timezone = config.lake.timezone
    raw, _ = generate_events(settings, timezone)
    starts = day_starts(settings.start_ds, settings.days, timezone)
    seconds = raw.column("timestamp").to_numpy()
    day = np.searchsorted(starts, seconds, side="right") - 1
    first = dt.date.fromisoformat(settings.start_ds)
    day_names = np.array([(first + dt.timedelta(days=d)).isoformat() for d in range(settings.days)])
    behaviour = pc.cast(raw.column("behaviour"), pa.string())
    for raw_name, canonical in TAOBAO_TO_CANONICAL.items():
        behaviour = pc.if_else(pc.equal(behaviour, raw_name), canonical, behaviour)
    table = pa.table({
        "user_id": raw.column("user_id"),
        "item_id": raw.column("item_id"),
        "category_id": raw.column("category_id"),
        "behaviour": behaviour,
        "event_time": pa.array(seconds * 1_000_000, pa.int64()).cast(pa.timestamp("us", tz="UTC")),
        "source_file": pa.array(["generated"] * len(raw), pa.string()),
        "drop_id": pa.array(["generated"] * len(raw), pa.string()),
        "ds": pa.array(day_names[day]),
    }, schema=spec("events").schema)
    Lake.from_config(config).write("events", table, mode="overwrite")
    return str(day_names[-1]), table.num_rows


def duckdb_featurize(files: list[str], ds: str, settings: FeaturizeSettings, out: Path, threads: int) -> dict:
    """featurize's steps in DuckDB SQL (leave-one-out, empty vocabularies), written as Parquet under ``out``."""
    import duckdb

    out.mkdir(parents=True, exist_ok=True)
    # Spill to disk rather than fail when a step outgrows memory (the Spark JVM of the same run still holds
    # its heap); insertion order is irrelevant to every step here.
    db = duckdb.connect(config={"threads": threads, "memory_limit": "12GB", "preserve_insertion_order": False,
                                "temp_directory": str(out / "spill")})
    L = settings.max_len
    behaviour = "CASE behaviour " + " ".join(f"WHEN '{b}' THEN {i}" for b, i in BEHAVIOUR_INDEX.items()) + " END"
    file_list = "[" + ", ".join(f"'{f}'" for f in files) + "]"
    db.execute(f"""
        CREATE TEMP TABLE flagged AS
        WITH ev AS (
            SELECT user_id, item_id, category_id, {behaviour} AS b, event_time AS t, ds
            FROM read_parquet({file_list}, hive_partitioning = true) WHERE ds <= '{ds}'),
        lagged AS (
            SELECT *, lag(t) OVER w AS pt, lag(category_id) OVER w AS pcat FROM ev
            WINDOW w AS (PARTITION BY user_id, item_id, b ORDER BY t, category_id))
        SELECT user_id, item_id, category_id, b, t, ds,
               coalesce(pt = t AND pcat = category_id, false) AS dup,
               NOT coalesce(pt = t AND pcat = category_id, false)
                 AND coalesce(epoch_us(t) - epoch_us(pt) <= {settings.burst_window_seconds * 1_000_000}, false)
                 AND {settings.burst_window_seconds} > 0 AS burst
        FROM lagged""")
    counts = db.execute("SELECT count(*), count_if(dup), count_if(burst) FROM flagged").fetchone()
    db.execute("CREATE TEMP TABLE collapsed AS SELECT * EXCLUDE (dup, burst) FROM flagged WHERE NOT dup AND NOT burst")
    db.execute("CREATE TEMP TABLE user_days AS SELECT user_id, ds, count(*) AS n FROM collapsed GROUP BY ALL")
    threshold = db.execute(
        f"SELECT greatest(quantile_cont(n, {settings.abnormal_quantile}), {settings.abnormal_min_events_per_day})"
        " FROM user_days").fetchone()[0]
    db.execute(f"""CREATE TEMP TABLE abnormal AS SELECT user_id, sum(n) AS events, max(n) AS max_events_per_day,
                   {threshold}::DOUBLE AS threshold FROM user_days GROUP BY user_id HAVING max(n) > {threshold}""")
    db.execute("""CREATE TEMP TABLE kept AS SELECT * FROM collapsed
                  WHERE user_id NOT IN (SELECT user_id FROM abnormal)""")
    db.execute("""CREATE TEMP TABLE pairs AS SELECT user_id, item_id, count(*) AS events, min(t) AS first_time
                  FROM kept GROUP BY ALL""")
    count = db.execute("SELECT count(*) FROM pairs").fetchone()[0]
    rounds = 0
    while rounds < settings.kcore_max_iterations:
        db.execute(f"""CREATE OR REPLACE TEMP TABLE next_pairs AS SELECT * FROM pairs
            WHERE user_id IN (SELECT user_id FROM pairs GROUP BY ALL
                              HAVING sum(events) >= {settings.kcore_user_min_events})
              AND item_id IN (SELECT item_id FROM pairs GROUP BY ALL
                              HAVING sum(events) >= {settings.kcore_item_min_events})""")
        next_count = db.execute("SELECT count(*) FROM next_pairs").fetchone()[0]
        if next_count == count:
            break
        db.execute("CREATE OR REPLACE TEMP TABLE pairs AS SELECT * FROM next_pairs")
        count, rounds = next_count, rounds + 1

    db.execute("""CREATE TEMP TABLE item_vocab AS
        SELECT item_id, (1 + row_number() OVER (ORDER BY min(first_time), item_id))::INTEGER AS item_index
        FROM pairs GROUP BY item_id""")
    db.execute("""CREATE TEMP TABLE category_vocab AS
        SELECT category_id, (1 + row_number() OVER (ORDER BY min(t), category_id))::INTEGER AS category_index
        FROM flagged WHERE NOT dup GROUP BY category_id""")
    db.execute(f"""CREATE TEMP TABLE history AS
        WITH cleaned AS (
            SELECT k.* FROM kept k
            WHERE user_id IN (SELECT user_id FROM pairs) AND item_id IN (SELECT item_id FROM pairs)),
        ordered AS (
            SELECT user_id, t, b, item_index, category_index, item_id, category_id,
                   lag(t) OVER w AS pt, lead(item_index) OVER w AS next_item,
                   row_number() OVER w AS rn, count(*) OVER (PARTITION BY user_id) AS n
            FROM cleaned JOIN item_vocab USING (item_id) JOIN category_vocab USING (category_id)
            WINDOW w AS (PARTITION BY user_id ORDER BY t, b, item_id, category_id))
        SELECT user_id, t, b, item_index, category_index, next_item, rn, n,
               CASE WHEN pt IS NULL THEN 1 ELSE least(
                   length(bin((epoch_us(t) - epoch_us(pt)) // 1000000 + 1)) + 1, {settings.max_gap_bucket})
               END::INTEGER AS gap
        FROM ordered WHERE rn > n - {L + 3}""")
    # One ordered list of structs per group, then its fields (as Spark's sorted collect_list of structs):
    # five separately ordered list() aggregates sort five times and ran out of 19 GiB at 10M events.
    step_struct = "list({'i': item_index, 'b': b, 'c': category_index, 'g': gap, 'rn': rn} ORDER BY rn)"
    fields = ("list_transform(s, x -> x.i) AS items, list_transform(s, x -> x.b) AS behaviours, "
              "list_transform(s, x -> x.c) AS categories, list_transform(s, x -> x.g) AS gap_buckets")
    copy = "(FORMAT parquet, COMPRESSION zstd)"
    for folder in ("user_sequences", "train_examples"):
        (out / folder).mkdir(exist_ok=True)
    db.execute(f"""COPY (SELECT user_id, {fields}, length, truncated, last_event_time, '{ds}' AS ds FROM (
                          SELECT user_id, {step_struct} AS s, any_value(n)::INTEGER AS length,
                                 greatest(any_value(n) - {L}, 0)::INTEGER AS truncated, max(t) AS last_event_time
                          FROM history WHERE rn > n - {L} GROUP BY user_id))
                   TO '{out / "user_sequences" / "part.parquet"}' {copy}""")

    def rows(split: str, where: str, target: str) -> str:
        struct = step_struct.replace("'rn': rn", f"'t': {target}")
        return (f"SELECT user_id, '{split}' AS split, {fields}, list_transform(s, x -> x.t) AS targets, "
                f"'{ds}' AS ds FROM (SELECT user_id, {struct} AS s FROM history WHERE {where} GROUP BY user_id)")

    # One split at a time: the three aggregations at once need three times the memory.
    for split, where, target in (
        ("train", f"(n >= 4 AND rn BETWEEN greatest(1, n - 2 - {L}) AND n - 3) OR (n = 2 AND rn = 1)", "next_item"),
        ("valid", f"n >= 3 AND rn BETWEEN greatest(1, n - 1 - {L}) AND n - 2",
         "CASE WHEN rn = n - 2 THEN next_item ELSE 0 END"),
        ("test", f"n >= 3 AND rn BETWEEN greatest(1, n - {L}) AND n - 1",
         "CASE WHEN rn = n - 1 THEN next_item ELSE 0 END"),
    ):
        db.execute(f"COPY ({rows(split, where, target)}) TO '{out / 'train_examples' / (split + '.parquet')}' {copy}")
    db.execute(f"""COPY (SELECT item_index, coalesce(category_index, 1) AS category_index, '{ds}' AS ds
                        FROM item_vocab LEFT JOIN (
                            SELECT item_id, arg_max(category_id, (t, category_id)) AS category_id
                            FROM flagged WHERE NOT dup GROUP BY item_id) USING (item_id)
                        LEFT JOIN category_vocab USING (category_id))
                   TO '{out / 'item_categories.parquet'}' {copy}""")
    for table in ("item_vocab", "category_vocab", "abnormal"):
        db.execute(f"COPY {table} TO '{out / (table + '.parquet')}' {copy}")
    return {"rows": counts[0], "duplicates": counts[1], "bursts": counts[2], "kcore_rounds": rounds}


def same_output(lake: Lake, ds: str, duck: Path) -> bool:
    """Whether Spark's and DuckDB's user_sequences and train_examples hold the same rows."""
    import pyarrow.parquet as pq

    keys = {"user_sequences": ["user_id"], "train_examples": ["user_id", "split"]}
    for name, key in keys.items():
        columns = [*key, "items", "behaviours", "categories", "gap_buckets"] + (
            ["targets"] if name == "train_examples" else ["length", "truncated"])
        spark_rows = lake.read(name, partition=ds, columns=columns).sort_by([(k, "ascending") for k in key])
        duck_rows = pq.read_table(duck / name, columns=columns).sort_by([(k, "ascending") for k in key])
        if spark_rows.num_rows != duck_rows.num_rows:
            print(f"  {name}: {spark_rows.num_rows} rows (spark) vs {duck_rows.num_rows} (duckdb)")
            return False
        for column in columns:
            if spark_rows.column(column).to_pylist() != duck_rows.column(column).to_pylist():
                print(f"  {name}.{column} differs")
                return False
    return True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--days", type=int, default=9)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--master", default="local[2]")
    parser.add_argument("--driver-memory", default="6g")
    parser.add_argument("--shuffle-partitions", default="8")
    parser.add_argument("--work", type=Path, default=Path("/tmp/featurize-bench"))
    args = parser.parse_args()

    if args.work.exists():
        shutil.rmtree(args.work)
    config = load_config(environ={}).with_overrides({
        "lake": {"root": str(args.work / "lake")},
        "spark": {"master": args.master, "conf": {"spark.driver.memory": args.driver_memory,
                                                  "spark.sql.shuffle.partitions": args.shuffle_partitions}},
    })
    started = time.perf_counter()
    ds, rows = write_events(config, args.events, args.days, args.seed)
    print(f"events: {rows:,} rows over {args.days} days written in {time.perf_counter() - started:.1f}s; ds={ds}")

    from lake.spark import get_spark

    spark = get_spark(config)
    threads = spark.sparkContext.defaultParallelism
    lake = Lake.from_config(config, spark=spark)
    started = time.perf_counter()
    result = featurize(config, ds, spark=spark)
    spark_seconds = time.perf_counter() - started
    print(f"spark  ({args.master}): {spark_seconds:8.1f}s  users {result.users:,}, "
          f"items {result.item_vocab_size - 2:,}, examples {result.examples}")
    for step in result.steps:
        print(f"    {step.step:<20} {step.rows_in:>12,} -> {step.rows_out:>12,}")
    print("    phases: " + ", ".join(f"{phase} {seconds:.1f}s" for phase, seconds in result.seconds.items()))

    files = lake.file_uris("events")
    started = time.perf_counter()
    duck = duckdb_featurize(files, ds, FeaturizeSettings.from_config(config), args.work / "duckdb", threads)
    duck_seconds = time.perf_counter() - started
    print(f"duckdb ({threads} threads): {duck_seconds:8.1f}s  {duck}")
    print(f"same user_sequences and train_examples: {same_output(lake, ds, args.work / 'duckdb')}")
    print(f"ratio spark / duckdb: {spark_seconds / duck_seconds:.2f}x at {rows:,} events")


if __name__ == "__main__":
    main()
