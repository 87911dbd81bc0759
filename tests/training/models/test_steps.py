"""The step embedding: switchable side features, and indexes newer than the model read as unknown."""

from __future__ import annotations

import torch

from lake import Config
from tests.training.conftest import tiny_config
from training.models import VocabSizes
from training.models.steps import StepEmbedding
from training.settings import TrainSettings

VOCAB = VocabSizes(items=20, categories=6, gap_buckets=9)


def steps_of(config: Config, **train: object) -> StepEmbedding:
    torch.manual_seed(0)
    settings = TrainSettings.from_config(tiny_config(config, dropout=0.0, **train))
    return StepEmbedding(settings, VOCAB, positions=True).eval()


def inputs(items: list[int], categories: list[int] | None = None, gaps: list[int] | None = None) -> tuple:
    row = torch.tensor([items])
    return (row, torch.ones_like(row), torch.tensor([categories or [2] * len(items)]),
            torch.tensor([gaps or [1] * len(items)]))


def test_each_side_feature_is_switchable(config: Config) -> None:
    everything = steps_of(config)
    bare = steps_of(config, use_behaviour=False, use_category=False, use_time_gap=False)
    assert all(t is not None for t in (everything.behaviours, everything.categories, everything.gap_buckets))
    assert bare.behaviours is None and bare.categories is None and bare.gap_buckets is None
    assert sum(p.numel() for p in bare.parameters()) < sum(p.numel() for p in everything.parameters())
    with torch.no_grad():
        category_a = everything(*inputs([3, 4], categories=[2, 3]))
        category_b = everything(*inputs([3, 4], categories=[2, 4]))
        assert not torch.allclose(category_a[:, -1], category_b[:, -1])
        assert torch.allclose(bare(*inputs([3, 4], categories=[2, 3])), bare(*inputs([3, 4], categories=[2, 4])))


def test_indexes_beyond_the_vocabulary_read_as_unknown(config: Config) -> None:
    steps = steps_of(config)
    with torch.no_grad():
        newer_item = steps(*inputs([3, VOCAB.items + 5]))
        unknown_item = steps(*inputs([3, 1]))
        newer_category = steps(*inputs([3, 4], categories=[2, VOCAB.categories + 1]))
        unknown_category = steps(*inputs([3, 4], categories=[2, 1]))
        huge_gap = steps(*inputs([3, 4], gaps=[1, 500]))
        top_gap = steps(*inputs([3, 4], gaps=[1, VOCAB.gap_buckets - 1]))
    assert torch.equal(newer_item, unknown_item)
    assert torch.equal(newer_category, unknown_category)
    assert torch.equal(huge_gap, top_gap)


def test_padding_rows_of_every_table_are_zero(config: Config) -> None:
    steps = steps_of(config)
    for table in (steps.items, steps.behaviours, steps.categories, steps.gap_buckets):
        assert table is not None and torch.count_nonzero(table.weight[0]) == 0
