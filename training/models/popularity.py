"""Most-popular baseline: every user gets the items ranked by how often they were a training target."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from lake.sequences import FIRST_ITEM_INDEX
from training.batch import Batch
from training.models.base import SequentialRecommender, VocabSizes
from training.settings import TrainSettings

__all__ = ["Popularity"]


class Popularity(SequentialRecommender):
    """Counts, not gradients: ``observe`` adds a batch's targets to ``item_counts``.

    In the shared scoring form, H = 1: the user vector is ``[1.0]`` and item i's embedding is its count,
    so ``user @ item_embeddings().T`` is the count.
    """

    gradient_trained = False

    def __init__(self, settings: TrainSettings, vocab: VocabSizes) -> None:
        super().__init__(settings, vocab)
        self.register_buffer("item_counts", torch.zeros(vocab.items))  # [V]

    def forward(self, items: torch.Tensor, behaviours: torch.Tensor, categories: torch.Tensor,
                gap_buckets: torch.Tensor) -> torch.Tensor:
        """Int64 ``[B, L]`` -> ``[B, L, 1]`` of ones (the sequence does not change the ranking)."""
        return torch.ones_like(items, dtype=self.item_counts.dtype).unsqueeze(-1)

    def item_embeddings(self) -> torch.Tensor:
        return self.item_counts.unsqueeze(-1)  # [V, 1]

    @torch.no_grad()
    def observe(self, batch: Batch) -> None:
        targets = batch.targets[batch.targets >= FIRST_ITEM_INDEX]  # [N]
        self.item_counts += torch.bincount(targets, minlength=self.vocab.items).to(self.item_counts.dtype)

    def calculate_loss(self, batch: Batch, *, denominator: float | None = None) -> torch.Tensor:
        """Mean negative log-likelihood of the batch's targets under the add-one smoothed counts (no gradient);
        with ``denominator``, their sum over it."""
        targets = batch.targets[batch.targets >= FIRST_ITEM_INDEX]  # [N]
        log_probs = F.log_softmax(torch.log1p(self.item_counts[FIRST_ITEM_INDEX:]), dim=0)  # [V - 2]
        negative = -log_probs[targets - FIRST_ITEM_INDEX]
        return negative.mean() if denominator is None else negative.sum() / denominator
