"""The model folder that scoring and evaluation load without importing `training` (see lake/registry.py).

``scorer.pt2``: torch.export of sequences ``[B, L]`` -> user vectors ``[B, H]`` (dynamic B, L = max_len), or
``scorer.pt`` (TorchScript) if export fails; ``item_embeddings.pt``: ``[V, H]``; ``weights.pt``: the model's
state dict, to rebuild the model in Python (fine-tuning, debugging).
"""

from __future__ import annotations

import copy
import logging
from pathlib import Path

import torch
from torch import nn

from lake.schemas import PAD_INDEX
from training.losses import FIRST_ITEM
from training.models import SequentialRecommender

__all__ = ["UserEncoder", "write_model_folder"]

log = logging.getLogger(__name__)


class UserEncoder(nn.Module):
    """What the scorer program computes: the model's state at the last step, in float32."""

    def __init__(self, model: SequentialRecommender) -> None:
        super().__init__()
        self.model = model

    def forward(self, items: torch.Tensor, behaviours: torch.Tensor, categories: torch.Tensor,
                gap_buckets: torch.Tensor) -> torch.Tensor:
        """Left-padded int64 ``[B, L]`` each -> ``[B, H]``."""
        return self.model(items, behaviours, categories, gap_buckets)[:, -1].float()


def write_model_folder(model: SequentialRecommender, folder: Path, max_len: int) -> Path:
    """Write scorer, item embeddings and weights of ``model`` (copied to CPU, eval mode) into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    model = copy.deepcopy(model).cpu().eval()
    with torch.no_grad():
        torch.save(model.item_embeddings().detach().float().contiguous().clone(), folder / "item_embeddings.pt")
    torch.save(model.state_dict(), folder / "weights.pt")
    encoder = UserEncoder(model).eval()
    example = _example_inputs(max_len)
    try:
        batch = torch.export.Dim("batch", min=1)
        program = torch.export.export(encoder, example, dynamic_shapes=tuple({0: batch} for _ in example))
        torch.export.save(program, folder / "scorer.pt2")
        return folder / "scorer.pt2"
    except Exception as exc:  # export rejects some graphs; TorchScript is the registry's documented fallback
        log.warning("torch.export failed (%s); writing a TorchScript scorer instead", exc)
        with torch.no_grad():
            traced = torch.jit.trace(encoder, example, check_trace=False)
        traced.save(str(folder / "scorer.pt"))
        return folder / "scorer.pt"


def _example_inputs(max_len: int) -> tuple[torch.Tensor, ...]:
    """Two rows, one full and one mostly padding, so tracing sees both cases."""
    items = torch.full((2, max_len), FIRST_ITEM, dtype=torch.int64)
    items[1, : max_len - 1] = PAD_INDEX
    features = torch.where(items == PAD_INDEX, PAD_INDEX, 1)
    return items, features.clone(), features.clone(), features.clone()
