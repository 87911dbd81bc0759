"""Metrics against values computed by hand (see docs/metrics.md for the worked examples)."""

import math

import pytest
import torch

from evaluation.metrics import (
    average_popularity,
    catalogue_coverage,
    intra_list_diversity,
    list_metrics,
    metrics_from_ranks,
    per_user_metrics,
    per_user_metrics_from_ranks,
    target_ranks,
)

# 1 + 1/log2(3) + 1/log2(4) + 1/log2(5) + 1/log2(6), the DCG of a 5-item list relevant everywhere.
Z5 = 2.948459


def test_ties_do_not_favour_the_target():
    scores = torch.tensor([[1.0, 1.0, 0.5], [0.2, 0.9, 0.9], [3.0, 2.0, 1.0]])
    ranks = target_ranks(scores, torch.tensor([0, 2, 0]))
    assert ranks.tolist() == [2, 2, 1]


def test_excluded_candidates_do_not_count():
    scores = torch.tensor([[float("-inf"), 0.1, 0.3]])
    assert target_ranks(scores, torch.tensor([1])).tolist() == [2]


def test_leave_one_out_metrics_by_hand():
    m = metrics_from_ranks(torch.tensor([1, 3, 12, 60]), ks=(1, 5, 10))
    assert m["hr@1"] == pytest.approx(0.25)
    assert m["hr@5"] == pytest.approx(0.5)
    assert m["hr@10"] == pytest.approx(0.5)
    assert m["ndcg@1"] == pytest.approx(0.25)
    assert m["ndcg@5"] == pytest.approx((1.0 + 0.5) / 4)
    assert m["mrr"] == pytest.approx((1 + 1 / 3 + 1 / 12 + 1 / 60) / 4)
    assert m["precision@5"] == pytest.approx((0.2 + 0.2) / 4)
    assert m["recall@5"] == pytest.approx(0.5)
    # a hit at K=5: P = 1/5, R = 1, F1 = 2 * 0.2 / 1.2 = 1/3; two hits out of four users.
    assert m["f1@5"] == pytest.approx(2 * (1 / 3) / 4)
    # F1-Test for one relevant item at rank r <= K: 2 g(r) / (1 + Z_K); g(1) = 1, g(3) = 0.5.
    assert m["f1_test@5"] == pytest.approx((2 * 1.0 / (1 + Z5) + 2 * 0.5 / (1 + Z5)) / 4, abs=1e-6)
    assert m["f1_test@1"] == pytest.approx(0.25)


def test_f1_test_worked_example_from_docs():
    # docs/metrics.md: one held-out item at rank 3, K = 5.
    values = per_user_metrics_from_ranks(torch.tensor([3]), ks=(5,))
    assert values["ndcg@5"].item() == pytest.approx(0.5)
    assert values["f1_test@5"].item() == pytest.approx(0.25326, abs=1e-5)
    assert values["f1@5"].item() == pytest.approx(1 / 3)


def test_general_relevance_with_two_relevant_items():
    # list [hit, miss, hit], the user has 2 relevant items: docs/metrics.md second example.
    values = per_user_metrics(torch.tensor([[True, False, True]]), torch.tensor([2]), ks=(3,))
    assert values["precision@3"].item() == pytest.approx(2 / 3)
    assert values["recall@3"].item() == pytest.approx(1.0)
    assert values["f1@3"].item() == pytest.approx(0.8)
    ideal = 1 + 1 / math.log2(3)
    assert values["ndcg@3"].item() == pytest.approx(1.5 / ideal)
    assert values["f1_test@3"].item() == pytest.approx(0.79748, abs=1e-5)


def test_f1_test_rewards_ranking_where_f1_does_not():
    early, late = per_user_metrics_from_ranks(torch.tensor([1, 10]), ks=(10,))["f1_test@10"].tolist()
    plain = per_user_metrics_from_ranks(torch.tensor([1, 10]), ks=(10,))["f1@10"].tolist()
    assert plain[0] == plain[1]
    assert early > late > 0


def test_misses_score_zero_and_bad_ranks_are_refused():
    values = per_user_metrics_from_ranks(torch.tensor([51]), ks=(50,))
    assert all(v.item() == 0.0 for k, v in values.items() if k != "mrr")
    with pytest.raises(ValueError, match="1-based"):
        metrics_from_ranks(torch.tensor([0, 3]))
    with pytest.raises(ValueError, match="no ranks"):
        metrics_from_ranks(torch.tensor([], dtype=torch.int64))


def test_list_level_metrics_by_hand():
    top = torch.tensor([[2, 3, 4], [3, 5, 2]])
    categories = torch.tensor([0, 1, 7, 7, 8, 9])  # items 2 and 3 share category 7
    popularity = torch.tensor([0, 0, 10, 4, 1, 30])
    assert catalogue_coverage(top, catalogue_size=8) == pytest.approx(4 / 8)
    # user 0: pairs (2,3) same, (2,4), (3,4) differ -> 2/3; user 1: (3,2) same -> 2/3.
    assert intra_list_diversity(top, categories).tolist() == pytest.approx([2 / 3, 2 / 3])
    assert average_popularity(top, popularity).tolist() == pytest.approx([5.0, (4 + 30 + 10) / 3])
    m = list_metrics(top, ks=(1, 3), catalogue_size=8, item_categories=categories, item_popularity=popularity)
    assert m["coverage@1"] == pytest.approx(2 / 8)
    assert "diversity@1" not in m
    assert m["diversity@3"] == pytest.approx(2 / 3)
    assert m["avg_popularity@1"] == pytest.approx((10 + 4) / 2)


def test_diversity_is_chunk_independent():
    generator = torch.Generator().manual_seed(0)
    top = torch.randint(0, 50, (5000, 10), generator=generator)
    categories = torch.randint(0, 5, (50,), generator=generator)
    whole = intra_list_diversity(top, categories)
    by_row = torch.stack([intra_list_diversity(top[i : i + 1], categories)[0] for i in range(0, 5000, 499)])
    assert whole[::499].tolist() == pytest.approx(by_row.tolist())
