"""One batch of left-padded sequences: what the data loader yields and every model consumes."""

from __future__ import annotations

from dataclasses import dataclass, fields

import torch

__all__ = ["SEQUENCE_COLUMNS", "Batch"]

# train_examples list columns, in the order models take them (targets last: inputs never include it).
SEQUENCE_COLUMNS = ("items", "behaviours", "categories", "gap_buckets", "targets")


@dataclass(frozen=True)
class Batch:
    """Left-padded int64 sequences, oldest step first; index 0 pads every column.

    items: ``[B, L]`` item index per step; behaviours, categories, gap_buckets: ``[B, L]`` step features;
    targets: ``[B, L]`` the next item to predict at each step (0 = no loss there).
    """

    items: torch.Tensor
    behaviours: torch.Tensor
    categories: torch.Tensor
    gap_buckets: torch.Tensor
    targets: torch.Tensor

    def inputs(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """The model inputs ``(items, behaviours, categories, gap_buckets)``, each ``[B, L]``."""
        return self.items, self.behaviours, self.categories, self.gap_buckets

    def to(self, device: torch.device | str) -> Batch:
        return Batch(*(getattr(self, f.name).to(device, non_blocking=True) for f in fields(self)))

    def __len__(self) -> int:
        return self.items.shape[0]
