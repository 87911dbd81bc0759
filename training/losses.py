"""Next-item losses over the tied item embeddings: full softmax, sampled softmax, and SASRec's BCE.

Scores are dot products ``hidden @ item_embeddings.T``. Padding (0) and unknown (1) are never targets and
never candidates; negatives are drawn uniformly from the real items, never equal to the position's target.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F

from lake.sequences import FIRST_ITEM_INDEX

__all__ = ["LossType", "binary_cross_entropy", "full_softmax", "sampled_softmax", "sequence_loss"]

LossType = Literal["full_softmax", "sampled_softmax", "bce"]


def sequence_loss(kind: LossType, hidden: torch.Tensor, targets: torch.Tensor, item_embeddings: torch.Tensor,
                  *, negatives: int = 100, weights: torch.Tensor | None = None) -> torch.Tensor:
    """Mean loss over the positions that have a real target, weighted by ``weights`` when given.

    Args:
        kind: which loss.
        hidden: ``[B, L, H]`` sequence states.
        targets: ``[B, L]`` next item per position; below FIRST_ITEM_INDEX means no loss there.
        item_embeddings: ``[V, H]`` the output (tied) item embeddings.
        negatives: negatives per position for ``sampled_softmax``.
        weights: ``[B, L]`` each position's weight (e.g. purchases above clicks); None = all equal.
    """
    at = targets >= FIRST_ITEM_INDEX  # [B, L]
    states = hidden[at]  # [N, H]
    wanted = targets[at]  # [N]
    if wanted.numel() == 0:
        # keeps the graph (and every worker's allreduce) intact for a batch without targets
        return hidden.sum() * 0.0
    if kind == "full_softmax":
        losses = full_softmax(states, wanted, item_embeddings)
    elif kind == "sampled_softmax":
        losses = sampled_softmax(states, wanted, item_embeddings, negatives)
    elif kind == "bce":
        losses = binary_cross_entropy(states, wanted, item_embeddings)
    else:
        raise ValueError(f"unknown loss {kind!r}; use full_softmax, sampled_softmax or bce")
    if weights is None:
        return losses.mean()
    chosen = weights[at].to(losses.dtype)  # [N]
    return (losses * chosen).sum() / chosen.sum()


def full_softmax(states: torch.Tensor, targets: torch.Tensor, item_embeddings: torch.Tensor) -> torch.Tensor:
    """``[N]`` cross-entropy against every real item. states ``[N, H]``, targets ``[N]``, item_embeddings
    ``[V, H]``."""
    logits = (states @ item_embeddings.T).float()  # [N, V]
    logits[:, :FIRST_ITEM_INDEX] = float("-inf")
    return F.cross_entropy(logits, targets, reduction="none")


def sampled_softmax(states: torch.Tensor, targets: torch.Tensor, item_embeddings: torch.Tensor,
                    negatives: int) -> torch.Tensor:
    """``[N]`` cross-entropy of the target against ``negatives`` uniform items per position (no logQ
    correction is needed: the proposal is uniform). states ``[N, H]``, targets ``[N]``."""
    sampled = uniform_negatives(targets, negatives, item_embeddings.shape[0])  # [N, K]
    positive = (states * item_embeddings[targets]).sum(-1, keepdim=True)  # [N, 1]
    negative = torch.einsum("nh,nkh->nk", states, item_embeddings[sampled])  # [N, K]
    logits = torch.cat([positive, negative], dim=1).float()  # [N, 1 + K]
    return F.cross_entropy(logits, torch.zeros_like(targets), reduction="none")


def binary_cross_entropy(states: torch.Tensor, targets: torch.Tensor, item_embeddings: torch.Tensor) -> torch.Tensor:
    """``[N]`` original SASRec loss: -log σ(s_pos) - log(1 - σ(s_neg)) with one uniform negative per position."""
    sampled = uniform_negatives(targets, 1, item_embeddings.shape[0])[:, 0]  # [N]
    positive = (states * item_embeddings[targets]).sum(-1).float()  # [N]
    negative = (states * item_embeddings[sampled]).sum(-1).float()  # [N]
    return (F.binary_cross_entropy_with_logits(positive, torch.ones_like(positive), reduction="none")
            + F.binary_cross_entropy_with_logits(negative, torch.zeros_like(negative), reduction="none"))


def uniform_negatives(targets: torch.Tensor, count: int, vocab_size: int) -> torch.Tensor:
    """``[N, count]`` items drawn uniformly from the real items other than each row's target."""
    if vocab_size - FIRST_ITEM_INDEX < 2:
        raise ValueError(f"negative sampling needs at least 2 real items; the vocabulary has "
                         f"{vocab_size - FIRST_ITEM_INDEX}")
    # draw from one fewer item, then step over the target: uniform over the rest, no rejection loop
    drawn = torch.randint(FIRST_ITEM_INDEX, vocab_size - 1, (targets.shape[0], count), device=targets.device)
    return drawn + (drawn >= targets[:, None]).long()
