"""dags/seqrec_nightly.py in the real Airflow environment (.venv-airflow, called as a subprocess: it cannot
import the job stack): the DAG's shape, and a scheduler-executed 2-day backfill that writes every table."""

from __future__ import annotations

import contextlib
import datetime as dt
import importlib.util
import itertools
import json
import os
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pyarrow as pa
import pytest

from lake import Lake, load_config
from lake.schemas import TABLES

REPO = Path(__file__).resolve().parents[2]
AIRFLOW_PYTHON = REPO / ".venv-airflow" / "bin" / "python"
AIRFLOW_ENV = REPO / "scripts" / "airflow_env.sh"
DAG_ID = "seqrec_nightly"
DAYS = ["2017-11-25", "2017-11-26"]  # Saturday, Sunday
# Tables every run writes a non-empty ds partition of (quarantine and abnormal users may be empty).
ALWAYS_WRITTEN = ["events", "ingest_stats", "featurize_stats", "item_categories", "user_sequences",
                  "train_examples", "recommendations"]

pytestmark = [
    pytest.mark.airflow,
    pytest.mark.skipif(not AIRFLOW_PYTHON.exists(), reason="no Airflow environment; run scripts/setup.sh"),
]

# Runs in the Airflow environment: loads the DAG folder and describes the DAG as JSON.
PROBE = r"""
import datetime as dt, json, os, shutil, sys
from airflow.dag_processing.dagbag import DagBag

folder = sys.argv[1]
sys.path.append(folder)  # as Airflow's BundleDagBag does for the DAG bundle (seqrec_drops sits beside the DAG)
bag = DagBag(dag_folder=folder)
out = {"import_errors": {str(k): str(v) for k, v in bag.import_errors.items()}, "dags": sorted(bag.dags)}
dag = bag.dags.get("seqrec_nightly")
if dag is not None:
    env = dag.get_template_env()
    render = lambda text: env.from_string(text).render(ds="2017-11-26")
    out["dag"] = {"schedule": repr(dag.timetable), "max_active_runs": dag.max_active_runs,
                  "catchup": dag.catchup, "start_date": dag.start_date.isoformat(),
                  "params": {k: dag.params[k] for k in dag.params}}
    out["tasks"] = {
        t.task_id: {"downstream": sorted(t.downstream_task_ids), "type": type(t).__name__,
                    "timeout": t.execution_timeout.total_seconds() if t.execution_timeout else None,
                    "retries": t.retries, "backoff": t.retry_exponential_backoff,
                    "trigger_rule": t.trigger_rule.value, "mode": getattr(t, "mode", None)}
        for t in dag.tasks
    }
    ingest = dag.get_task("ingest")
    path = render(ingest.env_vars["PATH"])
    out["ingest"] = {"application": render(ingest.application),
                     "args": [render(a) for a in ingest.application_args],
                     "conf": {k: render(v) for k, v in ingest.conf.items()},
                     "env": {k: render(v) for k, v in ingest.env_vars.items()},
                     "spark_submit": shutil.which("spark-submit", path=path), "conn_id": ingest._conn_id}
    import seqrec_settings as module  # the helpers the DAG imports, from the bundle folder
    out["training_days"] = {spec: [d for d in ("2017-11-25", "2017-11-26", "2017-11-27")
                                   if module.is_training_day(d, spec)] for spec in ("sun", "daily", "Mon, sat")}
    try:
        module.is_training_day("2017-11-25", "someday")
        out["bad_weekday"] = "accepted"
    except ValueError as exc:
        out["bad_weekday"] = str(exc)
    out["gate"] = module.summary('{"gate": "blocked", "model_version": "5", "serve": "3", "champion": "3"}', "gate")
    try:
        module.summary("model_version=5", "train")
        out["bad_summary"] = "accepted"
    except ValueError as exc:
        out["bad_summary"] = str(exc)
print(json.dumps(out))
"""


def _airflow_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """The environment of an isolated instance: its own AIRFLOW_HOME, lake and port, tiny training."""
    inherited = {k: v for k, v in os.environ.items()
                 if not k.startswith(("AIRFLOW", "SEQREC")) and k not in ("PYSPARK_PYTHON", "PYSPARK_DRIVER_PYTHON")}
    return {
        **inherited,
        "AIRFLOW_HOME": str(tmp_path / "airflow"),
        "SEQREC_AIRFLOW_PORT": str(_free_port_triple()),
        "SEQREC_LAKE_ROOT": str(tmp_path / "lake"),
        "SEQREC_SPARK_DRIVER_MEMORY": "1g",
        "SEQREC_TRAIN_NP": "2",
        "SEQREC__TRAIN__EPOCHS": "2",
        "SEQREC__TRAIN__HIDDEN_SIZE": "16",
        "SEQREC__TRAIN__INNER_SIZE": "32",
        "SEQREC__TRAIN__NUM_LAYERS": "1",
        "SEQREC__EVALUATE__REPORT": "false",
        "SEQREC__EVALUATE__NEGATIVES": "10",  # the sampled protocol needs this many unseen items per user
        # `seqrec generate` writes about 1% malformed rows on purpose: above ingest's default guard
        "SEQREC__INGEST__MAX_QUARANTINED_SHARE": "0.05",
        **extra,
    }


def _free_port_triple() -> int:
    """A port p with p, p+1 and p+2 free (api-server, worker and trigger log servers)."""
    for _ in range(50):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        if port + 2 < 65536 and all(_port_free(port + i) for i in (1, 2)):
            return port
    raise RuntimeError("no three consecutive free ports")


def _port_free(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def _run(command: list[str], env: dict[str, str], timeout: float) -> subprocess.CompletedProcess[str]:
    """Run ``command``; past ``timeout``, end it and every process under it (bash tasks start their own
    sessions, so killing its process group would not be enough) and fail."""
    process = subprocess.Popen(command, env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        root = psutil.Process(process.pid)
        tree = [root, *root.children(recursive=True)]
        for member in tree:
            with contextlib.suppress(psutil.NoSuchProcess):
                member.terminate()
        _, alive = psutil.wait_procs(tree, timeout=20)
        for member in alive:
            with contextlib.suppress(psutil.NoSuchProcess):
                member.kill()
        stdout, stderr = process.communicate()
        pytest.fail(f"{' '.join(command)} ran past {timeout:.0f}s:\n{(stdout + stderr)[-4000:]}")
    return subprocess.CompletedProcess(command, process.returncode, stdout, stderr)


def _airflow(env: dict[str, str], *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return _run(["bash", str(AIRFLOW_ENV), "airflow", *args], env, timeout)


@pytest.fixture(scope="module")
def raw_events(tmp_path_factory: pytest.TempPathFactory) -> str:
    """Three days of synthetic Taobao-format events, one CSV per day; returns the SEQREC_SOURCE template."""
    folder = tmp_path_factory.mktemp("raw")
    env = {**os.environ, "SEQREC__GENERATE__DUPLICATE_FRACTION": "0", "SEQREC__GENERATE__EVENTS_PER_USER": "40"}
    subprocess.run([str(REPO / ".venv" / "bin" / "seqrec"), "generate", "--output", str(folder), "--events", "2400",
                    "--days", str(len(DAYS)), "--seed", "5"], env=env, check=True, capture_output=True, timeout=300)
    return str(folder / "user_behavior_{ds}.csv")


def _lake(tmp_path: Path) -> Lake:
    return Lake.from_config(load_config(environ={}).with_overrides({"lake": {"root": str(tmp_path / "lake")}}))


def _assert_no_duplicate_rows(name: str, table: pa.Table) -> None:
    frame = table.to_pandas()
    for column in frame.columns:  # list columns are not hashable
        if frame[column].map(lambda v: hasattr(v, "__len__") and not isinstance(v, str)).any():
            frame[column] = frame[column].map(tuple)
    duplicated = frame[frame.duplicated(keep=False)]
    assert duplicated.empty, f"{name} holds duplicate rows:\n{duplicated.head()}"


def test_dag_imports_with_the_expected_graph(tmp_path: Path) -> None:
    done = subprocess.run([str(AIRFLOW_PYTHON), "-c", PROBE, str(REPO / "dags")], capture_output=True, text=True,
                          timeout=300, env={**os.environ, "AIRFLOW_HOME": str(tmp_path),
                                            "AIRFLOW_CONN_SPARK_DEFAULT": '{"conn_type": "spark", "host": "local[2]"}',
                                            "SEQREC_SOURCE": "/data/raw/ds={ds}/"})
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["import_errors"] == {}
    assert out["dags"] == [DAG_ID]

    downstream = {task: info["downstream"] for task, info in out["tasks"].items()}
    assert downstream == {
        "wait_for_previous_featurize": ["wait_for_raw_events"],
        "wait_for_raw_events": ["ingest"],
        "ingest": ["featurize"],
        "featurize": ["wait_for_previous_publish"],
        "wait_for_previous_publish": ["champion"],
        "champion": ["decide_training"],
        "decide_training": ["keep_champion", "train"],
        "train": ["evaluate", "gate"],
        "evaluate": ["gate"],
        "gate": ["choose_model"],
        "keep_champion": ["choose_model"],
        "choose_model": ["score"],
        "score": ["publish"],
        "publish": [],
    }
    tasks = out["tasks"]
    assert {t for t, info in tasks.items() if info["type"] == "SparkSubmitOperator"} == {
        "ingest", "featurize", "score", "publish"}
    assert all(info["timeout"] for info in tasks.values()), "every task needs an execution_timeout"
    assert all(info["retries"] >= 1 and info["backoff"] > 1 for info in tasks.values())
    assert tasks["choose_model"]["trigger_rule"] == "none_failed_min_one_success"
    assert {tasks[t]["mode"] for t in ("wait_for_previous_featurize", "wait_for_previous_publish",
                                       "wait_for_raw_events")} == {"reschedule"}

    dag = out["dag"]
    assert dag["max_active_runs"] == 2 and dag["catchup"] is False
    assert "CronDataIntervalTimetable" in dag["schedule"] and "0 0 * * *" in dag["schedule"]
    assert dag["params"] == {"force_train": False}

    ingest = out["ingest"]
    assert ingest["application"] == str(REPO / "jobs" / "ingest.py")
    assert ingest["args"] == ["--ds", "2017-11-26", "--source", "/data/raw/ds=2017-11-26/"]
    assert ingest["spark_submit"] == str(REPO / ".venv" / "bin" / "spark-submit")
    assert ingest["conn_id"] == "spark_default"
    env = ingest["env"]
    assert env["PYSPARK_PYTHON"] == env["PYSPARK_DRIVER_PYTHON"] == str(REPO / ".venv" / "bin" / "python")
    assert env["SEQREC__LAKE__ROOT"] == str(REPO / "lakehouse")
    assert env["SEQREC__LAKE__MLFLOW_TRACKING_URI"] == f"sqlite:///{REPO / 'lakehouse' / 'mlflow.db'}"
    # spark-submit fixes the driver's classpath: Delta's and hadoop-aws's jars must be on it from the start
    jars = sorted(str(jar) for jar in (Path.home() / ".cache" / "seqrec" / "jars").glob("*.jar"))
    assert jars, "scripts/fetch_spark_jars.sh (run by setup) fetches them"
    assert ingest["conf"]["spark.driver.extraClassPath"] == ingest["conf"]["spark.executor.extraClassPath"] == \
        ":".join(jars)
    assert env["SEQREC__SPARK__JARS_DIR"] == str(Path.home() / ".cache" / "seqrec" / "jars")
    # and the JVM's options too: the class archive setup built, mapped when the driver starts
    archive = REPO / ".venv" / "share" / "seqrec" / "driver-classes.jsa"
    assert archive.is_file(), "scripts/setup.sh builds it (python -m lake.class_archive_build)"
    assert ingest["conf"]["spark.driver.extraJavaOptions"] == f"-XX:SharedArchiveFile={archive}"
    assert env["SEQREC__SPARK__CLASS_ARCHIVE"] == str(archive)

    assert out["training_days"] == {"sun": ["2017-11-26"], "daily": ["2017-11-25", "2017-11-26", "2017-11-27"],
                                    "Mon, sat": ["2017-11-25", "2017-11-27"]}
    assert "someday" in out["bad_weekday"]
    assert out["gate"] == {"gate": "blocked", "model_version": "5", "serve": "3", "champion": "3"}
    assert "train did not end with its JSON summary line" in out["bad_summary"]


@pytest.fixture
def airflow_instance(tmp_path: Path, raw_events: str) -> Iterator[dict[str, str]]:
    """A real local Airflow (scripts/airflow_env.sh) on a free loopback port, stopped (with every process it
    started) at the end."""
    env = _airflow_env(
        tmp_path, SEQREC_SOURCE=raw_events, SEQREC_END_DATE=DAYS[-1],
        SEQREC_TRAIN_WEEKDAYS="wed",  # none of DAYS: only the first day trains (no champion yet)
        # each reschedule poke is a new task process; at 5 s they raced the scheduler on a loaded 2-core box
        # ("TI was not in a state where it could be marked as running") and the sensor ran out of tries
        SEQREC_PREVIOUS_RUN_POKE_SECONDS="15",
    )
    try:
        started = subprocess.run(["bash", str(AIRFLOW_ENV), "start"], env=env, capture_output=True, text=True,
                                 timeout=600, cwd=REPO)
        assert started.returncode == 0, (started.stdout + started.stderr)[-4000:]
        yield env
    finally:
        subprocess.run(["bash", str(AIRFLOW_ENV), "stop"], env=env, capture_output=True, timeout=120, cwd=REPO)
    assert not (tmp_path / "airflow" / "airflow.pid").exists()


def _assert_private_and_loopback_only(airflow_home: Path) -> None:
    """Every file the instance wrote is readable by its owner only; every socket it listens on is loopback."""
    exposed = [str(p) for p in airflow_home.rglob("*") if p.is_file() and p.stat().st_mode & 0o077]
    assert exposed == [], f"files readable beyond their owner: {exposed[:5]}"
    assert (airflow_home / "simple_auth_manager_passwords.json.generated").stat().st_mode & 0o777 == 0o600
    leader = psutil.Process(int((airflow_home / "airflow.pid").read_text()))
    pids = {leader.pid, *(child.pid for child in leader.children(recursive=True))}
    listening = {(c.laddr.ip, c.laddr.port) for c in psutil.net_connections("inet")
                 if c.status == psutil.CONN_LISTEN and c.pid in pids}
    assert listening and all(ip in ("127.0.0.1", "::1") for ip, _ in listening), listening
    log = (airflow_home / "airflow.log").read_text()
    password = json.loads((airflow_home / "simple_auth_manager_passwords.json.generated").read_text())["admin"]
    assert password not in log and "Password for user" not in log


def _follow_runs_module() -> object:
    """scripts/follow_runs.py (stdlib only), loaded for its API client."""
    spec = importlib.util.spec_from_file_location("follow_runs", REPO / "scripts" / "follow_runs.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
@pytest.mark.spark
@pytest.mark.horovod
@pytest.mark.timeout(2400)
def test_backfill_runs_each_day_once_in_date_order(tmp_path: Path, airflow_instance: dict[str, str]) -> None:
    env = airflow_instance
    _assert_private_and_loopback_only(tmp_path / "airflow")
    for _ in range(60):
        if _airflow(env, "dags", "unpause", DAG_ID).returncode == 0:
            break
    else:
        pytest.fail(f"{DAG_ID} never registered: {_airflow(env, 'dags', 'list-import-errors').stdout}")

    # The command as documented, without --max-active-runs: the backfill starts every day at once and the
    # DAG itself must keep them in date order.
    for _ in range(5):
        created = _airflow(env, "backfill", "create", "--dag-id", DAG_ID, "--from-date", DAYS[0],
                           "--to-date", DAYS[-1])
        # SQLite refuses at once a write by a transaction that read before the scheduler wrote; Airflow then
        # removes the half-made backfill, and scripts/run_sample.sh tries again the same way.
        if created.returncode == 0 or "database is locked" not in created.stderr:
            break
        time.sleep(5)
    assert created.returncode == 0, created.stderr[-3000:]
    followed = _run([str(AIRFLOW_PYTHON), str(REPO / "scripts" / "follow_runs.py"), "--dag-id", DAG_ID,
                     "--from-date", DAYS[0], "--to-date", DAYS[-1], "--timeout", "2000"], env, timeout=2100)
    print(followed.stdout)
    assert followed.returncode == 0, followed.stdout[-6000:]

    follow_runs = _follow_runs_module()
    password = json.loads((tmp_path / "airflow" / "simple_auth_manager_passwords.json.generated").read_text())["admin"]
    api = follow_runs.Api(f"http://127.0.0.1:{env['SEQREC_AIRFLOW_PORT']}", "admin", password)
    runs = api.runs(DAG_ID, dt.date.fromisoformat(DAYS[0]), dt.date.fromisoformat(DAYS[-1]))
    assert [(r["logical_date"][:10], r["state"]) for r in runs] == [(day, "success") for day in DAYS]
    days = []
    for run in runs:
        tis = {ti["task_id"]: ti for ti in api.task_instances(DAG_ID, run["dag_run_id"])}
        days.append(tis)
        assert tis["train"]["state"] == ("success" if run is runs[0] else "skipped")
    # The DAG's two ordering points: a day's features after the previous day's, and its model decision
    # (and so its training, scoring and publishing) after the previous day published.
    for before, after in itertools.pairwise(days):
        assert after["ingest"]["start_date"] >= before["featurize"]["end_date"], (before, after)
        assert after["decide_training"]["start_date"] >= before["publish"]["end_date"], (before, after)

    lake = _lake(tmp_path)
    # deny_list is an input marketing fills; late_events is written only when a drop changes a day already run
    assert {name for name in TABLES if lake.exists(name)} == set(TABLES) - {"deny_list", "late_events"}
    for name, spec in TABLES.items():
        if spec.partition_by != "ds" or not lake.exists(name):
            continue
        parts = lake.partitions(name)
        assert parts == DAYS if name in ALWAYS_WRITTEN else set(parts) <= set(DAYS), (name, parts)
        if name != "events":  # raw drops may repeat an event exactly; ingest keeps it for featurize's dedupe
            _assert_no_duplicate_rows(name, lake.read(name))
    # events instead: exactly the rows each day's single ingest accepted, so no day was written twice
    stats = lake.read("ingest_stats").group_by("ds").aggregate([("accepted", "sum")]).to_pylist()
    accepted = {r["ds"]: r["accepted_sum"] for r in stats}
    per_day = lake.read("events").group_by("ds").aggregate([("ds", "count")]).to_pylist()
    assert {r["ds"]: r["ds_count"] for r in per_day} == accepted
    # the gate approved version 1 on day one and that day's publish made it the champion
    assert [(m["model_version"], m["aliases"], m["approved"]) for m in lake.read("models").to_pylist()] == [
        ("1", "champion", True)]
    assert lake.partitions("model_metrics") == ["1"]
    latest = lake.read("recommendations_latest").to_pandas()
    assert set(latest["ds"]) == {DAYS[-1]}
    assert not latest.duplicated(["user_id", "rank"]).any()
