#!/usr/bin/env bash
# make sample-cluster: the nightly job on the shipped sample, the way a cluster deployment runs it. The same
# Airflow backfill as scripts/run_sample.sh, but every Spark stage is spark-submitted to a Spark standalone
# cluster (scripts/spark_cluster.sh: a master and two workers on loopback), and the lake is written through
# delta-spark (Delta's jars on the driver's and executors' classpath). Training stays on horovodrun: the
# cluster's two task slots are busy with the next day's featurize while a day trains (two days run at once),
# and horovod.spark needs every rank's slot at the same time; tests/cluster runs that launcher on its own.
# Its own Airflow home, lake and cluster folder, so it never touches `make sample`'s. Stops the cluster when
# done. Needs scripts/setup.sh first.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PORT="${SEQREC_SPARK_MASTER_PORT:-7077}"

export SEQREC_SPARK_CLUSTER_HOME="${SEQREC_SPARK_CLUSTER_HOME:-$ROOT/var/spark-cluster-sample}"
export AIRFLOW_HOME="${AIRFLOW_HOME:-$ROOT/var/airflow-cluster}"
export SEQREC_LAKE_ROOT="${SEQREC_LAKE_ROOT:-$ROOT/lakehouse-cluster}"
# The Airflow spark connection the DAG's SparkSubmitOperators use: the standalone master.
export AIRFLOW_CONN_SPARK_DEFAULT="{\"conn_type\": \"spark\", \"host\": \"spark://127.0.0.1\", \"port\": $PORT}"
# Every job writes through delta-spark; those started as `seqrec ...` (train, evaluate, gate) read with it.
export SEQREC__LAKE__SPARK_BACKEND=delta-spark
# Drivers listen on loopback, where the cluster's executors reach them.
export SPARK_LOCAL_IP=127.0.0.1

bash scripts/spark_cluster.sh start
trap 'bash scripts/spark_cluster.sh stop' EXIT
bash scripts/spark_cluster.sh status
bash scripts/run_sample.sh
