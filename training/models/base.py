"""The model contract every recommender implements (after RecBole's AbstractRecommender).

``forward`` encodes left-padded sequences to one state per step; the state at the last step is the user
vector. Scores are dot products with ``item_embeddings()``, the same matrix the exported scorer ships, so
training, evaluation and Spark scoring rank items identically.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from lake.schemas import BEHAVIOURS
from lake.sequences import FIRST_ITEM_INDEX
from training.batch import Batch
from training.losses import sequence_loss
from training.settings import TrainSettings

__all__ = ["SequentialRecommender", "VocabSizes"]


@dataclass(frozen=True)
class VocabSizes:
    """Embedding table sizes (max index + 1) for each step feature."""

    items: int
    categories: int
    behaviours: int = len(BEHAVIOURS) + 1
    gap_buckets: int = 65


class SequentialRecommender(nn.Module, ABC):
    """A next-item recommender over left-padded sequences.

    Subclasses implement ``forward`` and ``item_embeddings``; loss and scoring follow from them.
    ``gradient_trained`` is False for models fitted by counting (see ``observe``).
    """

    gradient_trained: ClassVar[bool] = True

    def __init__(self, settings: TrainSettings, vocab: VocabSizes) -> None:
        super().__init__()
        self.settings = settings
        self.vocab = vocab

    @abstractmethod
    def forward(self, items: torch.Tensor, behaviours: torch.Tensor, categories: torch.Tensor,
                gap_buckets: torch.Tensor) -> torch.Tensor:
        """Left-padded int64 ``[B, L]`` inputs -> step states ``[B, L, H]`` (step t sees steps <= t only)."""

    @abstractmethod
    def item_embeddings(self) -> torch.Tensor:
        """``[V, H]`` output item embeddings; scores are ``user_vectors @ item_embeddings().T``."""

    def user_vectors(self, batch: Batch) -> torch.Tensor:
        """``[B, H]``: the state at each sequence's last (most recent) step."""
        return self(*batch.inputs())[:, -1]

    def calculate_loss(self, batch: Batch, *, denominator: float | None = None) -> torch.Tensor:
        """Scalar training loss over every position with a target (``settings.loss``): their mean, or their
        sum over ``denominator`` (see ``sequence_loss``)."""
        hidden = self(*batch.inputs())  # [B, L, H]
        return sequence_loss(self.settings.loss, hidden, batch.targets, self.item_embeddings(),
                             negatives=self.settings.negatives, weights=self.target_weights(batch),
                             denominator=denominator)

    def loss_mass(self, batch: Batch) -> float:
        """The total weight of the batch's positions with a target (their count when all weigh 1)."""
        at = batch.targets >= FIRST_ITEM_INDEX
        weights = self.target_weights(batch)
        return float(weights[at].sum() if weights is not None else at.sum())

    def target_weights(self, batch: Batch) -> torch.Tensor | None:
        """``[B, L]`` each position's loss weight from its target's behaviour (``train.target_weights``);
        None when every behaviour weighs 1."""
        weights = self.settings.target_weights
        if not weights or all(value == 1 for value in weights.values()):
            return None
        if batch.target_behaviours is None:
            raise ValueError("train.target_weights needs each target's behaviour; the batch has none")
        table = torch.ones(len(BEHAVIOURS) + 1)
        for name, value in weights.items():
            table[BEHAVIOURS.index(name) + 1] = float(value)
        return table[batch.target_behaviours]

    def predict(self, batch: Batch, candidate_items: torch.Tensor) -> torch.Tensor:
        """Scores ``[B, C]`` of ``candidate_items`` ``[B, C]`` for each sequence."""
        users = self.user_vectors(batch)  # [B, H]
        candidates = self.item_embeddings()[candidate_items]  # [B, C, H]
        return torch.einsum("bh,bch->bc", users, candidates)

    def full_sort_predict(self, batch: Batch) -> torch.Tensor:
        """Scores ``[B, V]`` of every item index (padding and unknown included; callers mask them)."""
        return self.user_vectors(batch) @ self.item_embeddings().T

    def observe(self, batch: Batch) -> None:
        """Accumulate statistics from one batch (models with ``gradient_trained = False`` only)."""
        raise NotImplementedError(f"{type(self).__name__} is trained by gradient descent, not by observe()")
