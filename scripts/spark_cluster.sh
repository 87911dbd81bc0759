#!/usr/bin/env bash
# A Spark standalone cluster on this machine: one master and two workers, each its own JVM started with the
# pinned pyspark's spark-class, listening on loopback only. Jobs reach it as spark://127.0.0.1:7077.
#
#   scripts/spark_cluster.sh start     start the master and the workers; wait until both workers registered
#   scripts/spark_cluster.sh stop      stop them (and the executors they launched)
#   scripts/spark_cluster.sh status    print the master URL and the registered workers
#
# Settings (environment, with defaults): SEQREC_SPARK_CLUSTER_HOME (var/spark-cluster: pid files, logs, the
# workers' folders), SEQREC_SPARK_MASTER_PORT (7077; the web UIs take 8180.. unless SEQREC_SPARK_UI_PORT),
# SEQREC_SPARK_WORKERS (2), SEQREC_SPARK_WORKER_CORES (1), SEQREC_SPARK_WORKER_MEMORY (3g), SEQREC_JOB_VENV.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
JOB_VENV="${SEQREC_JOB_VENV:-$ROOT/.venv}"
CLUSTER_HOME="${SEQREC_SPARK_CLUSTER_HOME:-$ROOT/var/spark-cluster}"
MASTER_PORT="${SEQREC_SPARK_MASTER_PORT:-7077}"
UI_PORT="${SEQREC_SPARK_UI_PORT:-8180}"
WORKERS="${SEQREC_SPARK_WORKERS:-2}"
WORKER_CORES="${SEQREC_SPARK_WORKER_CORES:-1}"
WORKER_MEMORY="${SEQREC_SPARK_WORKER_MEMORY:-3g}"
MASTER_URL="spark://127.0.0.1:$MASTER_PORT"

SPARK_HOME="$("$JOB_VENV/bin/python" -c 'import os, pyspark; print(os.path.dirname(pyspark.__file__))')"
export SPARK_HOME
# Every daemon, and every executor a worker launches, binds to loopback and resolves itself as 127.0.0.1.
export SPARK_LOCAL_IP=127.0.0.1 SPARK_LOCAL_HOSTNAME=127.0.0.1
# Executors run the job environment's Python (pyspark, torch, pyarrow as pinned).
export PYSPARK_PYTHON="$JOB_VENV/bin/python"
export PATH="$JOB_VENV/bin:$PATH"

daemon_pid() { local pid; pid="$(cat "$CLUSTER_HOME/$1.pid" 2>/dev/null)" && kill -0 "$pid" 2>/dev/null && echo "$pid"; }

start_daemon() {  # name, then the spark-class arguments
  local name="$1"; shift
  if daemon_pid "$name" >/dev/null; then echo "$name already runs"; return; fi
  setsid bash -c 'echo $$ > "$1"; shift; exec "$@"' _ "$CLUSTER_HOME/$name.pid" \
    "$SPARK_HOME/bin/spark-class" "$@" >"$CLUSTER_HOME/$name.log" 2>&1 </dev/null &
  local waited=0
  until [ -s "$CLUSTER_HOME/$name.pid" ] || [ "$waited" -ge 50 ]; do sleep 0.2; waited=$((waited + 1)); done
}

registered_workers() {
  grep -c "Registering worker" "$CLUSTER_HOME/master.log" 2>/dev/null || true
}

cluster_start() {
  mkdir -p "$CLUSTER_HOME"
  start_daemon master org.apache.spark.deploy.master.Master \
    --host 127.0.0.1 --port "$MASTER_PORT" --webui-port "$UI_PORT"
  for i in $(seq 1 "$WORKERS"); do
    mkdir -p "$CLUSTER_HOME/worker-$i"
    start_daemon "worker-$i" org.apache.spark.deploy.worker.Worker \
      --host 127.0.0.1 --cores "$WORKER_CORES" --memory "$WORKER_MEMORY" \
      --work-dir "$CLUSTER_HOME/worker-$i" --webui-port "$((UI_PORT + i))" "$MASTER_URL"
  done
  local waited=0
  until [ "$(registered_workers)" -ge "$WORKERS" ]; do
    for name in master $(seq -f "worker-%g" 1 "$WORKERS"); do
      daemon_pid "$name" >/dev/null || { echo "$name exited during start-up; the end of its log:" >&2
                                         tail -n 30 "$CLUSTER_HOME/$name.log" >&2; cluster_stop; return 1; }
    done
    [ "$waited" -lt 240 ] || { echo "workers did not register within 120 s" >&2; cluster_stop; return 1; }
    sleep 0.5; waited=$((waited + 1))
  done
  echo "Spark standalone cluster up: $MASTER_URL, $WORKERS workers x $WORKER_CORES core(s), logs in $CLUSTER_HOME"
}

cluster_stop() {
  local name pid
  for name in $(cd "$CLUSTER_HOME" 2>/dev/null && ls -- *.pid 2>/dev/null | sed 's/\.pid$//'); do
    if pid="$(daemon_pid "$name")"; then
      # the daemon's session holds the executors a worker launched, too
      kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
      for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
      kill -KILL -- "-$pid" 2>/dev/null || true
    fi
    rm -f "$CLUSTER_HOME/$name.pid"
  done
  echo "Spark standalone cluster stopped"
}

cluster_status() {
  if pid="$(daemon_pid master)"; then
    echo "master $MASTER_URL (pid $pid); workers registered: $(registered_workers)"
  else
    echo "no Spark standalone cluster runs (SEQREC_SPARK_CLUSTER_HOME=$CLUSTER_HOME)"; return 1
  fi
}

case "${1:-}" in
  start) cluster_start ;;
  stop) cluster_stop ;;
  status) cluster_status ;;
  *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
