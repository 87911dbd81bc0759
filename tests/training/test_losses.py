"""The three losses: what they compute, finite gradients, and negatives that never hit the target."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from lake.sequences import FIRST_ITEM_INDEX
from training import losses
from training.losses import sequence_loss, uniform_negatives


def tensors(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    hidden = torch.randn(3, 5, 8, generator=generator, requires_grad=True)
    embeddings = torch.randn(20, 8, generator=generator, requires_grad=True)
    targets = torch.tensor([[0, 0, 4, 5, 6], [2, 3, 0, 1, 19], [0, 0, 0, 0, 7]])
    return hidden, targets, embeddings


@pytest.mark.parametrize("kind", ["full_softmax", "sampled_softmax", "bce"])
def test_each_loss_is_finite_with_finite_gradients(kind: str) -> None:
    hidden, targets, embeddings = tensors()
    loss = sequence_loss(kind, hidden, targets, embeddings, negatives=4)
    loss.backward()
    assert torch.isfinite(loss)
    assert torch.isfinite(hidden.grad).all() and torch.isfinite(embeddings.grad).all()
    # positions without a real target (0 padding, 1 unknown) get no gradient
    assert torch.count_nonzero(hidden.grad[0, :2]) == 0 and torch.count_nonzero(hidden.grad[1, 3]) == 0
    assert torch.count_nonzero(embeddings.grad[:FIRST_ITEM_INDEX]) == 0  # padding and unknown are never candidates


def test_full_softmax_is_cross_entropy_over_real_items() -> None:
    hidden, targets, embeddings = tensors()
    at = targets >= FIRST_ITEM_INDEX
    logits = hidden[at] @ embeddings[FIRST_ITEM_INDEX:].T
    expected = F.cross_entropy(logits, targets[at] - FIRST_ITEM_INDEX)
    assert torch.isclose(sequence_loss("full_softmax", hidden, targets, embeddings), expected)


@pytest.mark.parametrize("chunk", [2, 3, 7, 2048])
def test_full_softmax_in_catalogue_chunks_has_cross_entropys_gradients(chunk: int,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    # 2: the first chunk is padding and unknown only; 3: a chunk holds them and one item; 7: the last chunk is
    # narrower than the others (the reused buffer's leading columns)
    monkeypatch.setattr(losses, "CATALOGUE_CHUNK", chunk)
    hidden, targets, embeddings = tensors()
    weights = torch.rand(3, 5, generator=torch.Generator().manual_seed(1)) + 0.5
    sequence_loss("full_softmax", hidden, targets, embeddings, weights=weights).backward()
    chunked = (hidden.grad.clone(), embeddings.grad.clone())
    hidden.grad = embeddings.grad = None
    at = targets >= FIRST_ITEM_INDEX
    logits = hidden[at] @ embeddings[FIRST_ITEM_INDEX:].T
    per_position = F.cross_entropy(logits, targets[at] - FIRST_ITEM_INDEX, reduction="none")
    ((per_position * weights[at]).sum() / weights[at].sum()).backward()
    assert torch.allclose(chunked[0], hidden.grad, atol=1e-6)
    assert torch.allclose(chunked[1], embeddings.grad, atol=1e-6)


def test_sampled_softmax_over_the_whole_catalogue_is_the_full_softmax() -> None:
    hidden, targets, embeddings = tensors()
    # every real item drawn: each position's own target is masked out of its negatives, nothing else differs
    sampled = sequence_loss("sampled_softmax", hidden, targets, embeddings, negatives=1000)
    assert torch.isclose(sampled, sequence_loss("full_softmax", hidden, targets, embeddings), atol=1e-6)


def test_sampled_softmax_shares_fewer_negatives_and_scores_below_the_full_loss() -> None:
    hidden, targets, embeddings = tensors()
    torch.manual_seed(0)
    sampled = sequence_loss("sampled_softmax", hidden, targets, embeddings, negatives=4)
    # a subset of the softmax's terms: the loss can only be smaller
    assert sampled < sequence_loss("full_softmax", hidden, targets, embeddings)


def test_bce_is_sasrecs_positive_and_negative_terms() -> None:
    hidden, targets, embeddings = tensors()
    torch.manual_seed(3)
    loss = sequence_loss("bce", hidden, targets, embeddings)
    at = targets >= FIRST_ITEM_INDEX
    torch.manual_seed(3)
    negatives = uniform_negatives(targets[at], 1, embeddings.shape[0])[:, 0]
    states = hidden[at]
    positive = (states * embeddings[targets[at]]).sum(-1)
    negative = (states * embeddings[negatives]).sum(-1)
    expected = -(F.logsigmoid(positive).mean() + F.logsigmoid(-negative).mean())
    assert torch.isclose(loss, expected, atol=1e-6)


def test_negatives_cover_the_real_items_except_the_target() -> None:
    targets = torch.full((4000,), 5)
    drawn = uniform_negatives(targets, 3, 10)
    assert set(drawn.unique().tolist()) == {2, 3, 4, 6, 7, 8, 9}


def test_a_batch_without_targets_gives_zero_but_keeps_the_graph() -> None:
    hidden, _, embeddings = tensors()
    loss = sequence_loss("full_softmax", hidden, torch.zeros(3, 5, dtype=torch.long), embeddings)
    loss.backward()
    assert loss.item() == 0.0 and hidden.grad is not None


def test_weights_make_a_weighted_mean_of_the_positions_losses() -> None:
    hidden, targets, embeddings = tensors()
    at = targets >= FIRST_ITEM_INDEX
    per_position = F.cross_entropy(hidden[at] @ embeddings[FIRST_ITEM_INDEX:].T, targets[at] - FIRST_ITEM_INDEX,
                                   reduction="none")
    weights = torch.ones(3, 5)
    weights[1, 4] = 5.0  # one target (item 19) counts five times
    expected = (per_position.sum() + 4 * per_position[-2]) / (per_position.numel() + 4)
    weighted = sequence_loss("full_softmax", hidden, targets, embeddings, weights=weights)
    assert torch.isclose(weighted, expected)
    plain = sequence_loss("full_softmax", hidden, targets, embeddings)
    assert torch.isclose(sequence_loss("full_softmax", hidden, targets, embeddings, weights=torch.ones(3, 5)), plain)


def test_a_denominator_replaces_the_batchs_own_count() -> None:
    hidden, targets, embeddings = tensors()
    positions = int((targets >= FIRST_ITEM_INDEX).sum())
    mean = sequence_loss("full_softmax", hidden, targets, embeddings)
    # a batch with half the typical positions contributes half as much, position for position the same
    halved = sequence_loss("full_softmax", hidden, targets, embeddings, denominator=2.0 * positions)
    assert torch.isclose(halved, mean / 2)
    weights = torch.full((3, 5), 3.0)
    assert torch.isclose(sequence_loss("full_softmax", hidden, targets, embeddings, weights=weights,
                                       denominator=3.0 * positions), mean)
