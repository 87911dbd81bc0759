#!/usr/bin/env bash
# The nightly job end to end on the shipped Taobao sample, the way production runs it: a local Airflow
# (scripts/airflow_env.sh: standalone, SQLite, LocalExecutor, loopback) backfills seqrec_nightly over the
# sample's days, one run per ds, each stage in date order; each run ingests, featurizes, trains when due
# (Horovod, 2 gloo processes), evaluates, gates, scores with Spark and publishes. Then it prints where the
# tables and the metrics report are, and a few recommendations. Needs scripts/setup.sh to have run (make
# sample does both).
#
# Rerunnable: days already run are run again (--reprocess-behavior completed) and every stage replaces its
# own ds partition, so tables keep exactly one partition per ds. SAMPLE_FROM / SAMPLE_TO pick other days.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
FROM="${SAMPLE_FROM:-2017-11-25}"
TO="${SAMPLE_TO:-2017-12-03}"
DAG=seqrec_nightly
START=$SECONDS

[ -x .venv/bin/seqrec ] && [ -x .venv-airflow/bin/airflow ] \
  || { echo "the environments are missing: run scripts/setup.sh (or make setup) first" >&2; exit 1; }

export SEQREC_SOURCE="${SEQREC_SOURCE:-$ROOT/tests/fixtures/taobao_sample.csv}"
# The sample's own settings (tiny data); see the comments in the file.
export SEQREC_CONFIG="${SEQREC_CONFIG:-$ROOT/scripts/sample_config.yaml}"
# Each Spark stage here is a short-lived JVM on a few thousand rows: the client JIT alone and the serial
# collector start it faster on two cores (about 20% off a small stage). Unset for production-sized data.
export SPARK_SUBMIT_OPTS="${SPARK_SUBMIT_OPTS:--XX:TieredStopAtLevel=1 -XX:+UseSerialGC}"
# No scheduled run after the sample's last day: this instance only runs the backfill.
export SEQREC_END_DATE="$TO"
# Day D+1 waits for day D at two points (dags/seqrec_nightly.py); stages here take seconds, so look often.
export SEQREC_PREVIOUS_RUN_POKE_SECONDS="${SEQREC_PREVIOUS_RUN_POKE_SECONDS:-10}"
# shellcheck source=scripts/airflow_env.sh
source "$ROOT/scripts/airflow_env.sh"

step() { printf '\n==> [%4ss] %s\n' "$((SECONDS - START))" "$1"; }
trap 'step "stopping Airflow"; airflow_stop' EXIT

step "starting Airflow (AIRFLOW_HOME=$AIRFLOW_HOME)"
airflow_start

step "waiting for the dag-processor to register $DAG"
for attempt in $(seq 1 40); do
  if airflow dags unpause "$DAG" >/dev/null 2>&1; then break; fi
  [ "$attempt" -lt 40 ] || { echo "$DAG never appeared; import errors:" >&2; airflow dags list-import-errors >&2; exit 1; }
  sleep 3
done
if airflow dags list-import-errors 2>/dev/null | grep -q "$DAG"; then
  airflow dags list-import-errors >&2; exit 1
fi
echo "$DAG is registered and unpaused"

step "backfill $FROM .. $TO (two days at a time, each stage in date order)"
# Airflow refuses a new backfill while an earlier one (e.g. of an interrupted sample run, or a half-made one
# below) is unfinished, so each attempt first cancels those.
# SQLite: the lock wait in scripts/airflow_env.sh covers a writer holding the lock, but not a transaction that
# read before the scheduler wrote and then tries to write itself: SQLite refuses that at once ("database is
# locked"). Airflow removes the half-made backfill on that error, so trying again is safe.
for attempt in 1 2 3 4 5; do
  "$SEQREC_AIRFLOW_VENV/bin/python" "$ROOT/scripts/follow_runs.py" --dag-id "$DAG" --from-date "$FROM" --to-date "$TO" \
    --cancel-unfinished-backfills
  if created="$(airflow backfill create --dag-id "$DAG" --from-date "$FROM" --to-date "$TO" \
                  --max-active-runs 2 --reprocess-behavior completed 2>&1)"; then echo "$created"; break; fi
  if [ "$attempt" -eq 5 ] || ! grep -q "database is locked" <<<"$created"; then echo "$created" >&2; exit 1; fi
  echo "the Airflow database was busy (attempt $attempt, 'database is locked'); trying again in 5 s"
  sleep 5
done

step "following the runs"
"$SEQREC_AIRFLOW_VENV/bin/python" "$ROOT/scripts/follow_runs.py" --dag-id "$DAG" --from-date "$FROM" --to-date "$TO" \
  --timeout "${SAMPLE_TIMEOUT:-3600}"

step "done: where everything is"
# The lake paths the DAG gave the jobs (dags/seqrec_nightly.py, job_env), for reading the results here.
export SEQREC__LAKE__ROOT="${SEQREC__LAKE__ROOT:-$SEQREC_LAKE_ROOT}"
export SEQREC__LAKE__MLFLOW_TRACKING_URI="${SEQREC__LAKE__MLFLOW_TRACKING_URI:-sqlite:///$SEQREC_LAKE_ROOT/mlflow.db}"
export SEQREC__LAKE__MLFLOW_ARTIFACT_ROOT="${SEQREC__LAKE__MLFLOW_ARTIFACT_ROOT:-$SEQREC_LAKE_ROOT/mlflow-artifacts}"
export SEQREC__LAKE__REPORTS_DIR="${SEQREC__LAKE__REPORTS_DIR:-$SEQREC_LAKE_ROOT/reports}"
.venv/bin/python - "$FROM" "$TO" <<'PY'
import sys
from pathlib import Path

from lake import Lake, load_config
from lake.registry import find
from lake.schemas import TABLES

first, last = sys.argv[1:3]
config = load_config()
settings = config.lake
lake = Lake.from_config(config)
print(f"lake root (Delta tables): {Path(settings.root).resolve()}")
for name, spec in TABLES.items():
    if not lake.exists(name):
        continue
    rows = lake.read(name).num_rows
    parts = lake.partitions(name) if spec.partition_by else []
    days = [p for p in parts if first <= p <= last] if spec.partition_by == "ds" else parts
    where = f", partitions {days[0]}..{days[-1]} ({len(days)})" if days else ""
    print(f"  {name:<24} {rows:>8,} rows{where}")
print(f"MLflow registry: {settings.mlflow_tracking_uri}")
champion = find(config)
print(f"champion model: version {champion.version} (trained on ds={champion.meta.get('trained_ds')})"
      if champion else "champion model: none")
reports = sorted(Path(settings.reports_dir).glob("evaluate/*/report.md"), key=lambda p: p.stat().st_mtime)
print("metrics reports:" if reports else "metrics reports: none")
for report in reports:
    print(f"  {report.resolve()}")
latest = lake.read("recommendations_latest").to_pandas()
print(f"\nrecommendations_latest: ds={latest['ds'].iloc[0]}, model version {latest['model_version'].iloc[0]}, "
      f"{latest['user_id'].nunique():,} users; the top 5 of three of them:")
for user_id, top in list(latest.sort_values(["user_id", "rank"]).groupby("user_id"))[:3]:
    items = ", ".join(f"{r.item_id} ({r.score:.3f}, {r.source})" for r in top.head(5).itertuples())
    print(f"  user {user_id}: {items}")
PY
echo "Airflow's metadata and task logs: $AIRFLOW_HOME (scripts/airflow_env.sh start, then $SEQREC_AIRFLOW_URL)"
step "sample run finished"
