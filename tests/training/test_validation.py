"""Validation ranking: padding, unknown and seen items are masked, the held-out item stays, NDCG@10 is right
under both protocols, and sampled candidates never include the user's own items."""

from __future__ import annotations

import math

import torch

from lake import Config
from tests.training.conftest import tiny_config
from training.batch import Batch
from training.models import Popularity, VocabSizes, build_model
from training.settings import TrainSettings
from training.validation import mask_seen, ranking_totals, sampled_candidates


def popularity(config: Config, counts: list[float]) -> Popularity:
    model = build_model(TrainSettings.from_config(tiny_config(config, model_type="popularity")),
                        VocabSizes(items=len(counts), categories=3))
    assert isinstance(model, Popularity)
    model.item_counts.copy_(torch.tensor(counts))
    return model


def valid_batch(items: list[list[int]], last_targets: list[int]) -> Batch:
    history = torch.tensor(items)
    targets = torch.zeros_like(history)
    targets[:, -1] = torch.tensor(last_targets)
    return Batch(history, history.clone(), history.clone(), history.clone(), targets)


def test_seen_padding_and_unknown_items_are_masked_but_the_target_stays(config: Config) -> None:
    model = popularity(config, [100, 90, 80, 70, 60, 50, 40])
    batch = valid_batch([[0, 3, 4], [0, 0, 5]], [3, 6])  # row 0 saw its target before
    scores = mask_seen(model.full_sort_predict(batch).float(), batch)
    assert scores[0].tolist()[:2] == [-math.inf, -math.inf] and scores[0, 4] == -math.inf
    assert scores[0, 3] == 70 and scores[0, 2] == 80
    assert scores[1, 5] == -math.inf and scores[1, 6] == 40


def test_ranking_totals_give_ndcg_and_hit_rate_at_10(config: Config) -> None:
    counts = [0, 0] + [float(100 - i) for i in range(20)]  # item 2 most popular, then 3, 4, ...
    model = popularity(config, counts)
    batch = valid_batch([[0, 2, 3], [0, 0, 9], [0, 0, 21], [0, 0, 5]], [4, 4, 20, 1])
    # sampled: the target first, then its negatives (row 3's target is unknown, so its row is skipped)
    candidates = torch.tensor([[4, 2, 3], [4, 5, 6], [20, 2, 21], [1, 5, 6]])
    totals = ranking_totals(model, [batch], [candidates], torch.device("cpu"))
    # full: row 0: 2 and 3 seen -> item 4 ranks 1; row 1: 2, 3 rank above -> 3; row 2: item 20 ranks 18
    assert totals.users == 3 and totals.hits == 2
    assert math.isclose(totals.ndcg, 1.0 + 1 / math.log2(4))
    # sampled: row 0: 2 and 3 score higher -> rank 3; row 1: rank 1; row 2: 2 scores higher -> rank 2
    assert totals.sampled_hits == 3
    assert math.isclose(totals.sampled_ndcg, 1 / math.log2(4) + 1.0 + 1 / math.log2(3))
    metrics = totals.metrics()
    assert math.isclose(metrics["valid_ndcg@10"], (1.0 + 0.5) / 3) and math.isclose(metrics["valid_hr@10"], 2 / 3)
    assert math.isclose(metrics["valid_sampled_hr@10"], 1.0)


def test_sampled_candidates_are_the_target_then_distinct_unseen_items() -> None:
    batch = valid_batch([[0, 3, 4, 5], [0, 0, 0, 7], [6, 7, 8, 9]], [5, 8, 2])  # row 0 saw its target
    candidates = sampled_candidates(batch, 4, vocab_size=12, generator=torch.Generator().manual_seed(0))
    assert candidates.shape == (3, 5) and candidates[:, 0].tolist() == [5, 8, 2]
    for row, negatives in enumerate(candidates[:, 1:].tolist()):
        assert len(set(negatives)) == 4 and all(item >= 2 for item in negatives)
        assert not set(negatives) & (set(batch.items[row].tolist()) | {int(batch.targets[row, -1])})
    # row 2 leaves only 5 items (3, 4, 5, 10, 11): every row gets that many rather than an error
    smaller = sampled_candidates(batch, 100, vocab_size=12, generator=torch.Generator().manual_seed(0))
    assert smaller.shape == (3, 6)
    assert sorted(smaller[2, 1:].tolist()) == [3, 4, 5, 10, 11]
