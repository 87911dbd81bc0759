"""Validation ranking: padding, unknown and seen items are masked, the held-out item stays, NDCG@10 is right."""

from __future__ import annotations

import math

import torch

from lake import Config
from tests.training.conftest import tiny_config
from training.batch import Batch
from training.models import Popularity, VocabSizes, build_model
from training.settings import train_settings
from training.validation import masked_scores, ranking_totals


def popularity(config: Config, counts: list[float]) -> Popularity:
    model = build_model(train_settings(tiny_config(config, model_type="popularity")),
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
    scores = masked_scores(model, batch)
    assert scores[0].tolist()[:2] == [-math.inf, -math.inf] and scores[0, 4] == -math.inf
    assert scores[0, 3] == 70 and scores[0, 2] == 80
    assert scores[1, 5] == -math.inf and scores[1, 6] == 40


def test_ranking_totals_give_ndcg_and_hit_rate_at_10(config: Config) -> None:
    counts = [0, 0] + [float(100 - i) for i in range(20)]  # item 2 most popular, then 3, 4, ...
    model = popularity(config, counts)
    batch = valid_batch([[0, 2, 3], [0, 0, 9], [0, 0, 21], [0, 0, 5]], [4, 4, 20, 1])
    totals = ranking_totals(model, [batch], torch.device("cpu"))
    # row 0: 2 and 3 seen -> item 4 ranks 1; row 1: 2, 3 rank above -> 3; row 2: item 20 ranks 18; row 3 unknown
    assert totals.users == 3 and totals.hits == 2
    assert math.isclose(totals.ndcg, 1.0 + 1 / math.log2(4))
    metrics = totals.metrics()
    assert math.isclose(metrics["valid_ndcg@10"], (1.0 + 0.5) / 3) and math.isclose(metrics["valid_hr@10"], 2 / 3)
