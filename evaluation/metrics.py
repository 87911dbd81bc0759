"""Ranking metrics: one implementation used by training (early stopping), evaluation, reports and the gate.

Ranks are pessimistic: an item scoring exactly as much as the held-out item is ranked above it, so ties
never favour the true item. ``UNRANKED`` is the rank of a held-out item the list could not contain (beyond
the served list, excluded by the serving rules, newer than the model): every metric, MRR included, is 0.

Two families, both defined in docs/metrics.md:

- accuracy metrics of one ranked list against the user's relevant items (HR, precision, recall, F1, NDCG,
  F1-Test at a cutoff K, and MRR), computed per user from a relevance matrix by :func:`per_user_metrics`;
  :func:`metrics_from_ranks` is the leave-one-out case (one held-out item per user, given by its rank);
- list-level metrics of the recommended top-K lists themselves (catalogue coverage, intra-list category
  diversity, average popularity), computed by :func:`list_metrics`.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

__all__ = [
    "DEFAULT_KS",
    "UNRANKED",
    "average_popularity",
    "catalogue_coverage",
    "discount",
    "intra_list_diversity",
    "list_metrics",
    "metrics_from_ranks",
    "per_user_metrics",
    "per_user_metrics_from_ranks",
    "target_ranks",
]

DEFAULT_KS: tuple[int, ...] = (1, 5, 10, 20, 50)
UNRANKED = 2**40
_DIVERSITY_CHUNK = 4096  # users per [chunk, K, K] comparison block; bounds memory at K = 50


def target_ranks(scores: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """1-based rank of each row's target among its candidates.

    Args:
        scores: ``[B, C]`` candidate scores; excluded candidates already set to ``-inf``.
        target: ``[B]`` column index of the held-out item in ``scores``.
    Returns:
        ``[B]`` int64 ranks: 1 + the number of other candidates scoring at least as high.
    """
    target_score = scores.gather(1, target.view(-1, 1))  # [B, 1]
    at_least = (scores >= target_score).sum(dim=1)  # [B], counts the target itself
    return at_least.to(torch.int64)


def discount(positions: int) -> torch.Tensor:
    """Positional gains ``1 / log2(rank + 1)`` for ranks ``1..positions``: ``[positions]`` float64."""
    ranks = torch.arange(1, positions + 1, dtype=torch.float64)
    return 1.0 / torch.log2(ranks + 1.0)


def _harmonic_mean(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    total = a + b
    return torch.where(total > 0, 2.0 * a * b / total.clamp_min(1e-300), torch.zeros_like(total))


def per_user_metrics(relevant: torch.Tensor, n_relevant: torch.Tensor,
                     ks: Sequence[int] = DEFAULT_KS) -> dict[str, torch.Tensor]:
    """Accuracy metrics of each user's ranked list at each cutoff in ``ks``.

    Args:
        relevant: ``[B, Kmax]`` bool, ``relevant[u, i]`` = the item at rank ``i + 1`` of user ``u``'s list is
            relevant; ``Kmax >= max(ks)``.
        n_relevant: ``[B]`` how many relevant items each user has in total (found in the list or not), >= 1.
        ks: cutoffs.
    Returns:
        ``{"hr@K", "precision@K", "recall@K", "f1@K", "ndcg@K", "f1_test@K": [B] float64}`` for each K.
        ``f1_test@K`` is the harmonic mean of rank-discounted precision (DCG over the DCG of a list that is
        relevant everywhere) and rank-discounted recall (DCG over the ideal DCG, i.e. NDCG).
    """
    if relevant.dim() != 2 or n_relevant.shape != relevant.shape[:1]:
        raise ValueError(f"relevant must be [B, K] and n_relevant [B]; got {tuple(relevant.shape)} and "
                         f"{tuple(n_relevant.shape)}")
    if max(ks) > relevant.shape[1]:
        raise ValueError(f"cutoff {max(ks)} exceeds the {relevant.shape[1]} ranked positions given")
    if bool((n_relevant < 1).any()):
        raise ValueError("every user needs at least one relevant item (n_relevant >= 1)")
    rel = relevant.to(torch.float64)  # [B, Kmax]
    n_rel = n_relevant.to(torch.float64)  # [B]
    gains = discount(relevant.shape[1])  # [Kmax]
    cumulative_gain = torch.cumsum(gains, dim=0)  # [Kmax], the DCG of a list relevant at every rank
    out: dict[str, torch.Tensor] = {}
    for k in ks:
        hits = rel[:, :k].sum(dim=1)  # [B]
        precision = hits / k
        recall = hits / n_rel
        dcg = (rel[:, :k] * gains[:k]).sum(dim=1)  # [B]
        ideal_positions = torch.clamp(n_relevant.to(torch.int64), max=k) - 1  # [B]
        ndcg = dcg / cumulative_gain[ideal_positions]
        discounted_precision = dcg / cumulative_gain[k - 1]
        out[f"hr@{k}"] = (hits > 0).to(torch.float64)
        out[f"precision@{k}"] = precision
        out[f"recall@{k}"] = recall
        out[f"f1@{k}"] = _harmonic_mean(precision, recall)
        out[f"ndcg@{k}"] = ndcg
        out[f"f1_test@{k}"] = _harmonic_mean(discounted_precision, ndcg)
    return out


def per_user_metrics_from_ranks(ranks: torch.Tensor,
                                ks: Sequence[int] = DEFAULT_KS) -> dict[str, torch.Tensor]:
    """Leave-one-out metrics per user: each user has one relevant item, at 1-based rank ``ranks[u]``.

    Args:
        ranks: ``[B]`` int ranks (from :func:`target_ranks`), each >= 1.
        ks: cutoffs.
    Returns:
        :func:`per_user_metrics` keys plus ``"mrr"`` (``1 / rank``, no cutoff), each ``[B]`` float64.
    """
    ranks = ranks.reshape(-1).to(torch.int64)
    if ranks.numel() == 0:
        raise ValueError("no ranks given: there is no user to evaluate")
    if bool((ranks < 1).any()):
        raise ValueError("ranks are 1-based; got a rank < 1 (a NaN score makes target_ranks return 0)")
    positions = torch.arange(1, max(ks) + 1, dtype=torch.int64)  # [Kmax]
    relevant = ranks.unsqueeze(1) == positions  # [B, Kmax]
    out = per_user_metrics(relevant, torch.ones_like(ranks), ks)
    out["mrr"] = torch.where(ranks < UNRANKED, 1.0 / ranks.to(torch.float64), 0.0)
    return out


def metrics_from_ranks(ranks: torch.Tensor, ks: Sequence[int] = DEFAULT_KS) -> dict[str, float]:
    """Leave-one-out metrics averaged over users: ``{"hr@10": ..., "ndcg@10": ..., "mrr": ..., ...}``.

    Args:
        ranks: ``[B]`` 1-based rank of each user's held-out item (pessimistic ties, see :func:`target_ranks`).
        ks: cutoffs; keys ``hr``, ``ndcg``, ``precision``, ``recall``, ``f1``, ``f1_test`` at each K,
            and ``mrr``.
    """
    return {name: float(values.mean()) for name, values in per_user_metrics_from_ranks(ranks, ks).items()}


def catalogue_coverage(top_items: torch.Tensor, catalogue_size: int) -> float:
    """Share of the catalogue appearing in at least one user's list.

    Args:
        top_items: ``[B, K]`` item indexes recommended to each user.
        catalogue_size: how many items could have been recommended.
    """
    if catalogue_size < 1:
        raise ValueError("catalogue_size must be >= 1")
    return torch.unique(top_items).numel() / catalogue_size


def intra_list_diversity(top_items: torch.Tensor, item_categories: torch.Tensor) -> torch.Tensor:
    """Per user, the share of item pairs in the list whose categories differ.

    Args:
        top_items: ``[B, K]`` item indexes, K >= 2.
        item_categories: ``[V]`` category index of each item index.
    Returns:
        ``[B]`` float64 in [0, 1]: 0 = one category, 1 = every item from a different category.
    """
    k = top_items.shape[1]
    if k < 2:
        raise ValueError("diversity needs lists of at least 2 items")
    pairs = k * (k - 1)  # ordered pairs; the diagonal is excluded below
    out = []
    for chunk in torch.split(top_items, _DIVERSITY_CHUNK):
        categories = item_categories[chunk]  # [b, K]
        same = (categories.unsqueeze(2) == categories.unsqueeze(1)).sum(dim=(1, 2)) - k  # [b], off-diagonal
        out.append(1.0 - same.to(torch.float64) / pairs)
    return torch.cat(out)


def average_popularity(top_items: torch.Tensor, item_popularity: torch.Tensor) -> torch.Tensor:
    """Per user, the mean popularity of the recommended items.

    Args:
        top_items: ``[B, K]`` item indexes.
        item_popularity: ``[V]`` popularity of each item index (e.g. its count in training data).
    Returns:
        ``[B]`` float64.
    """
    return item_popularity.to(torch.float64)[top_items].mean(dim=1)


def list_metrics(top_items: torch.Tensor, ks: Sequence[int] = DEFAULT_KS, *, catalogue_size: int,
                 item_categories: torch.Tensor | None = None,
                 item_popularity: torch.Tensor | None = None) -> dict[str, float]:
    """List-level metrics of every user's top-K list at each cutoff.

    Args:
        top_items: ``[B, Kmax]`` each user's recommendations, best first, ``Kmax >= max(ks)``.
        ks: cutoffs.
        catalogue_size: the number of recommendable items (denominator of coverage).
        item_categories: ``[V]`` category per item index; adds ``diversity@K`` for K >= 2.
        item_popularity: ``[V]`` popularity per item index; adds ``avg_popularity@K``.
    Returns:
        ``{"coverage@K", "diversity@K", "avg_popularity@K": float}`` (users averaged).
    """
    if top_items.numel() == 0:
        raise ValueError("no recommendation lists given")
    if max(ks) > top_items.shape[1]:
        raise ValueError(f"cutoff {max(ks)} exceeds the {top_items.shape[1]} recommended items per user")
    out: dict[str, float] = {}
    for k in ks:
        top_k = top_items[:, :k]  # [B, k]
        out[f"coverage@{k}"] = catalogue_coverage(top_k, catalogue_size)
        if item_categories is not None and k >= 2:
            out[f"diversity@{k}"] = float(intra_list_diversity(top_k, item_categories).mean())
        if item_popularity is not None:
            out[f"avg_popularity@{k}"] = float(average_popularity(top_k, item_popularity).mean())
    return out
