#!/usr/bin/env bash
# Does running two short Spark stages at once beat running them one after the other on this machine? The
# question behind the DAG's two-days-at-a-time backfill (docs/airflow.md, Backfill): the next day's ingest
# runs while the previous day's featurize does. Uses the shipped sample and its settings, as the sample run
# does, in a throwaway lake; prints both wall times and their ratio.
#
#   bash benchmarks/two_stages_at_once.sh
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
LAKE="$(mktemp -d)"
trap 'rm -rf "$LAKE"' EXIT
export PATH="$ROOT/.venv/bin:$PATH" SEQREC_CONFIG="$ROOT/scripts/sample_config.yaml"
export SEQREC__LAKE__ROOT="$LAKE" SEQREC__LAKE__MLFLOW_TRACKING_URI="sqlite:///$LAKE/mlflow.db"
export SEQREC__LAKE__MLFLOW_ARTIFACT_ROOT="$LAKE/mlflow-artifacts" SEQREC__LAKE__REPORTS_DIR="$LAKE/reports"
# As scripts/run_sample.sh sets it for the sample's short JVMs.
export SPARK_SUBMIT_OPTS="${SPARK_SUBMIT_OPTS:--XX:TieredStopAtLevel=1 -XX:+UseSerialGC}"
SOURCE=tests/fixtures/taobao_sample.csv

stage() {  # stage NAME DS [ARGS...]: one spark-submit, its output in the lake folder
  spark-submit --conf spark.driver.memory=2g "jobs/$1.py" --ds "$2" "${@:3}" >"$LAKE/$1-$2.log" 2>&1 \
    || { echo "$1 --ds $2 failed:" >&2; tail -n 20 "$LAKE/$1-$2.log" >&2; exit 1; }
}
now() { date +%s.%N; }

echo "preparing: ingest 2017-11-25, 2017-11-26 and featurize 2017-11-26 (also warms the disk cache)"
stage ingest 2017-11-25 --source "$SOURCE"
stage ingest 2017-11-26 --source "$SOURCE"
stage featurize 2017-11-26

start="$(now)"
stage ingest 2017-11-27 --source "$SOURCE"
stage featurize 2017-11-27
serial="$(echo "$(now) - $start" | bc)"

# The featurize reruns 2017-11-27 (it replaces its partitions), so both sides do the same work.
start="$(now)"
stage ingest 2017-11-28 --source "$SOURCE" & ingest=$!
stage featurize 2017-11-27 & featurize=$!
wait "$ingest" "$featurize"
together="$(echo "$(now) - $start" | bc)"

printf 'one after the other (ingest 2017-11-27, then featurize 2017-11-27): %6.1f s\n' "$serial"
printf 'at once (ingest 2017-11-28 with featurize 2017-11-27):            %6.1f s\n' "$together"
printf 'at once / one after the other: %.2f\n' "$(echo "$together / $serial" | bc -l)"
