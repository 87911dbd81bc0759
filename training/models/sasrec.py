"""SASRec: a causal Transformer encoder over the user's steps (Kang & McAuley, 2018), tied output layer."""

from __future__ import annotations

import torch
from torch import nn

from lake.schemas import PAD_INDEX
from training.models.base import SequentialRecommender, VocabSizes
from training.models.steps import StepEmbedding
from training.settings import TrainSettings

__all__ = ["SASRec", "blocked_attention"]


class SASRec(SequentialRecommender):
    """Self-attentive sequential recommendation.

    ``num_layers`` blocks of ``num_heads``-head causal self-attention and a feed-forward layer of
    ``inner_size``; ``layer_norm`` = pre (normalise before each sub-layer, plus a final norm) or post
    (the original arrangement).
    """

    def __init__(self, settings: TrainSettings, vocab: VocabSizes) -> None:
        super().__init__(settings, vocab)
        hidden = settings.hidden_size
        self.steps = StepEmbedding(settings, vocab, positions=True)
        pre_norm = settings.layer_norm == "pre"
        block = nn.TransformerEncoderLayer(
            hidden, settings.num_heads, settings.inner_size, settings.dropout,
            activation="gelu", batch_first=True, norm_first=pre_norm,
        )
        self.blocks = nn.TransformerEncoder(
            block, settings.num_layers, norm=nn.LayerNorm(hidden) if pre_norm else None,
            enable_nested_tensor=False,
        )

    def forward(self, items: torch.Tensor, behaviours: torch.Tensor, categories: torch.Tensor,
                gap_buckets: torch.Tensor) -> torch.Tensor:
        """Int64 ``[B, L]`` each -> ``[B, L, H]``."""
        steps = self.steps(items, behaviours, categories, gap_buckets)  # [B, L, H]
        blocked = blocked_attention(items != PAD_INDEX, self.settings.num_heads)  # [B * heads, L, L]
        # is_causal=False: the mask is already causal, and letting torch test it adds shape guards
        # that break torch.export's dynamic batch dimension
        return self.blocks(steps, mask=blocked, is_causal=False)  # [B, L, H]

    def item_embeddings(self) -> torch.Tensor:
        return self.steps.items.weight  # [V, H]


def blocked_attention(real: torch.Tensor, heads: int) -> torch.Tensor:
    """Which keys each query may not attend to: later steps and padding.

    Args:
        real: ``[B, L]`` True at real (non-padding) steps.
        heads: attention heads (the mask is repeated per head, as nn.MultiheadAttention expects).
    Returns:
        ``[B * heads, L, L]`` bool, True = blocked. A padding query still sees itself, so no softmax row is
        empty (an empty row would give NaN, and NaN leaks through a zero attention weight).
    """
    length = real.shape[1]
    steps = torch.arange(length, device=real.device)
    causal = steps[None, :] <= steps[:, None]  # [L, L], query i sees keys j <= i
    itself = torch.eye(length, dtype=torch.bool, device=real.device)  # [L, L]
    allowed = causal[None] & (real[:, None, :] | itself[None])  # [B, L, L]
    return (~allowed).repeat_interleave(heads, dim=0)
