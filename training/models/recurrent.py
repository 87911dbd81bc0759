"""GRU/LSTM baseline (GRU4Rec-style) behind the same contract, with the same step embedding and tied output."""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from lake.schemas import PAD_INDEX
from training.models.base import SequentialRecommender, VocabSizes
from training.models.steps import StepEmbedding
from training.settings import TrainSettings

__all__ = ["RecurrentRecommender"]


class RecurrentRecommender(SequentialRecommender):
    """A stack of ``num_layers`` GRU or LSTM layers over the step embeddings.

    Recurrent state would drift over left padding, so each sequence is shifted to start at step 0 before the
    RNN and shifted back after: a padded sequence scores exactly as the unpadded one.
    """

    def __init__(self, settings: TrainSettings, vocab: VocabSizes, cell: Literal["gru", "lstm"]) -> None:
        super().__init__(settings, vocab)
        hidden = settings.hidden_size
        self.steps = StepEmbedding(settings, vocab, positions=False)
        rnn = nn.GRU if cell == "gru" else nn.LSTM
        self.rnn = rnn(hidden, hidden, settings.num_layers, batch_first=True,
                       dropout=settings.dropout if settings.num_layers > 1 else 0.0)
        self.dropout = nn.Dropout(settings.dropout)

    def forward(self, items: torch.Tensor, behaviours: torch.Tensor, categories: torch.Tensor,
                gap_buckets: torch.Tensor) -> torch.Tensor:
        """Int64 ``[B, L]`` each -> ``[B, L, H]``."""
        steps = self.steps(items, behaviours, categories, gap_buckets)  # [B, L, H]
        length = items.shape[1]
        padding = (items == PAD_INDEX).sum(dim=1, keepdim=True)  # [B, 1]
        positions = torch.arange(length, device=items.device)[None, :]  # [1, L]
        to_front = ((positions + padding) % length).unsqueeze(-1).expand_as(steps)  # [B, L, H]
        states, _ = self.rnn(steps.gather(1, to_front))  # [B, L, H], real steps first
        to_back = ((positions - padding) % length).unsqueeze(-1).expand_as(states)
        return self.dropout(states.gather(1, to_back))  # [B, L, H], left-padded again

    def item_embeddings(self) -> torch.Tensor:
        return self.steps.items.weight  # [V, H]
