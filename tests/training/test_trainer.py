"""The training loop in one process (a Horovod world of one): learning, early stopping, counting, checkpoints."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from lake import Config, ConfigError, Lake
from lake.user_sample import in_user_sample
from tests.training.conftest import DS, TinyData, tiny_config
from training.checkpoint import Checkpoints
from training.data import ExampleSource
from training.distributed import start
from training.models import VocabSizes, build_model
from training.settings import TrainSettings
from training.trainer import Trainer


def trainer_for(config: Config, lake: Lake, data: TinyData, *, checkpoints: Checkpoints | None = None,
                valid_rows: int = 0, **train: object) -> tuple[Trainer, list[tuple[int, dict[str, float]]]]:
    settings: TrainSettings = TrainSettings.from_config(tiny_config(config, **train))
    workers = start(settings.seed, settings.torch_threads)
    vocab = VocabSizes(items=data.item_vocab_size, categories=data.categories + 2, gap_buckets=17)
    model = build_model(settings, vocab)
    source = ExampleSource.from_lake(lake, DS, version=lake.version("train_examples"), max_len=settings.max_len)
    logged: list[tuple[int, dict[str, float]]] = []
    trainer = Trainer(model, settings, workers, source, train_rows=data.users, item_vocab_size=vocab.items,
                      valid_rows=valid_rows,
                      checkpoints=checkpoints, log_metrics=lambda metrics, epoch: logged.append((epoch, metrics)))
    return trainer, logged


def test_training_lowers_the_loss_and_beats_chance(config: Config, lake: Lake, tiny_data: TinyData,
                                                   tmp_path: Path) -> None:
    checkpoints = Checkpoints(tmp_path / "ckpt")
    trainer, logged = trainer_for(config, lake, tiny_data, checkpoints=checkpoints, epochs=4, patience=10)
    progress = trainer.fit()
    losses = [metrics["train_loss"] for _, metrics in logged]
    assert [epoch for epoch, _ in logged] == [1, 2, 3, 4] and progress.epoch == 4
    assert losses[-1] < losses[0]
    assert set(logged[0][1]) == {"train_loss", "valid_ndcg@10", "valid_hr@10", "valid_sampled_ndcg@10",
                                 "valid_sampled_hr@10", "epoch_seconds", "sequences_per_second"}
    # random ranking of ~30 items would put the held-out item in the top 10 a third of the time
    assert progress.best_metrics["valid_hr@10"] > 0.6
    assert checkpoints.latest()["epoch"] == 4
    best = {k: v for k, v in progress.best_weights.items()}
    assert all(torch.equal(best[k], v) for k, v in trainer.model.state_dict().items())


def test_an_epoch_can_stop_after_a_fixed_number_of_steps(config: Config, lake: Lake, tiny_data: TinyData) -> None:
    trainer, _ = trainer_for(config, lake, tiny_data, batch_size=4, max_steps_per_epoch=3, length_buckets=1)
    optimizer = trainer._optimizer()
    stream = trainer._train_stream(0)
    # 48 users in batches of 4 would be 12 steps; the cap stops the epoch after 3 (and the next goes on from there)
    assert trainer._train_epoch(optimizer, stream)["sequences"] == 12
    assert trainer._train_epoch(optimizer, stream)["sequences"] == 12
    full, _ = trainer_for(config, lake, tiny_data, batch_size=4, length_buckets=1)
    assert full._train_epoch(full._optimizer(), full._train_stream(0))["sequences"] == tiny_data.users


def test_validation_ranks_a_fixed_sample_when_there_are_more_users_than_valid_max_users(
        config: Config, lake: Lake, tiny_data: TinyData) -> None:
    everyone, _ = trainer_for(config, lake, tiny_data, valid_rows=tiny_data.users)
    assert everyone._validate().users == tiny_data.users, "the default cap is far above the tiny day's users"
    half = tiny_data.users // 2
    sampled, _ = trainer_for(config, lake, tiny_data, valid_rows=tiny_data.users, valid_max_users=half)
    first = sampled._validate()
    users = first.users
    assert 0 < users < tiny_data.users
    assert sampled._validate() == first, "the same users and sampled candidates every epoch"
    seed = TrainSettings.from_config(tiny_config(config)).seed
    valid_ids = [r["user_id"] for r in lake.read("train_examples", partition=DS).to_pylist() if r["split"] == "valid"]
    assert users == in_user_sample(np.array(valid_ids, dtype=np.int64), half / tiny_data.users, seed).sum()


def test_early_stopping_keeps_the_best_epoch(config: Config, lake: Lake, tiny_data: TinyData) -> None:
    # a learning rate this high makes validation worse after the first epochs
    trainer, logged = trainer_for(config, lake, tiny_data, epochs=30, patience=2, learning_rate=0.5)
    progress = trainer.fit()
    scores = [metrics["valid_ndcg@10"] for _, metrics in logged]
    assert progress.epoch < 30 and progress.stale_epochs == 2
    assert progress.best_epoch == 1 + scores.index(max(scores)) == progress.epoch - 2
    assert progress.best_metrics["valid_ndcg@10"] == max(scores)


def test_early_stopping_can_watch_the_sampled_protocol(config: Config, lake: Lake, tiny_data: TinyData) -> None:
    trainer, logged = trainer_for(config, lake, tiny_data, epochs=30, patience=2, learning_rate=0.5,
                                  early_stopping_metric="valid_sampled_ndcg@10", valid_negatives=10)
    progress = trainer.fit()
    scores = [metrics["valid_sampled_ndcg@10"] for _, metrics in logged]
    assert progress.metric == "valid_sampled_ndcg@10" and progress.stale_epochs == 2
    assert progress.best_epoch == 1 + scores.index(max(scores)) == progress.epoch - 2
    # the sampled candidates are a subset of the full ones, so a sampled rank is never worse
    assert all(metrics["valid_sampled_hr@10"] >= metrics["valid_hr@10"] for _, metrics in logged)


def test_an_unknown_early_stopping_metric_is_refused(config: Config) -> None:
    with pytest.raises(ConfigError, match="early_stopping_metric must be one of"):
        TrainSettings.from_config(tiny_config(config, early_stopping_metric="valid_ndcg@20"))


def test_popularity_counts_every_train_target_once(config: Config, lake: Lake, tiny_data: TinyData) -> None:
    trainer, logged = trainer_for(config, lake, tiny_data, model_type="popularity", epochs=5)
    progress = trainer.fit()
    targets = [t for row in lake.read("train_examples", partition=DS).to_pylist() if row["split"] == "train"
               for t in row["targets"] if t >= 2]
    expected = torch.bincount(torch.tensor(targets), minlength=tiny_data.item_vocab_size).float()
    assert progress.epoch == 1 and len(logged) == 1 and "train_loss" not in logged[0][1]
    assert torch.equal(trainer.model.item_counts, expected)


@pytest.mark.parametrize("model_type", ["gru", "lstm"])
def test_recurrent_baselines_train(config: Config, lake: Lake, tiny_data: TinyData, model_type: str) -> None:
    trainer, logged = trainer_for(config, lake, tiny_data, model_type=model_type, epochs=2, loss="sampled_softmax",
                                  negatives=5)
    trainer.fit()
    assert len(logged) == 2 and all(torch.isfinite(torch.tensor(m["train_loss"])) for _, m in logged)
