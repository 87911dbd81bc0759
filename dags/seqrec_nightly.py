"""seqrec_nightly: the nightly job, one DAG run per logical date ds. Wiring only: every stage runs in the job
environment (spark-submit or the `seqrec` CLI of SEQREC_JOB_VENV); this file imports only Airflow and stdlib.

    wait_for_previous_featurize -> wait_for_raw_events -> ingest -> featurize
        -> wait_for_previous_publish -> champion -> decide_training
        decide_training -> train -> evaluate -> gate ---\
        decide_training -> keep_champion ----------------> choose_model -> score -> publish

The `seqrec` commands end with one JSON line, their XCom. The gate only approves; publish moves the champion
alias to an approved model once its recommendations are live, so a failed score or publish leaves the
champion as it was.

Days go in date order in two halves: a day's ingest and featurize wait for the previous day's featurize (the
vocabularies grow in date order), and its model decision waits for the previous day's publish (a day trains,
gates and scores against the model the previous day left). So day D+1's features are built while day D
trains and scores, and no two days ever write the same table at once.

Settings are environment variables of the Airflow workers, read when a task runs (see `setting`):
SEQREC_REPO, SEQREC_JOB_VENV, SEQREC_LAKE_ROOT, SEQREC_SOURCE, SEQREC_TRAIN_NP, SEQREC_TRAIN_WEEKDAYS,
SEQREC_SPARK_DRIVER_MEMORY, SEQREC_SPARK_JARS_DIR, SEQREC_DROP_MARKER (the file that marks a folder drop
complete, `_SUCCESS`); SEQREC__<SECTION>__<KEY> variables reach the jobs unchanged. Read when the file is
parsed: the schedule (SEQREC_SCHEDULE, SEQREC_END_DATE), the Spark connection id (SEQREC_SPARK_CONN_ID; the
master is that connection's, spark_default = local[2] from scripts/airflow_env.sh) and how often a waiting
day looks at the previous one (SEQREC_PREVIOUS_RUN_POKE_SECONDS).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import shlex
from pathlib import Path

from airflow.providers.apache.spark.operators.spark_submit import SparkSubmitOperator
from airflow.providers.standard.operators.empty import EmptyOperator
from airflow.sdk import CronDataIntervalTimetable, Param, TriggerRule, XComArg, dag, task
from seqrec_drops import DEFAULT_MARKER, drop_status

log = logging.getLogger(__name__)

DAG_ID = "seqrec_nightly"
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")

_DEFAULTS = {
    "SEQREC_REPO": "{repo}",  # the checkout this file lives in
    "SEQREC_JOB_VENV": "{repo}/.venv",
    "SEQREC_LAKE_ROOT": "{repo}/lakehouse",
    # A file or folder; {ds} is replaced by the logical date (a daily drop such as raw/ds={ds}/).
    "SEQREC_SOURCE": "{repo}/tests/fixtures/taobao_sample.csv",
    "SEQREC_TRAIN_NP": "2",
    # Weekdays (mon..sun, comma-separated) or "daily" on which a new model is trained.
    "SEQREC_TRAIN_WEEKDAYS": "sun",
    "SEQREC_SPARK_DRIVER_MEMORY": "2g",
    # Delta's and hadoop-aws's jars (scripts/fetch_spark_jars.sh), at the same path on every Spark host.
    "SEQREC_SPARK_JARS_DIR": "~/.cache/seqrec/jars",
}


def _repo() -> str:
    return os.environ.get("SEQREC_REPO") or str(Path(__file__).resolve().parents[1])


def setting(name: str) -> str:
    """DAG setting ``name``: the worker's environment variable if set, else its default."""
    value = os.environ.get(name) or _DEFAULTS[name].format(repo=_repo())
    if name == "SEQREC_SPARK_JARS_DIR":
        value = os.path.expanduser(value)
    if name == "SEQREC_LAKE_ROOT" and "://" not in value:
        value = os.path.join(_repo(), value)  # a relative root must not depend on the worker's cwd
    return value


JOB_ENV_NAMES = (
    "PATH", "PYSPARK_PYTHON", "PYSPARK_DRIVER_PYTHON", "SEQREC__LAKE__ROOT",
    "SEQREC__LAKE__MLFLOW_TRACKING_URI", "SEQREC__LAKE__MLFLOW_ARTIFACT_ROOT", "SEQREC__LAKE__REPORTS_DIR",
    "SEQREC__SPARK__JARS_DIR",
)


def job_env(name: str) -> str:
    """Variable ``name`` for the job processes: the job venv first on PATH, and every lake path pinned
    under SEQREC_LAKE_ROOT unless the worker sets that SEQREC__LAKE__* variable itself. An object-store root
    (s3://...) needs a tracking server: SQLite cannot live there, and workers do not share a local file."""
    if name.startswith("SEQREC__") and os.environ.get(name):
        return os.environ[name]
    venv_bin = f"{setting('SEQREC_JOB_VENV')}/bin"
    root = setting("SEQREC_LAKE_ROOT")
    if "://" in root and name == "SEQREC__LAKE__MLFLOW_TRACKING_URI":
        raise ValueError(f"SEQREC_LAKE_ROOT={root} is not a local folder: set SEQREC__LAKE__MLFLOW_TRACKING_URI "
                         "to your MLflow tracking server (see docs/deployment.md)")
    values = {
        # The apache-spark provider runs `spark-submit` from PATH; this makes it the job venv's.
        "PATH": f"{venv_bin}:{os.environ.get('PATH', '/usr/bin:/bin')}",
        "PYSPARK_PYTHON": f"{venv_bin}/python",
        "PYSPARK_DRIVER_PYTHON": f"{venv_bin}/python",
        "SEQREC__LAKE__ROOT": root,
        "SEQREC__LAKE__MLFLOW_TRACKING_URI": f"sqlite:///{root}/mlflow.db",
        "SEQREC__LAKE__MLFLOW_ARTIFACT_ROOT": f"{root}/mlflow-artifacts",
        # Reports are files people open: next to a local lake, else in the repo's var/ on the worker.
        "SEQREC__LAKE__REPORTS_DIR": f"{root}/reports" if "://" not in root else f"{_repo()}/var/reports",
        "SEQREC__SPARK__JARS_DIR": setting("SEQREC_SPARK_JARS_DIR"),
    }
    return values[name]


def raw_source(ds: str) -> str:
    """The raw events path for ds (SEQREC_SOURCE with {ds} replaced)."""
    return setting("SEQREC_SOURCE").replace("{ds}", ds)


def is_training_day(ds: str, weekdays: str) -> bool:
    """Whether ds falls on one of ``weekdays`` ("daily" or e.g. "sun" / "mon,thu")."""
    wanted = {day.strip().lower()[:3] for day in weekdays.split(",") if day.strip()}
    if wanted == {"dai"}:
        return True
    unknown = sorted(wanted - set(WEEKDAYS))
    if unknown or not wanted:
        raise ValueError(f"SEQREC_TRAIN_WEEKDAYS={weekdays!r}: use 'daily' or weekdays from {WEEKDAYS}")
    return WEEKDAYS[dt.date.fromisoformat(ds).weekday()] in wanted


def summary(xcom: str, task_id: str) -> dict:
    """The JSON line a `seqrec` command prints last (its XCom), as a dict."""
    try:
        return json.loads(xcom)
    except (TypeError, ValueError):
        raise ValueError(f"{task_id} did not end with its JSON summary line; got {xcom!r}") from None


def previous_day_done(ti, task_id: str) -> bool:
    """Whether the previous logical date's run, if there is one, has finished ``task_id`` successfully."""
    previous = ti.get_previous_dagrun()
    if previous is None:
        return True
    state = ti.get_task_states(dag_id=DAG_ID, task_ids=[task_id], run_ids=[previous.run_id]).get(
        previous.run_id, {}).get(task_id)
    if state == "success":
        return True
    log.info("waiting: %s of the previous run %s is %s; it must succeed first (clear and rerun it if it "
             "failed)", task_id, previous.run_id, state or "not started")
    return False


def wait_for_previous(task_id: str, why: str) -> XComArg:
    """A sensor task, ``wait_for_previous_<task_id>``, that holds this run until the previous run's
    ``task_id`` succeeded. Reschedule mode: a waiting day holds no worker slot, so a long backfill or a
    failed day to clear cannot starve the pool."""

    @task.sensor(task_id=f"wait_for_previous_{task_id}", mode="reschedule",
                 poke_interval=int(os.environ.get("SEQREC_PREVIOUS_RUN_POKE_SECONDS", "60")),
                 timeout=dt.timedelta(hours=12).total_seconds(), execution_timeout=dt.timedelta(minutes=2),
                 doc_md=f"Waits until the previous logical date's `{task_id}` succeeded: {why}")
    def wait(ti=None) -> bool:
        return previous_day_done(ti, task_id)

    return wait()


# Templated values that read the settings on the worker when the task runs.
JOB_ENV = {name: f"{{{{ job_env('{name}') }}}}" for name in JOB_ENV_NAMES}


def _seqrec(args: str) -> str:
    return f"{shlex.quote(setting('SEQREC_JOB_VENV') + '/bin/seqrec')} {args}"


def spark_classpath() -> str:
    """The jars of SEQREC_SPARK_JARS_DIR as a classpath: spark-submit fixes the driver's classpath when it
    starts the JVM, so Delta's and hadoop-aws's jars go on it there (executors look at the same path)."""
    folder = Path(setting("SEQREC_SPARK_JARS_DIR"))
    return ":".join(sorted(str(jar) for jar in folder.glob("*.jar"))) if folder.is_dir() else ""


def spark_stage(stage: str, *args: str, timeout: dt.timedelta) -> SparkSubmitOperator:
    """spark-submit jobs/<stage>.py --ds {{ ds }} ARGS from the job venv, against the Spark connection."""
    return SparkSubmitOperator(
        task_id=stage,
        conn_id=os.environ.get("SEQREC_SPARK_CONN_ID", "spark_default"),
        application=f"{{{{ setting('SEQREC_REPO') }}}}/jobs/{stage}.py",
        application_args=["--ds", "{{ ds }}", *args],
        name=f"seqrec-{stage}-{{{{ ds }}}}",
        conf={"spark.driver.memory": "{{ setting('SEQREC_SPARK_DRIVER_MEMORY') }}",
              "spark.driver.extraClassPath": "{{ spark_classpath() }}",
              "spark.executor.extraClassPath": "{{ spark_classpath() }}"},
        env_vars=JOB_ENV,
        execution_timeout=timeout,
    )


@dag(
    dag_id=DAG_ID,
    # ds = the start of the data interval: the run that starts at 00:00 UTC on day D+1 processes day D.
    schedule=CronDataIntervalTimetable(os.environ.get("SEQREC_SCHEDULE", "0 0 * * *"), timezone="UTC"),
    start_date=dt.datetime(2017, 11, 25, tzinfo=dt.UTC),
    end_date=(dt.datetime.fromisoformat(os.environ["SEQREC_END_DATE"]).replace(tzinfo=dt.UTC)
              if os.environ.get("SEQREC_END_DATE") else None),
    catchup=False,
    # Two days at a time: the wait_for_previous_* sensors keep their stages in date order (backfills ignore
    # this limit and use their own --max-active-runs; the sensors hold the order there too).
    max_active_runs=2,
    default_args={
        "owner": "seqrec",
        "retries": 2,
        "retry_delay": dt.timedelta(seconds=30),
        "retry_exponential_backoff": 2.0,
        "max_retry_delay": dt.timedelta(minutes=10),
    },
    params={"force_train": Param(False, type="boolean",
                                 description="Train a new model this run whatever the weekday.")},
    user_defined_macros={"setting": setting, "job_env": job_env, "raw_source": raw_source,
                         "spark_classpath": spark_classpath},
    tags=["seqrec"],
    doc_md=__doc__,
)
def seqrec_nightly() -> None:
    @task.sensor(mode="reschedule", poke_interval=300, timeout=dt.timedelta(hours=12).total_seconds(),
                 execution_timeout=dt.timedelta(minutes=2))
    def wait_for_raw_events(ds: str | None = None) -> bool:
        """The day's drop is complete: the source file exists, or the source folder holds the completion
        marker (SEQREC_DROP_MARKER, `_SUCCESS` by default; see seqrec_drops)."""
        source = raw_source(ds)
        if "://" in source:
            from airflow.sdk import ObjectStoragePath

            path = ObjectStoragePath(source)
        else:
            path = Path(source)
        complete, why = drop_status(path, os.environ.get("SEQREC_DROP_MARKER", DEFAULT_MARKER))
        log.info("raw events for ds=%s at %s: %s (%s)", ds, source, "complete" if complete else "waiting", why)
        return complete

    job_task = {"env": JOB_ENV, "append_env": True, "skip_on_exit_code": None}

    @task.bash(**job_task, execution_timeout=dt.timedelta(minutes=5))
    def champion() -> str:
        """The registry's champion now; the XCom is `seqrec champion`'s JSON line. A registry that cannot
        answer fails this task (retried), never reads as "no champion"."""
        return "set -euo pipefail\n" + _seqrec("champion")

    @task.branch(execution_timeout=dt.timedelta(minutes=5))
    def decide_training(current: str, ds: str | None = None, params: dict | None = None) -> str:
        """Train on training weekdays, when no champion exists yet, or when params.force_train is set."""
        known = summary(current, "champion")["champion"]
        weekdays = setting("SEQREC_TRAIN_WEEKDAYS")
        reasons = [why for why, applies in (
            ("params.force_train is set", params["force_train"]),
            ("there is no champion model yet", known is None),
            (f"{ds} is a training day (SEQREC_TRAIN_WEEKDAYS={weekdays})", is_training_day(ds, weekdays)),
        ) if applies]
        if reasons:
            log.info("training a new model: %s", "; ".join(reasons))
            return "train"
        log.info("not training today (SEQREC_TRAIN_WEEKDAYS=%s): scoring with champion model %s", weekdays, known)
        return "keep_champion"

    @task.bash(**job_task, execution_timeout=dt.timedelta(hours=3))
    def train(ds: str | None = None, run_id: str | None = None) -> str:
        """Horovod training (gloo, SEQREC_TRAIN_NP processes); the XCom is `seqrec train`'s JSON line. The
        run id keys the registration, so a retry returns the version the first try registered."""
        return "set -euo pipefail\n" + _seqrec(
            f"train --ds {ds} --np {int(setting('SEQREC_TRAIN_NP'))} --run-key {shlex.quote(f'{DAG_ID}/{run_id}')}")

    @task.bash(**job_task, execution_timeout=dt.timedelta(minutes=30))
    def evaluate(trained: str, ds: str | None = None) -> str:
        version = summary(trained, "train")["model_version"]
        return "set -euo pipefail\n" + _seqrec(f"evaluate --model {shlex.quote(version)} --ds {ds}")

    @task.bash(**job_task, execution_timeout=dt.timedelta(minutes=30))
    def gate(trained: str, ds: str | None = None) -> str:
        """The quality gate; the XCom is its JSON line {"gate", "model_version", "serve", "champion"}."""
        version = summary(trained, "train")["model_version"]
        return "set -euo pipefail\n" + _seqrec(f"gate --model {shlex.quote(version)} --ds {ds}")

    @task(trigger_rule=TriggerRule.NONE_FAILED_MIN_ONE_SUCCESS, execution_timeout=dt.timedelta(minutes=2))
    def choose_model(ti=None) -> str:
        """The model version to score with: the version today's gate approved, else the unchanged champion.
        The champion alias itself moves only at publish, once that model's recommendations are live."""
        gated = ti.xcom_pull(task_ids="gate")
        if gated is None:
            known = summary(ti.xcom_pull(task_ids="champion"), "champion")["champion"]
            if known is None:
                raise RuntimeError("no model was trained and there is no champion to score with")
            log.info("no training today: scoring with champion model %s", known)
            return known
        decision = summary(gated, "gate")
        if decision["gate"] == "approved":
            log.info("quality gate APPROVED model %s: scoring with it (publish makes it the champion)",
                     decision["model_version"])
        else:
            log.warning("quality gate BLOCKED model %s: scoring with the current champion model %s instead",
                        decision["model_version"], decision["serve"])
        return decision["serve"]

    current = champion()
    decision = decide_training(current)
    trained = train()
    gated = gate(trained)
    evaluate(trained) >> gated
    chosen = choose_model()
    keep_champion = EmptyOperator(task_id="keep_champion", execution_timeout=dt.timedelta(minutes=1))

    score = spark_stage("score", "--model", "{{ ti.xcom_pull(task_ids='choose_model') }}",
                        timeout=dt.timedelta(hours=1))
    (
        wait_for_previous("featurize", "the vocabularies grow in date order, and a day's features read every "
                          "earlier day's events")
        >> wait_for_raw_events()
        >> spark_stage("ingest", "--source", "{{ raw_source(ds) }}", timeout=dt.timedelta(minutes=30))
        >> spark_stage("featurize", timeout=dt.timedelta(hours=1))
        >> wait_for_previous("publish", "a day decides, trains, gates and scores against the model and output "
                             "the previous day left")
        >> current
    )
    decision >> [trained, keep_champion]
    [gated, keep_champion] >> chosen >> score >> spark_stage("publish", timeout=dt.timedelta(minutes=30))


seqrec_nightly()
