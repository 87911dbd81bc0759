"""The popularity baseline: counts of training targets, scored through the shared contract."""

from __future__ import annotations

import torch

from lake import Config
from tests.training.conftest import tiny_config
from training.batch import Batch
from training.models import Popularity, VocabSizes, build_model
from training.settings import TrainSettings

VOCAB = VocabSizes(items=8, categories=3)


def batch_with_targets(targets: list[list[int]]) -> Batch:
    target = torch.tensor(targets)
    items = torch.where(target > 0, 2, 0)
    return Batch(items, items.clone(), items.clone(), items.clone(), target)


def test_scores_are_target_counts_whatever_the_sequence(config: Config) -> None:
    model = build_model(TrainSettings.from_config(tiny_config(config, model_type="popularity")), VOCAB)
    assert isinstance(model, Popularity) and not model.gradient_trained
    model.observe(batch_with_targets([[0, 3, 3, 5], [4, 3, 1, 0]]))  # 0 and 1 (unknown) are not counted
    model.observe(batch_with_targets([[0, 0, 5, 7]]))
    expected = torch.tensor([0, 0, 0, 3, 1, 2, 0, 1], dtype=torch.float32)
    assert torch.equal(model.item_counts, expected)
    scores = model.full_sort_predict(batch_with_targets([[0, 0, 0, 6], [6, 5, 4, 3]]))
    assert torch.equal(scores, expected.expand(2, -1))
    assert model.user_vectors(batch_with_targets([[0, 6]])).tolist() == [[1.0]]


def test_loss_is_the_smoothed_negative_log_likelihood(config: Config) -> None:
    model = build_model(TrainSettings.from_config(tiny_config(config, model_type="popularity")), VOCAB)
    model.observe(batch_with_targets([[3, 3, 3, 4]]))
    frequent = model.calculate_loss(batch_with_targets([[0, 3]]))
    rare = model.calculate_loss(batch_with_targets([[0, 6]]))
    assert torch.isfinite(frequent) and frequent < rare
    counts = model.item_counts[2:] + 1
    assert torch.isclose(frequent, -torch.log(counts[1] / counts.sum()))
