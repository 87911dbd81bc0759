"""What ranks the held-out rows: a registered model, and the baselines beside it.

Each ranker turns a batch of held-out rows into ``[B, V]`` scores over the model's catalogue; the protocols
then rank them (evaluation.protocols). The model builds its inputs with the sequence contract scoring uses
(lake.sequences) and, like scoring, ranks popularity for a row without any item it knows.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import numpy as np
import torch

from evaluation.als import ALS, AlsFactors, AlsRanker
from evaluation.heldout import HeldOut
from lake import ValidationError
from lake.sequences import INPUT_COLUMNS, as_unknown_beyond, has_known_item, left_pad

if TYPE_CHECKING:
    from lake.artifacts import Scorer

__all__ = ["MODEL", "ModelRanker", "PopularityRanker", "Ranker", "RecentItemsRanker", "baseline"]

MODEL = "model"


class Ranker(Protocol):
    name: str

    def scores(self, batch: HeldOut) -> torch.Tensor:
        """``[B, V]`` float32 scores of every item index for every row; higher ranks first."""
        ...


@dataclass
class ModelRanker:
    """A registered model: user vector . item embeddings; rows without a known item rank ``fallback``."""

    scorer: Scorer
    fallback: torch.Tensor  # [V] popularity, -inf where an item was never seen (as scoring's fallback)
    name: str = MODEL

    @property
    def size(self) -> int:
        return int(self.scorer.item_embeddings.shape[0])

    @torch.no_grad()
    def scores(self, batch: HeldOut) -> torch.Tensor:
        return self.scores_of(batch, self.encode(batch))

    def scores_of(self, batch: HeldOut, encoded: tuple[np.ndarray, torch.Tensor]) -> torch.Tensor:
        """``[B, V]``: the encoded rows' user vectors against every item, the other rows the fallback."""
        rows, users = encoded
        out = self.fallback.expand(len(batch), self.size).clone()
        if len(rows):
            out[torch.from_numpy(rows)] = users @ self.scorer.item_embeddings.to(torch.float32).T
        return out

    @torch.no_grad()
    def encode(self, batch: HeldOut) -> tuple[np.ndarray, torch.Tensor]:
        """The rows with a known item in their inputs, and their user vectors ``[b, H]`` (float32)."""
        meta = self.scorer.meta
        max_len = int(meta["max_len"])
        sequences = {name: left_pad(batch.inputs[name], max_len) for name in INPUT_COLUMNS}  # [B, L] each
        as_unknown_beyond(sequences["items"], self.size)
        if "category_vocab_size" in meta:
            as_unknown_beyond(sequences["categories"], int(meta["category_vocab_size"]))
        where = np.flatnonzero(has_known_item(sequences["items"]))
        if not len(where):
            return where, torch.empty(0, self.scorer.item_embeddings.shape[1])
        users = self.scorer.encode(*(torch.from_numpy(sequences[name][where]) for name in INPUT_COLUMNS))
        users = users.to(torch.float32)
        if not bool(torch.isfinite(users).all()):
            raise ValidationError(f"model {self.scorer.card.version} produced non-finite user vectors; it "
                                  f"cannot be evaluated (retrain it or check its inputs)")
        return where, users


@dataclass
class PopularityRanker:
    """Every row ranks the items by their training interactions."""

    popularity: torch.Tensor  # [V]
    name: str = "popularity"

    def scores(self, batch: HeldOut) -> torch.Tensor:
        return self.popularity.to(torch.float32).expand(len(batch), -1).clone()


@dataclass
class RecentItemsRanker:
    """The user's most recent distinct items, most recent first; nothing else is ranked (score -inf)."""

    size: int
    name: str = "recent-items"

    def scores(self, batch: HeldOut) -> torch.Tensor:
        out = torch.full((len(batch), self.size), float("-inf"))
        inside = batch.input_items < self.size
        rows = torch.from_numpy(batch.input_rows[inside])
        items = torch.from_numpy(batch.input_items[inside])
        step = torch.arange(len(batch.input_items), dtype=torch.float32)[torch.from_numpy(inside)]
        # Steps are numbered oldest first, so an item's latest occurrence is its largest step.
        out.view(-1).scatter_reduce_(0, rows * self.size + items, step, reduce="amax")
        return out


def baseline(name: str, popularity: torch.Tensor, *, fallback: torch.Tensor,
             als: AlsFactors | None = None) -> Ranker:
    """The baseline called ``name`` over a catalogue of ``len(popularity)`` items (``fallback``: what a row
    without a known item ranks; ``als``: the fitted factors, for the als baseline)."""
    if name == "popularity":
        return PopularityRanker(popularity)
    if name == "recent-items":
        return RecentItemsRanker(len(popularity))
    if name == ALS:
        if als is None:
            raise ValueError("the als baseline needs its fitted factors")
        return AlsRanker(als.within(len(popularity)), fallback)
    raise ValueError(f"unknown baseline {name!r}")
