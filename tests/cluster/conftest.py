"""The distributed test bed: a Spark standalone cluster (scripts/spark_cluster.sh) on loopback ports of its
own, and how these tests run a stage the way the DAG does (spark-submit jobs/<stage>.py)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from lake import Config
from lake.spark import submit_launch_conf
from tests.cluster.hosts import TwoHosts
from tests.cluster.hosts import two_hosts as start_two_hosts
from tests.reliability.harness import write_config_file

REPO = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass(frozen=True)
class StandaloneCluster:
    master: str
    home: Path
    workers: int

    def app_folders(self, worker: int) -> list[Path]:
        """The executor folders this worker made, one per application it ran executors for."""
        return sorted((self.home / f"worker-{worker}").glob("app-*"))


@pytest.fixture(scope="session")
def standalone_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StandaloneCluster]:
    """One master and two workers (1 core, separate JVMs) for the session, on free loopback ports."""
    home = tmp_path_factory.mktemp("spark-cluster")
    port = free_port()
    env = {**os.environ, "SEQREC_SPARK_CLUSTER_HOME": str(home), "SEQREC_SPARK_MASTER_PORT": str(port),
           "SEQREC_SPARK_UI_PORT": str(free_port()), "SEQREC_SPARK_WORKER_MEMORY": "2g"}
    script = REPO / "scripts" / "spark_cluster.sh"
    subprocess.run(["bash", str(script), "start"], env=env, check=True, timeout=300)
    try:
        yield StandaloneCluster(f"spark://127.0.0.1:{port}", home, 2)
    finally:
        subprocess.run(["bash", str(script), "stop"], env=env, check=False, timeout=120)


def spark_submit(stage: str, args: list[str], *, config: Config, master: str, workdir: Path,
                 timeout: float = 600) -> subprocess.CompletedProcess[str]:
    """``spark-submit --master MASTER jobs/<stage>.py ARGS`` with ``config`` as $SEQREC_CONFIG, as the DAG
    runs a stage: the job venv first on PATH, the driver on loopback, Delta's jars on the driver's classpath."""
    config_file = write_config_file(config, workdir / f"{stage}-config.yaml")
    confs = {"spark.driver.host": "127.0.0.1", "spark.driver.bindAddress": "127.0.0.1",
             "spark.driver.memory": "1g", "spark.executor.memory": "1g", **submit_launch_conf(config)}
    command = [str(VENV_BIN / "spark-submit"), "--master", master,
               *[part for key, value in confs.items() for part in ("--conf", f"{key}={value}")],
               str(REPO / "jobs" / f"{stage}.py"), *args]
    env = {key: value for key, value in os.environ.items() if not key.startswith("SEQREC")}
    env.update({"SEQREC_CONFIG": str(config_file), "PATH": f"{VENV_BIN}:{env.get('PATH', '')}",
                "PYSPARK_PYTHON": sys.executable})
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"spark-submit {stage} failed:\n{done.stderr[-4000:]}"
    return done


@pytest.fixture(scope="session")
def two_hosts(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TwoHosts]:
    """Hosts A and B (network namespaces on a veth pair, sshd on B) for the session."""
    hosts = start_two_hosts(tmp_path_factory.mktemp("hosts"))
    try:
        yield hosts
    finally:
        hosts.stop()


@dataclass(frozen=True)
class S3Server:
    endpoint: str
    bucket: str
    credentials: dict[str, str]

    def storage_options(self) -> dict[str, str]:
        """The lake's storage options for this server; credentials come from the environment."""
        return {"AWS_ENDPOINT_URL": self.endpoint, "AWS_REGION": "us-east-1", "AWS_ALLOW_HTTP": "true",
                "conditional_put": "etag"}

    def client(self):
        import boto3

        return boto3.client("s3", endpoint_url=self.endpoint, region_name="us-east-1",
                            aws_access_key_id=self.credentials["AWS_ACCESS_KEY_ID"],
                            aws_secret_access_key=self.credentials["AWS_SECRET_ACCESS_KEY"])

    def keys(self, prefix: str) -> list[str]:
        pages = self.client().get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix)
        return [item["Key"] for page in pages for item in page.get("Contents", [])]


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """moto's S3-compatible server on a free loopback port, one bucket, credentials in this process's
    environment (as every engine reads them) for the session."""
    port = free_port()
    log = (tmp_path_factory.mktemp("s3") / "moto.log").open("wb")
    server = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                              stdout=log, stderr=subprocess.STDOUT)
    credentials = {"AWS_ACCESS_KEY_ID": "seqrec-test", "AWS_SECRET_ACCESS_KEY": "seqrec-test-secret"}
    previous = {name: os.environ.get(name) for name in credentials}
    os.environ.update(credentials)
    try:
        for _ in range(200):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.1)
        s3 = S3Server(f"http://127.0.0.1:{port}", "seqrec", credentials)
        s3.client().create_bucket(Bucket=s3.bucket)
        yield s3
    finally:
        server.terminate()
        server.wait(timeout=30)
        for name, value in previous.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
