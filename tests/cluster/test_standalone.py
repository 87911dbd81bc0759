"""The Spark stages on a Spark standalone cluster (a master and two worker JVMs), submitted as the DAG submits
them, give the same tables row for row as local mode."""

from __future__ import annotations

from pathlib import Path

import pytest

from lake import Lake
from tests.cluster.conftest import StandaloneCluster, spark_submit
from tests.pipeline import DS_B, FEATURIZE_TABLES, Pipeline
from tests.reliability.harness import sorted_rows

pytestmark = [pytest.mark.cluster, pytest.mark.spark, pytest.mark.slow]
# What featurize, score and publish of DS_B write; generated_at is each run's own clock.
COMPARED = [*FEATURIZE_TABLES, "recommendations", "recommendations_latest"]
RUN_CLOCK = ("generated_at",)


def test_featurize_score_and_publish_on_the_cluster_match_local_mode(
    pipeline: Pipeline, standalone_cluster: StandaloneCluster, tmp_path: Path
):
    # The cluster runs write through delta-spark (its jars on the executors' classpath too); the pipeline ran
    # the same stages on the same lake in local mode through delta-rs. The tables must agree across
    # deployment and backend.
    cluster = pipeline.clone("published_a", tmp_path / "cluster").with_overrides(
        {"lake": {"spark_backend": "delta-spark"}})
    apps_before = [len(standalone_cluster.app_folders(w)) for w in (1, 2)]

    for stage in ("featurize", "score", "publish"):
        spark_submit(stage, ["--ds", DS_B], config=cluster, master=standalone_cluster.master, workdir=tmp_path)

    on_cluster, in_local_mode = Lake.from_config(cluster), pipeline.lake("final")
    for name in COMPARED:
        drop = RUN_CLOCK if name.startswith("recommendations") else ()
        rows = sorted_rows(on_cluster, name, drop=drop)
        assert rows or name == "abnormal_users", f"{name} is empty"  # the sample has no bot-like users
        assert rows == sorted_rows(in_local_mode, name, drop=drop), name
    # every job ran executors on both workers
    assert [len(standalone_cluster.app_folders(w)) - before for w, before in zip((1, 2), apps_before, strict=True)] \
        == [3, 3]
