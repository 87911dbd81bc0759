"""seqrec_nightly: the nightly job, one DAG run per logical date ds. Wiring only: every stage runs in the job
environment (spark-submit or the `seqrec` CLI of SEQREC_JOB_VENV); this file imports only Airflow and stdlib.

    wait_for_previous_featurize -> wait_for_raw_events -> ingest -> featurize
        -> wait_for_previous_publish -> decide_training
        decide_training -> train -> evaluate -> gate ---\
        decide_training -> keep_champion ----------------> choose_model -> score -> publish

Days go in date order in two halves: a day's ingest and featurize wait for the previous day's featurize (the
vocabularies grow in date order), and its model decision waits for the previous day's publish (a day trains,
gates and scores against the model the previous day left). So day D+1's features are built while day D
trains and scores, and no two days ever write the same table at once.

Settings are environment variables of the Airflow workers, read when a task runs (see `setting`):
SEQREC_REPO, SEQREC_JOB_VENV, SEQREC_LAKE_ROOT, SEQREC_SOURCE, SEQREC_TRAIN_NP, SEQREC_TRAIN_WEEKDAYS,
SEQREC_SPARK_DRIVER_MEMORY; SEQREC__<SECTION>__<KEY> variables reach the jobs unchanged. Read when the file
is parsed: the schedule (SEQREC_SCHEDULE, SEQREC_END_DATE), the Spark connection id (SEQREC_SPARK_CONN_ID;
the master is that connection's, spark_default = local[2] from scripts/airflow_env.sh) and how often a
waiting day looks at the previous one (SEQREC_PREVIOUS_RUN_POKE_SECONDS).
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import shlex
import subprocess
from pathlib import Path

from airflow.providers.apache.spark.operators.spark_submit import SparkSubmitOperator
from airflow.providers.standard.operators.empty import EmptyOperator
from airflow.sdk import CronDataIntervalTimetable, Param, TriggerRule, XComArg, dag, task

log = logging.getLogger(__name__)

DAG_ID = "seqrec_nightly"
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
NO_CHAMPION = "none"

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
}


def _repo() -> str:
    return os.environ.get("SEQREC_REPO") or str(Path(__file__).resolve().parents[1])


def setting(name: str) -> str:
    """DAG setting ``name``: the worker's environment variable if set, else its default."""
    value = os.environ.get(name) or _DEFAULTS[name].format(repo=_repo())
    if name == "SEQREC_LAKE_ROOT" and "://" not in value:
        value = os.path.join(_repo(), value)  # a relative root must not depend on the worker's cwd
    return value


JOB_ENV_NAMES = (
    "PATH", "PYSPARK_PYTHON", "PYSPARK_DRIVER_PYTHON", "SEQREC__LAKE__ROOT",
    "SEQREC__LAKE__MLFLOW_TRACKING_URI", "SEQREC__LAKE__MLFLOW_ARTIFACT_ROOT", "SEQREC__LAKE__REPORTS_DIR",
)


def job_env(name: str) -> str:
    """Variable ``name`` for the job processes: the job venv first on PATH, and every lake path pinned
    under SEQREC_LAKE_ROOT unless the worker sets that SEQREC__LAKE__* variable itself."""
    if name.startswith("SEQREC__") and os.environ.get(name):
        return os.environ[name]
    venv_bin = f"{setting('SEQREC_JOB_VENV')}/bin"
    root = setting("SEQREC_LAKE_ROOT")
    values = {
        # The apache-spark provider runs `spark-submit` from PATH; this makes it the job venv's.
        "PATH": f"{venv_bin}:{os.environ.get('PATH', '/usr/bin:/bin')}",
        "PYSPARK_PYTHON": f"{venv_bin}/python",
        "PYSPARK_DRIVER_PYTHON": f"{venv_bin}/python",
        "SEQREC__LAKE__ROOT": root,
        "SEQREC__LAKE__MLFLOW_TRACKING_URI": f"sqlite:///{root}/mlflow.db",
        "SEQREC__LAKE__MLFLOW_ARTIFACT_ROOT": f"{root}/mlflow-artifacts",
        "SEQREC__LAKE__REPORTS_DIR": f"{root}/reports",
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


def parse_gate_line(line: str) -> dict[str, str]:
    """`gate=blocked model_version=5 champion=3` -> {"gate": "blocked", "model_version": "5", "champion": "3"}."""
    fields = dict(part.split("=", 1) for part in line.split() if "=" in part)
    if fields.get("gate") not in ("approved", "blocked") or not fields.get("champion"):
        raise ValueError(f"not a gate summary line: {line!r}")
    return fields


def current_champion() -> str:
    """The registry's `champion` model version, or "none", asked of the job environment."""
    query = ("from lake import load_config; from lake.registry import find; "
             "card = find(load_config()); print(card.version if card else 'none')")
    env = {**os.environ, **{name: job_env(name) for name in JOB_ENV_NAMES}}
    done = subprocess.run([f"{setting('SEQREC_JOB_VENV')}/bin/python", "-c", query], env=env,
                          capture_output=True, text=True, timeout=240)
    if done.returncode != 0:
        raise RuntimeError(f"asking the registry for the champion failed:\n{done.stderr[-3000:]}")
    return done.stdout.strip().splitlines()[-1]


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


def _keep_last_match(command: str, sed_expression: str, what: str) -> str:
    """Bash that runs ``command`` (its output goes to the log as it comes) and then prints, as the task's
    last line and so its XCom, the last stdout line that ``sed -n sed_expression`` prints."""
    return (
        "set -euo pipefail\n"
        'out="$(mktemp)"; trap \'rm -f "$out"\' EXIT\n'
        f'{command} | tee "$out"\n'
        f"value=\"$(sed -n {shlex.quote(sed_expression)} \"$out\" | tail -n 1)\"\n"
        f'[ -n "$value" ] || {{ echo "no {what} line in the output above" >&2; exit 1; }}\n'
        'echo "$value"\n'
    )


def spark_stage(stage: str, *args: str, timeout: dt.timedelta) -> SparkSubmitOperator:
    """spark-submit jobs/<stage>.py --ds {{ ds }} ARGS from the job venv, against the Spark connection."""
    return SparkSubmitOperator(
        task_id=stage,
        conn_id=os.environ.get("SEQREC_SPARK_CONN_ID", "spark_default"),
        application=f"{{{{ setting('SEQREC_REPO') }}}}/jobs/{stage}.py",
        application_args=["--ds", "{{ ds }}", *args],
        name=f"seqrec-{stage}-{{{{ ds }}}}",
        conf={"spark.driver.memory": "{{ setting('SEQREC_SPARK_DRIVER_MEMORY') }}"},
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
    user_defined_macros={"setting": setting, "job_env": job_env, "raw_source": raw_source},
    tags=["seqrec"],
    doc_md=__doc__,
)
def seqrec_nightly() -> None:
    @task.sensor(mode="reschedule", poke_interval=300, timeout=dt.timedelta(hours=12).total_seconds(),
                 execution_timeout=dt.timedelta(minutes=2))
    def wait_for_raw_events(ds: str | None = None) -> bool:
        """The day's raw events have landed: the source file exists, or the source folder holds a file."""
        source = raw_source(ds)
        if "://" in source:
            from airflow.sdk import ObjectStoragePath

            path = ObjectStoragePath(source)
        else:
            path = Path(source)
        found = path.is_file() or (path.is_dir() and any(
            p.is_file() and not p.name.startswith((".", "_")) for p in path.rglob("*")))
        log.info("raw events for ds=%s at %s: %s", ds, source, "found" if found else "not there yet")
        return found

    job_task = {"env": JOB_ENV, "append_env": True, "skip_on_exit_code": None}

    @task.branch(execution_timeout=dt.timedelta(minutes=5))
    def decide_training(ds: str | None = None, params: dict | None = None, ti=None) -> str:
        """Train on training weekdays, when no champion exists yet, or when params.force_train is set.
        The current champion (or "none") goes to XCom key `champion` for choose_model."""
        champion = current_champion()
        ti.xcom_push(key="champion", value=champion)
        weekdays = setting("SEQREC_TRAIN_WEEKDAYS")
        reasons = [why for why, applies in (
            ("params.force_train is set", params["force_train"]),
            ("there is no champion model yet", champion == NO_CHAMPION),
            (f"{ds} is a training day (SEQREC_TRAIN_WEEKDAYS={weekdays})", is_training_day(ds, weekdays)),
        ) if applies]
        if reasons:
            log.info("training a new model: %s", "; ".join(reasons))
            return "train"
        log.info("not training today (SEQREC_TRAIN_WEEKDAYS=%s): scoring with champion model %s",
                 weekdays, champion)
        return "keep_champion"

    @task.bash(**job_task, execution_timeout=dt.timedelta(hours=3))
    def train(ds: str | None = None) -> str:
        """Horovod training (gloo, SEQREC_TRAIN_NP processes); the XCom is the new model version."""
        command = _seqrec(f"train --ds {ds} --np {int(setting('SEQREC_TRAIN_NP'))}")
        return _keep_last_match(command, "s/^model_version=//p", "model_version=")

    @task.bash(**job_task, execution_timeout=dt.timedelta(minutes=30))
    def evaluate(model_version: str, ds: str | None = None) -> str:
        return "set -euo pipefail\n" + _seqrec(f"evaluate --model {shlex.quote(model_version)} --ds {ds}")

    @task.bash(**job_task, execution_timeout=dt.timedelta(minutes=30))
    def gate(model_version: str, ds: str | None = None) -> str:
        """The quality gate; the XCom is its summary line `gate=approved|blocked model_version=N champion=M`."""
        command = _seqrec(f"gate --model {shlex.quote(model_version)} --ds {ds}")
        return _keep_last_match(command, "/^gate=/p", "gate=")

    @task(trigger_rule=TriggerRule.NONE_FAILED_MIN_ONE_SUCCESS, execution_timeout=dt.timedelta(minutes=2))
    def choose_model(ti=None) -> str:
        """The model version to score with: the champion after today's gate, or the unchanged champion."""
        gate_line = ti.xcom_pull(task_ids="gate")
        if gate_line is None:
            champion = ti.xcom_pull(task_ids="decide_training", key="champion")
            if champion in (None, NO_CHAMPION):
                raise RuntimeError("no model was trained and there is no champion to score with")
            log.info("no training today: scoring with champion model %s", champion)
            return champion
        decision = parse_gate_line(gate_line)
        if decision["gate"] == "approved":
            log.info("quality gate APPROVED model %s: scoring with it", decision["model_version"])
        else:
            log.warning("quality gate BLOCKED model %s: scoring with the current champion model %s instead",
                        decision["model_version"], decision["champion"])
        return decision["champion"]

    decision = decide_training()
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
        >> decision
    )
    decision >> [trained, keep_champion]
    [gated, keep_champion] >> chosen >> score >> spark_stage("publish", timeout=dt.timedelta(minutes=30))


seqrec_nightly()
