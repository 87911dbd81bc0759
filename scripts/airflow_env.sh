#!/usr/bin/env bash
# The local Airflow instance that runs seqrec_nightly: scheduler, dag-processor, triggerer and api-server from
# .venv-airflow (what `airflow standalone` starts, minus the worker and trigger log servers, which bind every
# interface; the api-server reads the task logs from disk), SQLite metadata and LocalExecutor under
# AIRFLOW_HOME (default var/airflow), the API on loopback only, DAGs from the repo's dags/, no example DAGs.
# Everything under AIRFLOW_HOME is created private (umask 077); the admin password is generated into
# simple_auth_manager_passwords.json.generated (0600) and never printed.
#
#   scripts/airflow_env.sh start            start in the background and wait until healthy
#   scripts/airflow_env.sh stop             stop it and every process it started
#   scripts/airflow_env.sh status           print whether it runs, its URL and log file
#   scripts/airflow_env.sh airflow ARGS...  the Airflow CLI against this instance
#   source scripts/airflow_env.sh           the same environment in your shell (then `airflow ...`)
#
# Settings (environment, with defaults): AIRFLOW_HOME, SEQREC_AIRFLOW_PORT (8080), SEQREC_AIRFLOW_PARALLELISM
# (2 tasks at a time),
# AIRFLOW_CONN_SPARK_DEFAULT (local[2]; a cluster master goes here), and the DAG's settings it passes on to
# the tasks: SEQREC_REPO, SEQREC_JOB_VENV, SEQREC_LAKE_ROOT (default ./lakehouse), SEQREC_SOURCE, ...
# (see dags/seqrec_nightly.py).

SEQREC_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SEQREC_AIRFLOW_VENV="${SEQREC_AIRFLOW_VENV:-$SEQREC_ROOT/.venv-airflow}"
SEQREC_AIRFLOW_PORT="${SEQREC_AIRFLOW_PORT:-8080}"

export AIRFLOW_HOME="${AIRFLOW_HOME:-$SEQREC_ROOT/var/airflow}"
export PATH="$SEQREC_AIRFLOW_VENV/bin:$PATH"   # the components are started as `airflow ...`
export AIRFLOW__CORE__DAGS_FOLDER="${AIRFLOW__CORE__DAGS_FOLDER:-$SEQREC_ROOT/dags}"
export AIRFLOW__CORE__LOAD_EXAMPLES=False
export AIRFLOW__CORE__EXECUTOR=LocalExecutor
export AIRFLOW__CORE__PARALLELISM="${SEQREC_AIRFLOW_PARALLELISM:-2}"
# SQLite takes one writer at a time and Python's sqlite3 gives up after 5 s, which a busy scheduler on 2
# cores exceeds ("database is locked" from `airflow backfill create`): wait up to 60 s instead, and use the
# write-ahead log (set in airflow_start) so readers never block the writer.
SEQREC_AIRFLOW_DB="$AIRFLOW_HOME/airflow.db"
export AIRFLOW__DATABASE__SQL_ALCHEMY_CONN="sqlite:///$SEQREC_AIRFLOW_DB?timeout=60"
export AIRFLOW__API__HOST=127.0.0.1
export AIRFLOW__API__PORT="$SEQREC_AIRFLOW_PORT"
export AIRFLOW__API__BASE_URL="http://127.0.0.1:$SEQREC_AIRFLOW_PORT"
export AIRFLOW__CORE__EXECUTION_API_SERVER_URL="http://127.0.0.1:$SEQREC_AIRFLOW_PORT/execution/"
SEQREC_LOCAL_SPARK='{"conn_type": "spark", "host": "local[2]"}'
export AIRFLOW_CONN_SPARK_DEFAULT="${AIRFLOW_CONN_SPARK_DEFAULT:-$SEQREC_LOCAL_SPARK}"
# What the DAG's tasks read (dags/seqrec_nightly.py): where the jobs, their environment and the lake are.
export SEQREC_REPO="${SEQREC_REPO:-$SEQREC_ROOT}"
export SEQREC_JOB_VENV="${SEQREC_JOB_VENV:-$SEQREC_ROOT/.venv}"
export SEQREC_LAKE_ROOT="${SEQREC_LAKE_ROOT:-$SEQREC_ROOT/lakehouse}"

SEQREC_AIRFLOW_URL="http://127.0.0.1:$SEQREC_AIRFLOW_PORT"
SEQREC_AIRFLOW_PIDFILE="$AIRFLOW_HOME/airflow.pid"
SEQREC_AIRFLOW_LOG="$AIRFLOW_HOME/airflow.log"

airflow_pid() {
  local pid
  pid="$(cat "$SEQREC_AIRFLOW_PIDFILE" 2>/dev/null)" || return 1
  kill -0 "$pid" 2>/dev/null && echo "$pid"
}

# pid and every descendant, parents first (bash tasks run in their own sessions, so the process group
# alone would miss them).
airflow_process_tree() {
  local queue=("$1") pid children
  while [ "${#queue[@]}" -gt 0 ]; do
    pid="${queue[0]}"; queue=("${queue[@]:1}")
    echo "$pid"
    children="$(ps -o pid= --ppid "$pid" 2>/dev/null)" || true
    for child in $children; do queue+=("$child"); done
  done
}

airflow_healthy() {
  curl -fsS --max-time 5 "$SEQREC_AIRFLOW_URL/api/v2/monitor/health" 2>/dev/null | "$SEQREC_AIRFLOW_VENV/bin/python" -c '
import json, sys
health = json.load(sys.stdin)
sys.exit(0 if all(health[c]["status"] == "healthy" for c in ("metadatabase", "scheduler", "dag_processor")) else 1)
' 2>/dev/null
}

airflow_start() {
  local pid waited=0 timeout="${SEQREC_AIRFLOW_START_TIMEOUT:-240}"
  if pid="$(airflow_pid)"; then
    echo "Airflow already runs (pid $pid) at $SEQREC_AIRFLOW_URL"
    return 0
  fi
  [ -x "$SEQREC_AIRFLOW_VENV/bin/airflow" ] || { echo "no Airflow at $SEQREC_AIRFLOW_VENV; run scripts/setup.sh" >&2; return 1; }
  # Private from the first byte: the database, airflow.cfg, logs and the password file.
  umask 077
  mkdir -p "$AIRFLOW_HOME"
  chmod -R go-rwx "$AIRFLOW_HOME"  # an instance made by an earlier release may have world-readable files
  # With the password file in place the auth manager reads it instead of generating and printing a password.
  "$SEQREC_AIRFLOW_VENV/bin/python" -c '
import json, os, secrets, sys
path = sys.argv[1]
if not os.path.exists(path):
    with open(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w") as file:
        json.dump({"admin": secrets.token_urlsafe(18)}, file)
' "$AIRFLOW_HOME/simple_auth_manager_passwords.json.generated"
  # journal_mode=WAL is stored in the database file, so setting it once before migrating is enough.
  "$SEQREC_AIRFLOW_VENV/bin/python" -c 'import sqlite3, sys; sqlite3.connect(sys.argv[1]).execute("PRAGMA journal_mode=WAL")' \
    "$SEQREC_AIRFLOW_DB"
  rm -f "$SEQREC_AIRFLOW_PIDFILE"  # left by an instance that did not stop cleanly
  # A session of its own, so stop can signal the whole instance; the pid written is the session leader's.
  # When any component exits the others are stopped, so the health check below sees the failure.
  setsid bash -c '
    echo $$ > "$1"
    airflow db migrate || exit 1
    airflow scheduler --skip-serve-logs &
    airflow dag-processor &
    airflow triggerer --skip-serve-logs &
    airflow api-server --host 127.0.0.1 --port "$2" &
    wait -n
    echo "an Airflow component exited; stopping the others" >&2
    kill -TERM 0' _ "$SEQREC_AIRFLOW_PIDFILE" "$SEQREC_AIRFLOW_PORT" >"$SEQREC_AIRFLOW_LOG" 2>&1 </dev/null &
  echo "starting Airflow (AIRFLOW_HOME=$AIRFLOW_HOME, log $SEQREC_AIRFLOW_LOG)"
  until [ -s "$SEQREC_AIRFLOW_PIDFILE" ] || [ "$waited" -ge 20 ]; do sleep 1; waited=$((waited + 1)); done
  until airflow_healthy; do
    if ! airflow_pid >/dev/null; then
      echo "Airflow exited during start-up; the end of $SEQREC_AIRFLOW_LOG:" >&2
      airflow_log_tail >&2
      return 1
    fi
    if [ "$waited" -ge "$timeout" ]; then
      echo "Airflow not healthy after ${timeout}s; the end of $SEQREC_AIRFLOW_LOG:" >&2
      airflow_log_tail >&2
      airflow_stop
      return 1
    fi
    sleep 2; waited=$((waited + 2))
  done
  echo "Airflow is up at $SEQREC_AIRFLOW_URL (user admin, password in $AIRFLOW_HOME/simple_auth_manager_passwords.json.generated)"
}

# The log's last lines for an error message, without any line that mentions a password.
airflow_log_tail() {
  tail -n 60 "$SEQREC_AIRFLOW_LOG" | grep -iv 'password' | tail -n 40
}

airflow_stop() {
  local pid tree waited=0
  pid="$(airflow_pid)" || { rm -f "$SEQREC_AIRFLOW_PIDFILE"; return 0; }
  mapfile -t tree < <(airflow_process_tree "$pid")
  echo "stopping Airflow (pid $pid, ${#tree[@]} processes)"
  kill -TERM -- "-$pid" 2>/dev/null || true
  kill -TERM "${tree[@]}" 2>/dev/null || true
  while [ "$waited" -lt 30 ] && kill -0 "${tree[@]}" 2>/dev/null; do sleep 1; waited=$((waited + 1)); done
  for p in "${tree[@]}"; do kill -KILL "$p" 2>/dev/null || true; done
  rm -f "$SEQREC_AIRFLOW_PIDFILE"
}

airflow_status() {
  local pid
  if pid="$(airflow_pid)"; then
    echo "Airflow runs (pid $pid) at $SEQREC_AIRFLOW_URL; $(airflow_healthy && echo healthy || echo 'not healthy'); log $SEQREC_AIRFLOW_LOG"
  else
    echo "Airflow is not running (AIRFLOW_HOME=$AIRFLOW_HOME)"
    return 1
  fi
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  set -euo pipefail
  case "${1:-}" in
    start) airflow_start ;;
    stop) airflow_stop ;;
    status) airflow_status ;;
    airflow) shift; exec airflow "$@" ;;
    *) echo "usage: $0 start|stop|status|airflow ARGS..." >&2; exit 2 ;;
  esac
fi
