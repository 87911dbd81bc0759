"""The model contract, checked for every model type: shapes, scoring consistency, padding, finite gradients."""

from __future__ import annotations

import pytest
import torch

from lake import Config
from tests.training.conftest import tiny_config
from training.batch import Batch
from training.models import SequentialRecommender, VocabSizes, build_model
from training.settings import TrainSettings

VOCAB = VocabSizes(items=40, categories=8, gap_buckets=17)
NEURAL = ("sasrec", "gru", "lstm")


def model_of(config: Config, model_type: str, **train: object) -> SequentialRecommender:
    torch.manual_seed(0)
    return build_model(TrainSettings.from_config(tiny_config(config, model_type=model_type, **train)), VOCAB)


def random_batch(size: int = 4, length: int = 10, seed: int = 1) -> Batch:
    generator = torch.Generator().manual_seed(seed)
    items = torch.randint(2, VOCAB.items, (size, length), generator=generator)
    lengths = torch.randint(2, length + 1, (size,), generator=generator)
    padding = torch.arange(length)[None, :] < (length - lengths)[:, None]  # left padding
    items = items.masked_fill(padding, 0)

    def feature(high: int) -> torch.Tensor:
        return torch.randint(1, high, (size, length), generator=generator).masked_fill(padding, 0)

    targets = torch.roll(items, -1, dims=1)
    targets[:, -1] = torch.randint(2, VOCAB.items, (size,), generator=generator)
    return Batch(items, feature(6), feature(VOCAB.categories), feature(VOCAB.gap_buckets),
                 targets.masked_fill(padding, 0))


@pytest.mark.parametrize("model_type", [*NEURAL, "popularity"])
def test_forward_and_scoring_shapes_agree(config: Config, model_type: str) -> None:
    model = model_of(config, model_type).eval()
    batch = random_batch()
    hidden = model(*batch.inputs())
    width = 1 if model_type == "popularity" else 16
    assert hidden.shape == (4, 10, width)
    full = model.full_sort_predict(batch)
    assert full.shape == (4, VOCAB.items)
    candidates = torch.randint(0, VOCAB.items, (4, 7))
    assert torch.allclose(model.predict(batch, candidates), full.gather(1, candidates), atol=1e-5)
    assert torch.allclose(full, model.user_vectors(batch) @ model.item_embeddings().T)


@pytest.mark.parametrize("model_type", NEURAL)
@pytest.mark.parametrize("loss", ["full_softmax", "sampled_softmax", "bce"])
def test_each_loss_gives_a_finite_gradient(config: Config, model_type: str, loss: str) -> None:
    model = model_of(config, model_type, loss=loss, negatives=5).train()
    value = model.calculate_loss(random_batch())
    value.backward()
    assert torch.isfinite(value) and value.item() > 0
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
    assert any(g.abs().sum() > 0 for g in grads)


@pytest.mark.parametrize("model_type", NEURAL)
def test_left_padding_does_not_change_the_scores(config: Config, model_type: str) -> None:
    model = model_of(config, model_type, num_layers=2).eval()
    batch = random_batch(size=1, length=12)
    real = int((batch.items != 0).sum())
    unpadded = Batch(*(getattr(batch, name)[:, -real:] for name in ("items", "behaviours", "categories",
                                                                    "gap_buckets", "targets")))
    with torch.no_grad():
        padded_hidden = model(*batch.inputs())[:, -real:]
        unpadded_hidden = model(*unpadded.inputs())
        more_padding = Batch(*(torch.nn.functional.pad(getattr(batch, n), (5, 0)) for n in
                               ("items", "behaviours", "categories", "gap_buckets", "targets")))
        assert torch.allclose(model.full_sort_predict(batch), model.full_sort_predict(unpadded), atol=1e-5)
        assert torch.allclose(model.full_sort_predict(more_padding), model.full_sort_predict(unpadded), atol=1e-5)
    assert torch.allclose(padded_hidden, unpadded_hidden, atol=1e-5)


def test_a_step_never_sees_later_steps(config: Config) -> None:
    model = model_of(config, "sasrec", num_layers=2).eval()
    batch = random_batch(size=1, length=8)
    changed = batch.items.clone()
    changed[0, -1] = (changed[0, -1] + 1) % VOCAB.items + 2
    with torch.no_grad():
        before = model(*batch.inputs())
        after = model(changed, batch.behaviours, batch.categories, batch.gap_buckets)
    assert torch.allclose(before[:, :-1], after[:, :-1], atol=1e-6)
    assert not torch.allclose(before[:, -1], after[:, -1])


def test_one_block_or_several_is_a_config_change(config: Config) -> None:
    one = model_of(config, "sasrec", num_layers=1)
    three = model_of(config, "sasrec", num_layers=3)
    assert len(one.blocks.layers) == 1 and len(three.blocks.layers) == 3
    post = model_of(config, "sasrec", layer_norm="post")
    assert post.blocks.layers[0].norm_first is False and post.blocks.norm is None


def test_target_weights_weigh_positions_by_their_targets_behaviour(config: Config) -> None:
    from lake.schemas import BEHAVIOUR_INDEX

    batch = random_batch()
    purchases = torch.zeros_like(batch.targets)
    purchases[:, -1] = BEHAVIOUR_INDEX["purchase"]  # the last position's target is a purchase
    with_behaviours = Batch(*batch.inputs(), batch.targets, torch.where(batch.targets > 0, purchases.clamp(min=1), 0))
    plain = model_of(config, "sasrec").eval()
    weighted = model_of(config, "sasrec", target_weights={"purchase": 3.0}).eval()
    assert plain.target_weights(with_behaviours) is None
    weights = weighted.target_weights(with_behaviours)
    assert weights[:, -1].tolist() == [3.0] * 4 and set(weights[:, :-1].unique().tolist()) <= {1.0}
    assert not torch.isclose(weighted.calculate_loss(with_behaviours), plain.calculate_loss(with_behaviours))
    with pytest.raises(ValueError, match="behaviour"):
        weighted.calculate_loss(batch)


def test_target_weights_name_canonical_behaviours(config: Config) -> None:
    from lake import ConfigError

    with pytest.raises(ConfigError, match="target_weights"):
        TrainSettings.from_config(tiny_config(config, target_weights={"buy": 2.0}))
