"""Validation for early stopping: full-catalogue rank of each valid row's held-out last target.

Padding, unknown and the items already in the user's sequence are masked before ranking (the held-out
item stays a candidate even if the user saw it before), as evaluation does.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import torch

from training.batch import Batch
from training.losses import FIRST_ITEM
from training.metrics import per_user_metrics_from_ranks, target_ranks
from training.models import SequentialRecommender

__all__ = ["RankingTotals", "masked_scores", "ranking_totals"]

CUTOFF = 10


@dataclass(frozen=True)
class RankingTotals:
    """Sums over one worker's valid rows; add them over workers, then divide by ``users``."""

    ndcg: float
    hits: float
    users: float

    def as_tensor(self) -> torch.Tensor:
        return torch.tensor([self.ndcg, self.hits, self.users], dtype=torch.float64)

    @classmethod
    def from_tensor(cls, values: torch.Tensor) -> RankingTotals:
        return cls(*(float(v) for v in values))

    def metrics(self) -> dict[str, float]:
        """``valid_ndcg@10`` and ``valid_hr@10`` (0 when there were no users)."""
        users = max(self.users, 1.0)
        return {f"valid_ndcg@{CUTOFF}": self.ndcg / users, f"valid_hr@{CUTOFF}": self.hits / users}


def masked_scores(model: SequentialRecommender, batch: Batch) -> torch.Tensor:
    """``[B, V]`` full-catalogue scores with padding, unknown and seen items at -inf, except the target."""
    scores = model.full_sort_predict(batch).float()  # [B, V]
    target = batch.targets[:, -1]  # [B]
    target_score = scores.gather(1, target[:, None])  # [B, 1]
    scores[:, :FIRST_ITEM] = float("-inf")
    scores.scatter_(1, batch.items.clamp(max=scores.shape[1] - 1), float("-inf"))
    return scores.scatter_(1, target[:, None], target_score)


@torch.no_grad()
def ranking_totals(model: SequentialRecommender, batches: Iterable[Batch], device: torch.device) -> RankingTotals:
    """NDCG@10 and HR@10 sums over ``batches`` of valid rows (targets all 0 but the last position)."""
    was_training = model.training
    model.eval()
    ndcg = hits = users = 0.0
    for batch in batches:
        batch = batch.to(device)
        ranks = target_ranks(masked_scores(model, batch), batch.targets[:, -1])  # [B]
        ranks = ranks[batch.targets[:, -1] >= FIRST_ITEM]  # a row whose held-out item is unknown has no rank
        if len(ranks) == 0:
            continue
        per_user = per_user_metrics_from_ranks(ranks.cpu(), (CUTOFF,))
        ndcg += float(per_user[f"ndcg@{CUTOFF}"].sum())
        hits += float(per_user[f"hr@{CUTOFF}"].sum())
        users += len(ranks)
    model.train(was_training)
    return RankingTotals(ndcg, hits, users)
