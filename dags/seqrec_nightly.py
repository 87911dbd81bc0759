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

Settings are environment variables of the Airflow workers, read when a task runs (seqrec_settings.py beside
this file: the settings, the job environment, the weekday policy, the JSON lines; SEQREC_DROP_MARKER, the
file that marks a folder drop complete, is seqrec_drops.py's). Read when the file is parsed: the schedule
(SEQREC_SCHEDULE, SEQREC_END_DATE), the Spark connection id (SEQREC_SPARK_CONN_ID; the master is that
connection's, spark_default = local[2] from scripts/airflow_env.sh) and how often a waiting day looks at the
previous one (SEQREC_PREVIOUS_RUN_POKE_SECONDS).
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import shlex
from pathlib import Path

from airflow.providers.apache.spark.operators.spark_submit import SparkSubmitOperator
from airflow.providers.standard.operators.empty import EmptyOperator
from airflow.sdk import CronDataIntervalTimetable, Param, TriggerRule, XComArg, dag, task
from seqrec_drops import DEFAULT_MARKER, drop_status
from seqrec_settings import (
    JOB_ENV_NAMES,
    chosen_model,
    job_env,
    raw_source,
    seqrec_command,
    setting,
    spark_classpath,
    spark_java_options,
    summary,
    training_reasons,
)

log = logging.getLogger(__name__)

DAG_ID = "seqrec_nightly"
# Templated values that read the settings on the worker when the task runs.
JOB_ENV = {name: f"{{{{ job_env('{name}') }}}}" for name in JOB_ENV_NAMES}


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
              "spark.executor.extraClassPath": "{{ spark_classpath() }}",
              "spark.driver.extraJavaOptions": "{{ spark_java_options() }}"},
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
                         "spark_classpath": spark_classpath, "spark_java_options": spark_java_options},
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
        return seqrec_command("champion")

    @task.branch(execution_timeout=dt.timedelta(minutes=5))
    def decide_training(current: str, ds: str | None = None, params: dict | None = None) -> str:
        """Train on training weekdays, when no champion exists yet, or when params.force_train is set."""
        weekdays = setting("SEQREC_TRAIN_WEEKDAYS")
        reasons = training_reasons(current, ds, weekdays, force=params["force_train"])
        if reasons:
            log.info("training a new model: %s", "; ".join(reasons))
            return "train"
        log.info("not training today (SEQREC_TRAIN_WEEKDAYS=%s): scoring with the champion", weekdays)
        return "keep_champion"

    @task.bash(**job_task, execution_timeout=dt.timedelta(hours=3))
    def train(ds: str | None = None, run_id: str | None = None) -> str:
        """Horovod training (gloo, SEQREC_TRAIN_NP processes); the XCom is `seqrec train`'s JSON line. The
        run id keys the registration, so a retry returns the version the first try registered."""
        return seqrec_command(
            f"train --ds {ds} --np {int(setting('SEQREC_TRAIN_NP'))} --run-key {shlex.quote(f'{DAG_ID}/{run_id}')}")

    @task.bash(**job_task, execution_timeout=dt.timedelta(minutes=30))
    def evaluate(trained: str, ds: str | None = None) -> str:
        version = summary(trained, "train")["model_version"]
        return seqrec_command(f"evaluate --model {shlex.quote(version)} --ds {ds}")

    @task.bash(**job_task, execution_timeout=dt.timedelta(minutes=30))
    def gate(trained: str, ds: str | None = None) -> str:
        """The quality gate; the XCom is its JSON line {"gate", "model_version", "serve", "champion"}."""
        version = summary(trained, "train")["model_version"]
        return seqrec_command(f"gate --model {shlex.quote(version)} --ds {ds}")

    @task(trigger_rule=TriggerRule.NONE_FAILED_MIN_ONE_SUCCESS, execution_timeout=dt.timedelta(minutes=2))
    def choose_model(ti=None) -> str:
        """The model version to score with: the version today's gate approved, else the unchanged champion.
        The champion alias itself moves only at publish, once that model's recommendations are live."""
        version, why, blocked = chosen_model(ti.xcom_pull(task_ids="gate"), ti.xcom_pull(task_ids="champion"))
        log.log(logging.WARNING if blocked else logging.INFO, why)
        return version

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
