"""The exported model folder: the scorer program reproduces the model's user vectors for any batch size,
and the folder holds only data: no pickled entry, no fallback program format."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from lake import Config
from lake.artifacts import check_export_archive
from tests.training.conftest import tiny_config
from tests.training.models.test_base import VOCAB, random_batch
from training.export import write_model_folder
from training.models import build_model
from training.settings import TrainSettings


@pytest.mark.parametrize("model_type", ["sasrec", "gru", "popularity"])
def test_exported_program_matches_the_model(config: Config, tmp_path: Path, model_type: str) -> None:
    settings = TrainSettings.from_config(tiny_config(config, model_type=model_type, max_len=10))
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
    embeddings = load_file(tmp_path / "item_embeddings.safetensors")["item_embeddings"]
    assert torch.equal(embeddings, model.item_embeddings().detach())
    rebuilt = build_model(settings, VOCAB)
    rebuilt.load_state_dict(load_file(tmp_path / "weights.safetensors"))
    assert torch.equal(rebuilt.item_embeddings(), model.item_embeddings())
    check_export_archive(scorer.read_bytes(), what="the exported model")  # no pickled entry


def test_a_model_export_cannot_capture_is_an_error_not_a_fallback(config: Config, tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    settings = TrainSettings.from_config(tiny_config(config, max_len=10))
    model = build_model(settings, VOCAB).eval()

    def refuse(*args: object, **kwargs: object) -> None:
        raise RuntimeError("unsupported operator")

    monkeypatch.setattr(torch.export, "export", refuse)
    with pytest.raises(RuntimeError, match="unsupported operator"):
        write_model_folder(model, tmp_path, settings.max_len)
    assert not (tmp_path / "scorer.pt").exists() and not (tmp_path / "scorer.pt2").exists()
