"""Horovod across two hosts: `horovodrun -H a:1,b:1` from host A with gloo over the hosts' own network (ssh to
host B), and `horovod.spark.run` with its ranks in executors of the two standalone workers. Each run ends with
the same weights on every rank (the worker checks and logs it), and with the weights of a single-host run of
the same seed and data."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from lake import Config, Lake, registry
from tests.cluster.conftest import REPO, StandaloneCluster, spark_submit
from tests.cluster.hosts import INTERFACE, TwoHosts
from tests.reliability.harness import write_config_file
from tests.training.conftest import DS, tiny_config, write_tiny_lake

pytestmark = [pytest.mark.cluster, pytest.mark.horovod, pytest.mark.slow]
# The runs below agree bit for bit on this machine; the tolerance allows for a reduction order that
# differs between transports, not for a different model.
TOLERANCE = 1e-6
DIGEST = re.compile(r"worker (\d) of 2: final weights sha256 (\w+)")


def seqrec_train(config: Config, workdir: Path, *args: str, on: list[str] | None = None) -> tuple[str, str]:
    """`seqrec train --ds DS ARGS` (optionally prefixed, e.g. by `ip netns exec`); (model version, stderr)."""
    config_file = write_config_file(config, workdir / f"train-{len(list(workdir.glob('train-*')))}.yaml")
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("SEQREC")}, "SEQREC_CONFIG": str(config_file)}
    command = [*(on or []), str(Path(sys.executable).with_name("seqrec")), "train", "--ds", DS, *args]
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-4000:]
    return json.loads(done.stdout.strip().splitlines()[-1])["model_version"], done.stderr


def weights(config: Config, version: str) -> dict[str, torch.Tensor]:
    folder = Path(config.lake.root) / "_models" / registry.MODEL_NAME / f"v{version}"
    return load_file(folder / "weights.safetensors")


def largest_difference(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    assert a.keys() == b.keys()
    return max(float((a[name].float() - b[name].float()).abs().max()) for name in a)


@pytest.fixture(scope="module")
def training(tmp_path_factory: pytest.TempPathFactory) -> tuple[Config, str]:
    """Tiny training data, and the single-host reference: 2 gloo workers on this machine."""
    from tests.conftest import _config_for

    root = tmp_path_factory.mktemp("horovod-hosts")
    config = tiny_config(_config_for(root), epochs=2, patience=10)
    write_tiny_lake(Lake.from_config(config))
    version, stderr = seqrec_train(config, root, "--np", "2")
    assert len({digest for _, digest in DIGEST.findall(stderr)}) == 1
    return config, version


def test_horovodrun_on_two_hosts_matches_one_host(training: tuple[Config, str], two_hosts: TwoHosts,
                                                  tmp_path: Path):
    config, single_host = training
    host_a, host_b = two_hosts.addresses
    remote = config.with_overrides({"train": {"ssh_identity_file": str(two_hosts.identity_file),
                                              "network_interfaces": INTERFACE}})
    version, stderr = seqrec_train(remote, tmp_path, "--np", "2", "-H", f"{host_a}:1,{host_b}:1",
                                   on=two_hosts.on(0, []))

    digests = dict(DIGEST.findall(stderr))
    assert set(digests) == {"0", "1"} and digests["0"] == digests["1"], stderr[-3000:]
    card = registry.find(config, version=version, alias=None)
    assert card is not None and card.meta["world_size"] == 2
    assert largest_difference(weights(config, version), weights(config, single_host)) <= TOLERANCE


def test_horovod_on_spark_runs_a_rank_on_each_standalone_worker(training: tuple[Config, str],
                                                                 standalone_cluster: StandaloneCluster,
                                                                 tmp_path: Path):
    config, single_host = training
    apps_before = [len(standalone_cluster.app_folders(w)) for w in (1, 2)]
    done = spark_submit("train", ["--ds", DS, "--launcher", "spark", "--np", "2"], config=config,
                        master=standalone_cluster.master, workdir=tmp_path)
    version = json.loads(done.stdout.strip().splitlines()[-1])["model_version"]

    # each worker launched an executor for the job, and each rank logged the same final weights
    assert [len(standalone_cluster.app_folders(w)) - before for w, before in zip((1, 2), apps_before, strict=True)] \
        == [1, 1]
    # spark-submit merges the Python driver's stderr, where horovod.spark forwards the ranks' output, into stdout
    digests = dict(DIGEST.findall(done.stdout))
    assert set(digests) == {"0", "1"} and digests["0"] == digests["1"], done.stdout[-5000:]
    assert largest_difference(weights(config, version), weights(config, single_host)) <= TOLERANCE
