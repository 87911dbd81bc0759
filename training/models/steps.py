"""The per-step input embedding shared by the neural models: item + optional position and side features."""

from __future__ import annotations

import torch
from torch import nn

from lake.schemas import PAD_INDEX, UNKNOWN_INDEX
from training.models.base import VocabSizes
from training.settings import TrainSettings

__all__ = ["StepEmbedding"]

INIT_STD = 0.02


def _embedding(rows: int, hidden: int) -> nn.Embedding:
    table = nn.Embedding(rows, hidden, padding_idx=PAD_INDEX)
    nn.init.normal_(table.weight, std=INIT_STD)
    with torch.no_grad():
        table.weight[PAD_INDEX].zero_()
    return table


class StepEmbedding(nn.Module):
    """Sum of the step's embeddings, layer-normalised, with dropout.

    The item table doubles as the output layer (tied). Positions count back from the most recent step
    (0 = last), so a sequence scores the same however much left padding it carries. Indexes beyond a
    table (items or categories newer than the model, seen at scoring time) read as unknown.
    """

    def __init__(self, settings: TrainSettings, vocab: VocabSizes, *, positions: bool) -> None:
        super().__init__()
        hidden = settings.hidden_size
        self.vocab = vocab
        self.items = _embedding(vocab.items, hidden)
        self.positions = nn.Embedding(settings.max_len, hidden) if positions else None
        if self.positions is not None:
            nn.init.normal_(self.positions.weight, std=INIT_STD)
        self.behaviours = _embedding(vocab.behaviours, hidden) if settings.use_behaviour else None
        self.categories = _embedding(vocab.categories, hidden) if settings.use_category else None
        self.gap_buckets = _embedding(vocab.gap_buckets, hidden) if settings.use_time_gap else None
        self.norm = nn.LayerNorm(hidden)
        self.dropout = nn.Dropout(settings.dropout)

    def forward(self, items: torch.Tensor, behaviours: torch.Tensor, categories: torch.Tensor,
                gap_buckets: torch.Tensor) -> torch.Tensor:
        """Int64 ``[B, L]`` each -> ``[B, L, H]``."""
        steps = self.items(_known(items, self.vocab.items))  # [B, L, H]
        if self.positions is not None:
            length = items.shape[1]
            from_end = torch.arange(length - 1, -1, -1, device=items.device)  # [L]
            from_end = from_end.clamp(max=self.positions.num_embeddings - 1)
            real = (items != PAD_INDEX).unsqueeze(-1)  # [B, L, 1]
            steps = steps + self.positions(from_end) * real
        if self.behaviours is not None:
            steps = steps + self.behaviours(torch.where(behaviours < self.vocab.behaviours, behaviours, PAD_INDEX))
        if self.categories is not None:
            steps = steps + self.categories(_known(categories, self.vocab.categories))
        if self.gap_buckets is not None:
            steps = steps + self.gap_buckets(gap_buckets.clamp(max=self.vocab.gap_buckets - 1))
        return self.dropout(self.norm(steps))


def _known(index: torch.Tensor, size: int) -> torch.Tensor:
    return torch.where(index < size, index, UNKNOWN_INDEX)
