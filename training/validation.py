"""Validation for early stopping: each valid row's held-out last target ranked under both protocols.

Full: against the whole catalogue, with padding, unknown and the items already in the user's sequence masked
(the held-out item stays a candidate even if the user saw it before), as evaluation does. Sampled: against
``negatives`` items drawn per row, uniformly from the items not in its sequence, from the same seed every epoch,
so epochs are compared on the same candidates.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import torch

from evaluation.metrics import per_user_metrics_from_ranks, target_ranks
from evaluation.protocols import sample_negatives
from lake.sequences import FIRST_ITEM_INDEX
from training.batch import Batch
from training.models import SequentialRecommender
from training.settings import VALID_METRICS

__all__ = ["RankingTotals", "mask_seen", "ranking_totals", "sampled_candidates"]

CUTOFF = 10


@dataclass(frozen=True)
class RankingTotals:
    """Sums over one worker's valid rows; add them over workers, then divide by ``users``."""

    ndcg: float
    hits: float
    sampled_ndcg: float
    sampled_hits: float
    users: float

    def as_tensor(self) -> torch.Tensor:
        return torch.tensor([self.ndcg, self.hits, self.sampled_ndcg, self.sampled_hits, self.users],
                            dtype=torch.float64)

    @classmethod
    def from_tensor(cls, values: torch.Tensor) -> RankingTotals:
        return cls(*(float(v) for v in values))

    def metrics(self) -> dict[str, float]:
        """The ``VALID_METRICS`` (0 when there were no users)."""
        users = max(self.users, 1.0)
        sums = (self.ndcg, self.hits, self.sampled_ndcg, self.sampled_hits)
        return {name: total / users for name, total in zip(VALID_METRICS, sums, strict=True)}


def mask_seen(scores: torch.Tensor, batch: Batch) -> torch.Tensor:
    """``scores`` ``[B, V]`` with padding, unknown and seen items set to -inf in place, except the target."""
    target = batch.targets[:, -1]  # [B]
    target_score = scores.gather(1, target[:, None])  # [B, 1]
    scores[:, :FIRST_ITEM_INDEX] = float("-inf")
    scores.scatter_(1, batch.items.clamp(max=scores.shape[1] - 1), float("-inf"))
    return scores.scatter_(1, target[:, None], target_score)


def sampled_candidates(batch: Batch, negatives: int, vocab_size: int, generator: torch.Generator) -> torch.Tensor:
    """``[B, 1 + N]`` item indexes: each row's held-out target, then N distinct items outside its sequence.

    N is ``negatives``, or fewer when a catalogue is too small to leave that many for some row (tiny test
    data); it is never below 1 unless the catalogue has no other item.
    """
    target = batch.targets[:, -1].clamp(max=vocab_size - 1)  # [B]
    excluded = torch.zeros(len(target), vocab_size, dtype=torch.bool)  # [B, V]
    excluded[:, :FIRST_ITEM_INDEX] = True
    excluded.scatter_(1, batch.items.clamp(max=vocab_size - 1), True)
    excluded.scatter_(1, target[:, None], True)
    available = int((~excluded).sum(dim=1).min())
    drawn = sample_negatives(excluded, min(negatives, available), generator)  # [B, N]
    return torch.cat([target[:, None], drawn], dim=1)


@torch.no_grad()
def ranking_totals(model: SequentialRecommender, batches: Iterable[Batch], candidates: Iterable[torch.Tensor],
                   device: torch.device) -> RankingTotals:
    """NDCG@10 and HR@10 sums, full and sampled, over ``batches`` of valid rows (targets all 0 but the last
    position); the i-th of ``candidates`` is ``sampled_candidates`` of the i-th batch (an iterator may draw
    each only when it is ranked)."""
    was_training = model.training
    model.eval()
    sums = torch.zeros(4, dtype=torch.float64)
    users = 0
    for batch, sampled in zip(batches, candidates, strict=True):
        batch = batch.to(device)
        known = batch.targets[:, -1] >= FIRST_ITEM_INDEX  # a row whose held-out item is unknown has no rank
        if not bool(known.any()):
            continue
        target = batch.targets[:, -1]  # [B]
        scores = model.full_sort_predict(batch).float()  # [B, V]
        sampled_scores = scores.gather(1, sampled.to(device))  # [B, 1 + N], the target in column 0
        full_ranks = target_ranks(mask_seen(scores, batch), target)[known]
        sampled_ranks = target_ranks(sampled_scores, torch.zeros_like(target))[known]
        for offset, ranks in ((0, full_ranks), (2, sampled_ranks)):
            per_user = per_user_metrics_from_ranks(ranks.cpu(), (CUTOFF,))
            sums[offset] += float(per_user[f"ndcg@{CUTOFF}"].sum())
            sums[offset + 1] += float(per_user[f"hr@{CUTOFF}"].sum())
        users += int(known.sum())
    model.train(was_training)
    return RankingTotals(*sums.tolist(), users=float(users))
