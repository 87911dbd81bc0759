"""Checkpoints: round trip, newest wins, old ones pruned, and corruption reported clearly."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from lake import Config, ConfigError, InputError
from training.checkpoint import Checkpoints, local_folder


def state(value: float) -> dict:
    return {"model": {"w": torch.full((3,), value)}, "progress": {"epoch": int(value), "best_metrics": {"m": 0.5}}}


def test_the_latest_checkpoint_round_trips(tmp_path: Path) -> None:
    checkpoints = Checkpoints(tmp_path / "ckpt", keep=2)
    assert checkpoints.load() is None and checkpoints.latest() is None
    for epoch in (1, 2, 3):
        checkpoints.save(state(epoch), epoch=epoch, about={"run_id": "abc", "versions": {"train_examples": 4}})
    loaded = checkpoints.load()
    assert torch.equal(loaded["model"]["w"], torch.full((3,), 3.0)) and loaded["progress"]["epoch"] == 3
    manifest = checkpoints.latest()
    assert manifest["epoch"] == 3 and manifest["run_id"] == "abc" and manifest["versions"] == {"train_examples": 4}
    assert sorted(p.name for p in (tmp_path / "ckpt").glob("epoch-*.pt")) == ["epoch-0002.pt", "epoch-0003.pt"]
    assert not list((tmp_path / "ckpt").glob(".*tmp"))  # no temporary files left behind
    checkpoints.clear()
    assert checkpoints.load() is None


def test_a_corrupt_checkpoint_is_refused_with_what_to_do(tmp_path: Path) -> None:
    checkpoints = Checkpoints(tmp_path)
    path = checkpoints.save(state(1), epoch=1)
    path.write_bytes(path.read_bytes()[:-10])  # truncated, as by a full disk
    with pytest.raises(InputError, match="sha256.*Delete that folder"):
        checkpoints.load()
    path.unlink()
    with pytest.raises(InputError, match="missing"):
        checkpoints.load()
    (tmp_path / "latest.json").write_text("{not json")
    with pytest.raises(InputError, match="not valid JSON"):
        checkpoints.latest()


def test_a_crash_before_the_manifest_moves_keeps_the_previous_checkpoint(tmp_path: Path) -> None:
    checkpoints = Checkpoints(tmp_path)
    checkpoints.save(state(1), epoch=1)
    manifest = (tmp_path / "latest.json").read_text()
    checkpoints.save(state(2), epoch=2)
    (tmp_path / "latest.json").write_text(manifest)  # as if killed between the two renames
    assert json.loads(manifest)["epoch"] == 1
    assert checkpoints.load()["progress"]["epoch"] == 1


def test_default_folder_is_under_a_local_lake_root(config: Config) -> None:
    assert local_folder("", config, "_checkpoints") == Path(config.lake.root) / "_checkpoints"
    assert local_folder("/somewhere", config, "_checkpoints") == Path("/somewhere")
    remote = config.with_overrides({"lake": {"root": "s3://bucket/lake"}})
    with pytest.raises(ConfigError, match="train.checkpoint_dir"):
        local_folder("", remote, "_checkpoints")
