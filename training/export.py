"""Write a trained model as the registered version's files (the contract is lake/artifacts.py).

``scorer.pt2``: torch.export of sequences ``[B, L]`` -> user vectors ``[B, H]`` (dynamic B, L = max_len),
saved without example inputs so the archive holds no pickled entry; ``item_embeddings.safetensors``: ``[V, H]``;
``weights.safetensors``: the model's state dict, to rebuild the model in Python (fine-tuning, debugging).
A model that torch.export cannot capture is an error: there is no fallback format that could run code.
"""

from __future__ import annotations

import copy
from pathlib import Path

import torch
from torch import nn

from lake import artifacts
from lake.schemas import PAD_INDEX
from lake.sequences import FIRST_ITEM_INDEX
from training.models import SequentialRecommender

__all__ = ["UserEncoder", "write_model_folder"]

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
    model = copy.deepcopy(model).cpu().eval()
    with torch.no_grad():
        embeddings = model.item_embeddings()
    example = _example_inputs(max_len)
    batch = torch.export.Dim("batch", min=1)
    program = torch.export.export(UserEncoder(model).eval(), example,
                                  dynamic_shapes=tuple({0: batch} for _ in example))
    artifacts.save(folder, program, embeddings, model.state_dict())
    return folder / artifacts.SCORER


def _example_inputs(max_len: int) -> tuple[torch.Tensor, ...]:
    """Two rows, one full and one mostly padding, so tracing sees both cases."""
    items = torch.full((2, max_len), FIRST_ITEM_INDEX, dtype=torch.int64)
    items[1, : max_len - 1] = PAD_INDEX
    features = torch.where(items == PAD_INDEX, PAD_INDEX, 1)
    return items, features.clone(), features.clone(), features.clone()
