"""Next-item losses over the tied item embeddings: full softmax, sampled softmax, and SASRec's BCE.

Scores are dot products ``hidden @ item_embeddings.T``. Padding (0) and unknown (1) are never targets and
never candidates; negatives are drawn uniformly from the real items and never count as a position's target.
"""

from __future__ import annotations

from typing import Any, Literal

import torch
import torch.nn.functional as F

from lake.sequences import FIRST_ITEM_INDEX

__all__ = ["LossType", "binary_cross_entropy", "full_softmax", "sampled_softmax", "sequence_loss"]

LossType = Literal["full_softmax", "sampled_softmax", "bce"]
# Items scored at a time by full_softmax: [N, 2048] logits stay in cache (2048 measured fastest of 1K..8K).
CATALOGUE_CHUNK = 2048


def sequence_loss(kind: LossType, hidden: torch.Tensor, targets: torch.Tensor, item_embeddings: torch.Tensor,
                  *, negatives: int = 100, weights: torch.Tensor | None = None,
                  denominator: float | None = None) -> torch.Tensor:
    """Mean loss over the positions that have a real target, weighted by ``weights`` when given; with
    ``denominator``, the (weighted) sum divided by it instead of by this batch's own total weight.

    Args:
        kind: which loss.
        hidden: ``[B, L, H]`` sequence states.
        targets: ``[B, L]`` next item per position; below FIRST_ITEM_INDEX means no loss there.
        item_embeddings: ``[V, H]`` the output (tied) item embeddings.
        negatives: negatives shared by the batch's positions for ``sampled_softmax``.
        weights: ``[B, L]`` each position's weight (e.g. purchases above clicks); None = all equal.
        denominator: the typical batch's total weight: batches grouped by length hold very different numbers
            of positions, and dividing each by its own count would make a position in a batch of short
            sequences weigh many times one in a batch of long ones.
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
    if weights is not None:
        losses = losses * weights[at].to(losses.dtype)
        total = weights[at].sum() if denominator is None else denominator
    else:
        total = losses.numel() if denominator is None else denominator
    return losses.sum() / total


def full_softmax(states: torch.Tensor, targets: torch.Tensor, item_embeddings: torch.Tensor) -> torch.Tensor:
    """``[N]`` cross-entropy against every real item. states ``[N, H]``, targets ``[N]``, item_embeddings
    ``[V, H]``."""
    return _ChunkedSoftmaxCrossEntropy.apply(states, item_embeddings, targets)


class _ChunkedSoftmaxCrossEntropy(torch.autograd.Function):
    """Softmax cross-entropy over the catalogue, ``CATALOGUE_CHUNK`` items at a time, never holding the
    ``[N, V]`` logits: the forward keeps only each row's log-sum-exp, the backward recomputes a chunk's logits,
    turns them into probabilities in place and multiplies them out. On CPU the logits' reads and writes, not
    the arithmetic, were the cost: 1.5x faster than ``F.cross_entropy`` for an Amazon Games batch (381
    positions x 23,717 items, benchmarks/train_step.py), and memory stays ``N x chunk`` for a million-item
    catalogue. Float32 throughout, under autocast too (a bf16 log-sum-exp over 10^5 terms is too coarse).

    Every chunk's logits are computed into one ``[N, chunk]`` buffer, allocated once per pass: a new tensor per
    chunk (tens of MB, 50 per pass at 100,000 items) left glibc's heap in pieces between steps, and the
    training process's resident memory rose by up to a GB at a time (docs/benchmarks.md).
    """

    @staticmethod
    def forward(ctx: Any, states: torch.Tensor, items: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        with torch.autocast(states.device.type, enabled=False):
            states, items = states.float(), items.float()
            buffer = states.new_empty(states.shape[0], min(CATALOGUE_CHUNK, items.shape[0]))  # [N, chunk]
            chunks = [_chunk_log_sum_exp(_chunk_logits(states, items, start, buffer))
                      for start in range(0, items.shape[0], CATALOGUE_CHUNK)]
            log_sum_exp = torch.logsumexp(torch.stack(chunks, dim=1), dim=1)  # [N]
            ctx.save_for_backward(states, items, targets, log_sum_exp)
            return log_sum_exp - (states * items[targets]).sum(dim=1)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, None]:
        states, items, targets, log_sum_exp = ctx.saved_tensors
        with torch.autocast(states.device.type, enabled=False):
            grad = grad.float()[:, None]  # [N, 1]
            grad_states = -grad * items[targets]  # [N, H], the target term
            grad_items = torch.empty_like(items)  # [V, H]
            buffer = states.new_empty(states.shape[0], min(CATALOGUE_CHUNK, items.shape[0]))  # [N, chunk]
            for start in range(0, items.shape[0], CATALOGUE_CHUNK):
                chunk = items[start:start + CATALOGUE_CHUNK]
                probabilities = _chunk_logits(states, items, start, buffer).sub_(log_sum_exp[:, None]).exp_().mul_(grad)
                grad_states.addmm_(probabilities, chunk)
                torch.mm(probabilities.T, states, out=grad_items[start:start + CATALOGUE_CHUNK])
            grad_items.index_add_(0, targets, -grad * states)
        return grad_states, grad_items, None


def _chunk_logits(states: torch.Tensor, items: torch.Tensor, start: int, buffer: torch.Tensor) -> torch.Tensor:
    """``[N, chunk]`` scores of the items from ``start``, written into (a leading slice of) ``buffer``;
    padding and unknown are never candidates."""
    chunk = items[start:start + CATALOGUE_CHUNK]
    logits = torch.mm(states, chunk.T, out=buffer[:, :chunk.shape[0]])
    if start < FIRST_ITEM_INDEX:
        logits[:, :FIRST_ITEM_INDEX - start] = float("-inf")
    return logits


def _chunk_log_sum_exp(logits: torch.Tensor) -> torch.Tensor:
    """``[N]`` log-sum-exp of each row, overwriting ``logits`` (``torch.logsumexp`` would copy them)."""
    largest = logits.amax(dim=1, keepdim=True)  # [N, 1]
    largest = largest.masked_fill(largest == float("-inf"), 0.0)  # a chunk of padding and unknown only: -inf
    return largest.squeeze(1) + logits.sub_(largest).exp_().sum(dim=1).log()


def sampled_softmax(states: torch.Tensor, targets: torch.Tensor, item_embeddings: torch.Tensor,
                    negatives: int) -> torch.Tensor:
    """``[N]`` cross-entropy of each target against ``negatives`` distinct items drawn uniformly once per batch
    and shared by every position, as ``tf.nn.sampled_softmax_loss`` does. states ``[N, H]``, targets ``[N]``.

    Sharing makes the negatives' scores one ``[N, H] @ [H, K]`` product instead of a gather of N x K
    embeddings, so thousands of negatives cost less than a hundred per position did. A drawn item that is a
    position's own target is masked out of that position's negatives; with the whole catalogue drawn this is
    exactly ``full_softmax``. The proposal is uniform, so no logQ correction is needed.
    """
    real_items = item_embeddings.shape[0] - FIRST_ITEM_INDEX
    sampled = torch.randperm(real_items, device=targets.device)[:negatives] + FIRST_ITEM_INDEX  # [K]
    positive = (states * item_embeddings[targets]).sum(-1, keepdim=True)  # [N, 1]
    negative = states @ item_embeddings[sampled].T  # [N, K]
    negative = negative.masked_fill(sampled[None, :] == targets[:, None], float("-inf"))
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
