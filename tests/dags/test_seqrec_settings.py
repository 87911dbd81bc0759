"""dags/seqrec_settings.py: the nightly DAG's settings and decisions, tested without Airflow (stdlib only)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
_SPEC = importlib.util.spec_from_file_location("seqrec_settings", REPO / "dags" / "seqrec_settings.py")
settings = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(settings)


@pytest.fixture(autouse=True)
def _no_worker_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("SEQREC_REPO", "SEQREC_JOB_VENV", "SEQREC_LAKE_ROOT", "SEQREC_SOURCE", "SEQREC_SPARK_JARS_DIR",
                 "SEQREC__LAKE__ROOT", "SEQREC__LAKE__MLFLOW_TRACKING_URI"):
        monkeypatch.delenv(name, raising=False)


def test_defaults_live_in_the_checkout_and_the_environment_overrides_them(monkeypatch, tmp_path: Path):
    assert settings.setting("SEQREC_JOB_VENV") == f"{REPO}/.venv"
    assert settings.setting("SEQREC_LAKE_ROOT") == f"{REPO}/lakehouse"
    monkeypatch.setenv("SEQREC_LAKE_ROOT", "relative/lake")
    assert settings.setting("SEQREC_LAKE_ROOT") == f"{REPO}/relative/lake", "never the worker's cwd"
    monkeypatch.setenv("SEQREC_SOURCE", "s3://raw/ds={ds}/")
    assert settings.raw_source("2017-11-26") == "s3://raw/ds=2017-11-26/"
    assert settings.setting("SEQREC_SPARK_JARS_DIR").startswith(str(Path.home()))


def test_job_env_pins_the_lake_paths_and_the_venv(monkeypatch, tmp_path: Path):
    monkeypatch.setenv("SEQREC_LAKE_ROOT", str(tmp_path / "lake"))
    assert settings.job_env("SEQREC__LAKE__MLFLOW_TRACKING_URI") == f"sqlite:///{tmp_path}/lake/mlflow.db"
    assert settings.job_env("PATH").startswith(f"{REPO}/.venv/bin:")
    assert settings.job_env("PYSPARK_PYTHON") == f"{REPO}/.venv/bin/python"
    monkeypatch.setenv("SEQREC__LAKE__ROOT", "/elsewhere")
    assert settings.job_env("SEQREC__LAKE__ROOT") == "/elsewhere", "a worker's own SEQREC__ variable wins"


def test_an_object_store_root_needs_a_tracking_server(monkeypatch):
    monkeypatch.setenv("SEQREC_LAKE_ROOT", "s3://lake/seqrec")
    assert settings.job_env("SEQREC__LAKE__REPORTS_DIR") == f"{REPO}/var/reports"
    with pytest.raises(ValueError, match="SEQREC__LAKE__MLFLOW_TRACKING_URI"):
        settings.job_env("SEQREC__LAKE__MLFLOW_TRACKING_URI")


def test_spark_classpath_lists_the_jars_sorted(monkeypatch, tmp_path: Path):
    for name in ("b.jar", "a.jar", "notes.txt"):
        (tmp_path / name).write_text("")
    monkeypatch.setenv("SEQREC_SPARK_JARS_DIR", str(tmp_path))
    assert settings.spark_classpath() == f"{tmp_path}/a.jar:{tmp_path}/b.jar"
    monkeypatch.setenv("SEQREC_SPARK_JARS_DIR", str(tmp_path / "missing"))
    assert settings.spark_classpath() == ""


def test_spark_java_options_map_the_class_archive_only_when_it_exists(monkeypatch, tmp_path: Path):
    archive = tmp_path / "driver-classes.jsa"
    monkeypatch.setenv("SEQREC_SPARK_CLASS_ARCHIVE", str(archive))
    assert settings.spark_java_options() == ""
    archive.write_bytes(b"")
    assert settings.spark_java_options() == f"-XX:SharedArchiveFile={archive}"


def test_seqrec_command_quotes_the_venv_and_stops_on_errors(monkeypatch):
    monkeypatch.setenv("SEQREC_JOB_VENV", "/opt/seqrec venv")
    assert settings.seqrec_command("champion") == "set -euo pipefail\n'/opt/seqrec venv/bin/seqrec' champion"


def test_training_days():
    days = ("2017-11-25", "2017-11-26", "2017-11-27")  # sat, sun, mon
    assert [d for d in days if settings.is_training_day(d, "sun")] == ["2017-11-26"]
    assert [d for d in days if settings.is_training_day(d, "daily")] == list(days)
    assert [d for d in days if settings.is_training_day(d, "Mon, sat")] == ["2017-11-25", "2017-11-27"]
    with pytest.raises(ValueError, match="someday"):
        settings.is_training_day("2017-11-25", "someday")


def test_training_reasons():
    champion = json.dumps({"champion": "3"})
    assert settings.training_reasons(champion, "2017-11-25", "sun", force=False) == []
    assert settings.training_reasons(champion, "2017-11-25", "sun", force=True) == ["params.force_train is set"]
    assert settings.training_reasons(json.dumps({"champion": None}), "2017-11-26", "sun", force=False) == [
        "there is no champion model yet", "2017-11-26 is a training day (SEQREC_TRAIN_WEEKDAYS=sun)"]


def test_the_chosen_model_follows_the_gate_else_the_champion():
    champion = json.dumps({"champion": "3"})
    approved = json.dumps({"gate": "approved", "model_version": "5", "serve": "5", "champion": "3"})
    blocked = json.dumps({"gate": "blocked", "model_version": "5", "serve": "3", "champion": "3"})
    assert settings.chosen_model(approved, champion)[0] == "5"
    version, why, was_blocked = settings.chosen_model(blocked, champion)
    assert version == "3" and "BLOCKED model 5" in why and was_blocked
    assert not settings.chosen_model(approved, champion)[2]
    assert settings.chosen_model(None, champion)[0] == "3"
    with pytest.raises(RuntimeError, match="no champion"):
        settings.chosen_model(None, json.dumps({"champion": None}))
    with pytest.raises(ValueError, match="train did not end with its JSON summary line"):
        settings.summary("model_version=5", "train")
