"""A whole training run in this process (one worker): registration, meta, MLflow metrics, resume."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from evaluation.metrics import target_ranks
from lake import Config, Lake, registry
from lake.artifacts import MODEL_FILES, digests
from lake.registry import load_model
from lake.vocab import item_vocab_fingerprint
from tests.training.conftest import DS, TinyData, tiny_config
from training.data import ExampleSource, TrainExamples
from training.launch import launch

REQUIRED_META = {
    "model_type", "max_len", "item_vocab_size", "vocab_fingerprint", "category_vocab_size", "trained_ds",
    "train_examples_version", "item_vocab_version", "code_version", "valid_ndcg@10", "valid_hr@10",
    "valid_sampled_ndcg@10", "valid_sampled_hr@10", "early_stopping_metric", "features",
    "loss", "train_config",
}
EPOCH_METRICS = ("train_loss", "valid_ndcg_at_10", "valid_hr_at_10", "valid_sampled_ndcg_at_10",
                 "valid_sampled_hr_at_10", "epoch_seconds", "sequences_per_second")


def metric_history(config: Config, run_id: str, key: str) -> list[tuple[int, float]]:
    from mlflow import MlflowClient

    with registry.tracking(config):
        return sorted((m.step, m.value) for m in MlflowClient().get_metric_history(run_id, key))


def valid_ndcg_from_the_registered_files(config: Config, lake: Lake, version: str, max_len: int) -> float:
    """Recompute validation NDCG@10 from the exported scorer and item embeddings alone."""
    scorer = load_model(config, version)
    source = ExampleSource.from_lake(lake, DS, version=lake.version("train_examples"), max_len=max_len)
    columns = [torch.from_numpy(np.stack(c)) for c in zip(*TrainExamples(source, "valid"), strict=True)]
    items, behaviours, categories, gaps, targets, _ = columns
    with torch.no_grad():
        scores = scorer.encode(items, behaviours, categories, gaps) @ scorer.item_embeddings.T  # [B, V]
    target = targets[:, -1]
    kept = scores.gather(1, target[:, None])
    scores[:, :2] = -math.inf
    scores.scatter_(1, items, -math.inf)
    scores.scatter_(1, target[:, None], kept)
    ranks = target_ranks(scores, target).double()
    return float(torch.where(ranks <= 10, 1 / torch.log2(ranks + 1), 0.0).mean())


def test_a_run_registers_a_complete_model(config: Config, lake: Lake, tiny_data: TinyData) -> None:
    config = tiny_config(config, epochs=3)
    card = launch(config, DS)
    meta = card.meta
    assert set(meta) >= REQUIRED_META
    assert registry.CHAMPION not in card.aliases  # training never promotes: the quality gate does
    assert meta["model_type"] == "sasrec" and meta["trained_ds"] == DS and meta["max_len"] == 16
    assert (meta["item_vocab_size"], meta["vocab_fingerprint"]) == item_vocab_fingerprint(lake)
    assert meta["category_vocab_size"] == tiny_data.categories + 2
    assert meta["train_examples_version"] == lake.version("train_examples")
    assert meta["features"]["category"] and meta["train_config"]["epochs"] == 3
    assert meta["code_version"] and 0 < meta["valid_ndcg@10"] <= 1

    for key in EPOCH_METRICS:
        assert [step for step, _ in metric_history(config, card.run_id, key)] == [1, 2, 3]
    models = lake.read("models").to_pylist()
    assert [(m["model_version"], m["model_type"]) for m in models] == [(card.version, "sasrec")]
    assert models[0]["valid_ndcg_at_10"] == pytest.approx(meta["valid_ndcg@10"])

    folder = Path(config.lake.root) / "_models" / "seqrec" / f"v{card.version}"
    assert set(MODEL_FILES) <= {p.name for p in folder.iterdir()}
    assert card.sha256 == digests(folder) and json.loads(models[0]["artifact_sha256"]) == card.sha256
    # the files hold the best epoch's weights: they reproduce the recorded validation NDCG
    recomputed = valid_ndcg_from_the_registered_files(config, lake, card.version, max_len=16)
    assert recomputed == pytest.approx(meta["valid_ndcg@10"], abs=1e-6)


def test_resume_continues_the_same_run_from_the_checkpoint(config: Config, lake: Lake, tiny_data: TinyData) -> None:
    first = launch(tiny_config(config, epochs=2, patience=10), DS)
    resumed = launch(tiny_config(config, epochs=4, patience=10), DS, resume=True)
    assert resumed.run_id == first.run_id and resumed.version != first.version
    assert [step for step, _ in metric_history(config, resumed.run_id, "train_loss")] == [1, 2, 3, 4]
    assert resumed.meta["epochs_trained"] == 4

    fresh = launch(tiny_config(config, epochs=1), DS)  # without --resume, earlier checkpoints are dropped
    assert fresh.run_id != first.run_id
    assert [step for step, _ in metric_history(config, fresh.run_id, "train_loss")] == [1]


def test_an_epoch_checkpointed_but_not_logged_is_logged_once_on_resume(
        config: Config, lake: Lake, tiny_data: TinyData, monkeypatch: pytest.MonkeyPatch) -> None:
    from training import worker

    log_epoch = worker._log_epoch

    def die_before_logging_epoch_2(metrics: dict[str, float], epoch: int) -> None:
        if epoch == 2:
            raise KeyboardInterrupt("killed between epoch 2's checkpoint and its metrics")
        log_epoch(metrics, epoch)

    monkeypatch.setattr(worker, "_log_epoch", die_before_logging_epoch_2)
    with pytest.raises(KeyboardInterrupt):
        launch(tiny_config(config, epochs=4, patience=10), DS)
    monkeypatch.setattr(worker, "_log_epoch", log_epoch)

    resumed = launch(tiny_config(config, epochs=4, patience=10), DS, resume=True)
    for key in EPOCH_METRICS:
        assert [step for step, _ in metric_history(config, resumed.run_id, key)] == [1, 2, 3, 4], key
