"""One batch of left-padded sequences: what the data loader yields and every model consumes."""

from __future__ import annotations

from dataclasses import dataclass, fields

import torch

__all__ = ["SEQUENCE_COLUMNS", "Batch"]

# train_examples list columns, in the order models take them (targets after the inputs: inputs never include them).
SEQUENCE_COLUMNS = ("items", "behaviours", "categories", "gap_buckets", "targets", "target_behaviours")


@dataclass(frozen=True)
class Batch:
    """Left-padded int64 sequences, oldest step first; index 0 pads every column.

    items: ``[B, L]`` item index per step; behaviours, categories, gap_buckets: ``[B, L]`` step features;
    targets: ``[B, L]`` the next item to predict at each step (0 = no loss there); target_behaviours:
    ``[B, L]`` that next event's behaviour index (None when the caller has none: every target weighs the same).
    """

    items: torch.Tensor
    behaviours: torch.Tensor
    categories: torch.Tensor
    gap_buckets: torch.Tensor
    targets: torch.Tensor
    target_behaviours: torch.Tensor | None = None

    def inputs(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """The model inputs ``(items, behaviours, categories, gap_buckets)``, each ``[B, L]``."""
        return self.items, self.behaviours, self.categories, self.gap_buckets

    def to(self, device: torch.device | str) -> Batch:
        return Batch(*(None if getattr(self, f.name) is None else getattr(self, f.name).to(device, non_blocking=True)
                       for f in fields(self)))

    def __len__(self) -> int:
        return self.items.shape[0]
