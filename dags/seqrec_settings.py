"""What the seqrec_nightly DAG decides outside Airflow: its settings, the job environment, the weekday
policy and the JSON lines the `seqrec` commands end with. Standard library only (this file sits beside the
DAG, is listed in .airflowignore, and is unit-tested without Airflow in tests/dags/test_seqrec_settings.py).

Settings are environment variables of the Airflow workers, read when a task runs: SEQREC_REPO,
SEQREC_JOB_VENV, SEQREC_LAKE_ROOT, SEQREC_SOURCE, SEQREC_TRAIN_NP, SEQREC_TRAIN_WEEKDAYS,
SEQREC_SPARK_DRIVER_MEMORY, SEQREC_SPARK_JARS_DIR, SEQREC_SPARK_CLASS_ARCHIVE; SEQREC__<SECTION>__<KEY>
variables reach the jobs unchanged.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shlex
from pathlib import Path

__all__ = [
    "JOB_ENV_NAMES",
    "WEEKDAYS",
    "chosen_model",
    "is_training_day",
    "job_env",
    "raw_source",
    "seqrec_command",
    "setting",
    "spark_classpath",
    "spark_java_options",
    "summary",
    "training_reasons",
]

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
    # The drivers' JVM class archive (lake/class_archive.py; scripts/setup.sh builds it in the job venv).
    "SEQREC_SPARK_CLASS_ARCHIVE": "{job_venv}/share/seqrec/driver-classes.jsa",
}


def _repo() -> str:
    return os.environ.get("SEQREC_REPO") or str(Path(__file__).resolve().parents[1])


def setting(name: str) -> str:
    """DAG setting ``name``: the worker's environment variable if set, else its default."""
    value = os.environ.get(name)
    if not value:
        default = _DEFAULTS[name]
        job_venv = setting("SEQREC_JOB_VENV") if "{job_venv}" in default else ""
        value = default.format(repo=_repo(), job_venv=job_venv)
    if name in ("SEQREC_SPARK_JARS_DIR", "SEQREC_SPARK_CLASS_ARCHIVE"):
        value = os.path.expanduser(value)
    if name == "SEQREC_LAKE_ROOT" and "://" not in value:
        value = os.path.join(_repo(), value)  # a relative root must not depend on the worker's cwd
    return value


JOB_ENV_NAMES = (
    "PATH", "PYSPARK_PYTHON", "PYSPARK_DRIVER_PYTHON", "SEQREC__LAKE__ROOT",
    "SEQREC__LAKE__MLFLOW_TRACKING_URI", "SEQREC__LAKE__MLFLOW_ARTIFACT_ROOT", "SEQREC__LAKE__REPORTS_DIR",
    "SEQREC__SPARK__JARS_DIR", "SEQREC__SPARK__CLASS_ARCHIVE",
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
        "SEQREC__SPARK__CLASS_ARCHIVE": setting("SEQREC_SPARK_CLASS_ARCHIVE"),
    }
    return values[name]


def raw_source(ds: str) -> str:
    """The raw events path for ds (SEQREC_SOURCE with {ds} replaced)."""
    return setting("SEQREC_SOURCE").replace("{ds}", ds)


def spark_classpath() -> str:
    """The jars of SEQREC_SPARK_JARS_DIR as a classpath: spark-submit fixes the driver's classpath when it
    starts the JVM, so Delta's and hadoop-aws's jars go on it there (executors look at the same path)."""
    folder = Path(setting("SEQREC_SPARK_JARS_DIR"))
    return ":".join(sorted(str(jar) for jar in folder.glob("*.jar"))) if folder.is_dir() else ""


def spark_java_options() -> str:
    """The driver's JVM option mapping SEQREC_SPARK_CLASS_ARCHIVE when that file exists, else "": like the
    classpath, spark-submit fixes the JVM's options when it starts it."""
    archive = setting("SEQREC_SPARK_CLASS_ARCHIVE")
    return f"-XX:SharedArchiveFile={archive}" if os.path.isfile(archive) else ""


def seqrec_command(args: str) -> str:
    """A bash script running the job venv's `seqrec ARGS`, failing on the first error."""
    return f"set -euo pipefail\n{shlex.quote(setting('SEQREC_JOB_VENV') + '/bin/seqrec')} {args}"


def is_training_day(ds: str, weekdays: str) -> bool:
    """Whether ds falls on one of ``weekdays`` ("daily" or e.g. "sun" / "mon,thu")."""
    wanted = {day.strip().lower()[:3] for day in weekdays.split(",") if day.strip()}
    if wanted == {"dai"}:
        return True
    unknown = sorted(wanted - set(WEEKDAYS))
    if unknown or not wanted:
        raise ValueError(f"SEQREC_TRAIN_WEEKDAYS={weekdays!r}: use 'daily' or weekdays from {WEEKDAYS}")
    return WEEKDAYS[dt.date.fromisoformat(ds).weekday()] in wanted


def summary(xcom: str | None, task_id: str) -> dict:
    """The JSON line a `seqrec` command prints last (its XCom), as a dict."""
    try:
        return json.loads(xcom)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ValueError(f"{task_id} did not end with its JSON summary line; got {xcom!r}") from None


def training_reasons(champion_xcom: str, ds: str, weekdays: str, force: bool) -> list[str]:
    """Why this run trains a new model (none: it scores with the champion)."""
    known = summary(champion_xcom, "champion")["champion"]
    return [why for why, applies in (
        ("params.force_train is set", force),
        ("there is no champion model yet", known is None),
        (f"{ds} is a training day (SEQREC_TRAIN_WEEKDAYS={weekdays})", is_training_day(ds, weekdays)),
    ) if applies]


def chosen_model(gate_xcom: str | None, champion_xcom: str) -> tuple[str, str, bool]:
    """(the model version to score with, why, whether the gate blocked today's model): the version today's
    gate approved, else the champion."""
    if gate_xcom is None:
        known = summary(champion_xcom, "champion")["champion"]
        if known is None:
            raise RuntimeError("no model was trained and there is no champion to score with")
        return known, f"no training today: scoring with champion model {known}", False
    decision = summary(gate_xcom, "gate")
    if decision["gate"] == "approved":
        return decision["serve"], (f"quality gate APPROVED model {decision['model_version']}: scoring with it "
                                   f"(publish makes it the champion)"), False
    return decision["serve"], (f"quality gate BLOCKED model {decision['model_version']}: scoring with the "
                               f"current champion model {decision['serve']} instead"), True
