"""The exported model folder: scorer programs reproduce the model's user vectors for any batch size."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from lake import Config
from tests.training.conftest import tiny_config
from tests.training.models.test_base import VOCAB, random_batch
from training.export import write_model_folder
from training.models import build_model
from training.settings import train_settings


@pytest.mark.parametrize("model_type", ["sasrec", "gru", "popularity"])
def test_exported_program_matches_the_model(config: Config, tmp_path: Path, model_type: str) -> None:
    settings = train_settings(tiny_config(config, model_type=model_type, max_len=10))
    torch.manual_seed(0)
    model = build_model(settings, VOCAB)
    if model_type == "popularity":
        model.item_counts.copy_(torch.arange(VOCAB.items, dtype=torch.float32))
    model.train()  # export must switch to eval (no dropout) on its own copy
    scorer = write_model_folder(model, tmp_path, settings.max_len)
    assert scorer.name == "scorer.pt2" and model.training
    program = torch.export.load(str(scorer)).module()
    model.eval()
    for size in (1, 3, 7):
        batch = random_batch(size=size, length=10, seed=size)
        with torch.no_grad():
            assert torch.allclose(program(*batch.inputs()), model.user_vectors(batch), atol=1e-5)
    embeddings = torch.load(tmp_path / "item_embeddings.pt", weights_only=True)
    assert torch.equal(embeddings, model.item_embeddings().detach())
    rebuilt = build_model(settings, VOCAB)
    rebuilt.load_state_dict(torch.load(tmp_path / "weights.pt", weights_only=True))
    assert torch.equal(rebuilt.item_embeddings(), model.item_embeddings())


def test_torchscript_when_export_fails(config: Config, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = train_settings(tiny_config(config, max_len=10))
    model = build_model(settings, VOCAB).eval()

    def refuse(*args: object, **kwargs: object) -> None:
        raise RuntimeError("unsupported operator")

    monkeypatch.setattr(torch.export, "export", refuse)
    scorer = write_model_folder(model, tmp_path, settings.max_len)
    assert scorer.name == "scorer.pt" and not (tmp_path / "scorer.pt2").exists()
    program = torch.jit.load(str(scorer))
    batch = random_batch(size=5, length=10)
    with torch.no_grad():
        assert torch.allclose(program(*batch.inputs()), model.user_vectors(batch), atol=1e-5)
