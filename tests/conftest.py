"""Shared fixtures: one local Spark session per test run, and a fresh lake root per test."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from lake import Config, Lake, load_config

pytest_plugins = ("tests.pipeline",)

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
FIXTURES = Path(__file__).resolve().parent / "fixtures"
TAOBAO_SAMPLE = FIXTURES / "taobao_sample.csv"

# Every test JVM (the shared session, spark-submit and CLI subprocesses, Airflow's tasks) lives seconds on
# tiny data: the client JIT alone and the serial collector start faster and leave the second core to the
# work (a small publish job: 32 s -> 26 s here). Production jobs keep the JVM defaults.
os.environ.setdefault("SPARK_SUBMIT_OPTS", "-XX:TieredStopAtLevel=1 -XX:+UseSerialGC")


# lake.spark_backend values; tests marked `both_backends` run once under each.
BACKENDS = ("delta-rs", "delta-spark")


# Tests that share an expensive session fixture run on one xdist worker (`make test` runs two), so the
# fixture is built once: the reliability pipeline and the cluster test bed; the Airflow instances.
_XDIST_GROUPS = (("pipeline", lambda item: "pipeline" in item.fixturenames or item.get_closest_marker("cluster")),
                 ("airflow", lambda item: item.get_closest_marker("airflow")))


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        group = next((name for name, belongs in _XDIST_GROUPS if belongs(item)), None)
        if group:
            item.add_marker(pytest.mark.xdist_group(group))


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "spark_backend" in metafunc.fixturenames and metafunc.definition.get_closest_marker("both_backends"):
        metafunc.parametrize("spark_backend", BACKENDS)


def _config_for(root: Path, spark_backend: str = "delta-rs") -> Config:
    return load_config(environ={}).with_overrides({
        "lake": {
            "spark_backend": spark_backend,
            "root": str(root / "lake"),
            "mlflow_tracking_uri": f"sqlite:///{root / 'mlflow.db'}",
            "mlflow_artifact_root": str(root / "mlflow-artifacts"),
            "reports_dir": str(root / "reports"),
        },
        "spark": {"master": "local[1]", "conf": {"spark.sql.shuffle.partitions": "2",
                                                 "spark.databricks.delta.snapshotPartitions": "2",
                                                 "spark.driver.memory": "2g",
                                                 "spark.ui.enabled": "false",
                                                 "spark.ui.showConsoleProgress": "false"}},
    })


@pytest.fixture(scope="session")
def spark(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    from lake.spark import get_spark

    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    # auto: the session gets Delta's jars and extensions, so each test's Lake can use either backend
    session = get_spark(_config_for(tmp_path_factory.mktemp("spark"), "auto"))
    yield session
    session.stop()


@pytest.fixture
def spark_backend() -> str:
    """The lake's Spark backend: delta-rs, or each of BACKENDS for tests marked ``both_backends``."""
    return "delta-rs"


@pytest.fixture
def config(tmp_path: Path, spark_backend: str) -> Config:
    """Defaults with the lake, MLflow store and reports under this test's tmp_path, Spark at local[1]."""
    return _config_for(tmp_path, spark_backend)


@pytest.fixture
def lake(config: Config) -> Lake:
    """A Lake without Spark (Arrow reads and writes)."""
    return Lake.from_config(config)


@pytest.fixture
def spark_lake(config: Config, spark: object) -> Lake:
    return Lake.from_config(config, spark=spark)
