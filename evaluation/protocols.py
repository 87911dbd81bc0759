"""How a held-out item is ranked: the served protocol (the headline) and two secondary ones.

- ``served``: the list ``seqrec score`` would serve, built by the same code (lake.serving.served_top; with
  served_top_of_users and the same approximate index under ``serve.retrieval: ivf``) under the same rules
  (the ``serve`` section): the catalogue of the model's vocabulary minus padding, unknown, holes and
  deny-listed items, minus the items the user had an excluded behaviour with (bought) within
  ``exclude_window_days`` of the row's most recent input, with the category cap, cut at ``top_n``. The
  held-out item's rank is its position in that list; an item the list could not contain is ``UNRANKED``.
- ``full``: every real item of the model's vocabulary is a candidate, nothing excluded.
- ``sampled<N>`` (SASRec paper): the held-out item against N negatives drawn uniformly without replacement
  from items outside the row (its inputs and the held-out item).

Ties never favour the held-out item (evaluation.metrics.target_ranks is pessimistic).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from evaluation.heldout import HeldOut
from evaluation.metrics import UNRANKED, target_ranks
from lake import InputError
from lake.retrieval import ItemIndex
from lake.sequences import FIRST_ITEM_INDEX
from lake.serving import Catalogue, ServingRules, exclusions_within, served_top, served_top_of_users

__all__ = [
    "FULL",
    "SERVED",
    "ServedCatalogue",
    "draw_negatives",
    "excluded_coordinates",
    "full_ranks",
    "sample_negatives",
    "sampled_ranks",
    "served_ranks",
    "served_ranks_of_users",
]

SERVED, FULL = "served", "full"


@dataclass(frozen=True)
class ServedCatalogue:
    """A model's catalogue as the serving rules see it, as tensors."""

    rules: ServingRules
    size: int
    blocked: torch.Tensor  # [K] item indexes nobody is served
    categories: torch.Tensor | None  # [V] category per item, when the rules cap categories
    index: ItemIndex | None = None  # the model's approximate index, under serve.retrieval: ivf

    @classmethod
    def build(cls, catalogue: Catalogue, rules: ServingRules,
              item_embeddings: torch.Tensor | None = None) -> ServedCatalogue:
        """With ``item_embeddings`` (a model's) under ``serve.retrieval: ivf``, scoring's approximate index too."""
        categories = torch.as_tensor(catalogue.categories, dtype=torch.int64) if rules.max_per_category else None
        index = None
        if rules.retrieval == "ivf" and item_embeddings is not None:
            index = ItemIndex.for_catalogue(item_embeddings.to(torch.float32).numpy(), catalogue.blocked, rules)
        return cls(rules, catalogue.size, torch.as_tensor(catalogue.blocked, dtype=torch.int64), categories, index)


def excluded_coordinates(batch: HeldOut, rules: ServingRules, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(row, item) of every item the rules exclude for its row: an input with one of the excluded behaviours
    on a day within ``exclude_window_days`` of the row's most recent input (the night the list is served)."""
    if not rules.exclude_behaviours:
        empty = torch.empty(0, dtype=torch.int64)
        return empty, empty
    window_start = batch.last_days[batch.input_rows] - rules.exclude_window_days  # [P]
    mask = (np.isin(batch.input_behaviours, rules.excluded_behaviour_indexes)
            & (batch.input_days > window_start) & (batch.input_items < size))
    return torch.from_numpy(batch.input_rows[mask]), torch.from_numpy(batch.input_items[mask])


def served_ranks(scores: torch.Tensor, targets: torch.Tensor, catalogue: ServedCatalogue,
                 excluded: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The served lists and the held-out item's position in them.

    Args:
        scores: ``[B, V]`` (modified in place); targets: ``[B]`` held-out item indexes.
    Returns:
        ``[B]`` ranks (``UNRANKED`` when not in the list), ``[B, n]`` the lists' item indexes and ``[B, n]``
        whether each slot holds an item (short lists end in empty slots).
    """
    values, lists = served_top(scores, catalogue.blocked, *excluded, top_n=catalogue.rules.top_n,
                               categories=catalogue.categories, max_per_category=catalogue.rules.max_per_category)
    return _ranks_in_lists(values, lists, targets)


def served_ranks_of_users(scores: torch.Tensor, encoded: tuple[np.ndarray, torch.Tensor], targets: torch.Tensor,
                          catalogue: ServedCatalogue, excluded: tuple[torch.Tensor, torch.Tensor],
                          item_embeddings: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """:func:`served_ranks` for a model under ``serve.retrieval: ivf``, as scoring serves it: the rows in
    ``encoded`` (rows, user vectors ``[b, H]``) through the approximate index, the others (the popularity
    fallback) from their ``scores`` rows."""
    rows, users = encoded
    model = torch.from_numpy(rows)
    fallback = torch.from_numpy(np.setdiff1d(np.arange(len(targets)), rows))
    rules = catalogue.rules
    values = torch.full((len(targets), min(rules.top_n, catalogue.size)), float("-inf"))
    lists = torch.zeros(values.shape, dtype=torch.int64)
    if len(model):
        values[model], lists[model] = served_top_of_users(
            users, item_embeddings, catalogue.blocked, *exclusions_within(*excluded, model), rules=rules,
            categories=catalogue.categories, index=catalogue.index)
    if len(fallback):
        values[fallback], lists[fallback] = served_top(
            scores[fallback], catalogue.blocked, *exclusions_within(*excluded, fallback), top_n=rules.top_n,
            categories=catalogue.categories, max_per_category=rules.max_per_category)
    return _ranks_in_lists(values, lists, targets)


def _ranks_in_lists(values: torch.Tensor, lists: torch.Tensor,
                    targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    filled = values > float("-inf")
    hit = (lists == targets[:, None]) & filled  # [B, n]
    position = hit.to(torch.int8).argmax(dim=1) + 1
    ranks = torch.where(hit.any(dim=1), position.to(torch.int64), torch.tensor(UNRANKED))
    return ranks, lists, filled


def full_ranks(scores: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """``[B]`` rank of each held-out item among every real item of the vocabulary (``scores`` ``[B, V]``,
    modified in place); ``UNRANKED`` for an item newer than the model."""
    size = scores.shape[1]
    scores[:, :FIRST_ITEM_INDEX] = float("-inf")
    in_vocab = targets < size
    ranks = target_ranks(scores, torch.where(in_vocab, targets, FIRST_ITEM_INDEX))
    return torch.where(in_vocab, ranks, torch.tensor(UNRANKED))


def sample_negatives(excluded: torch.Tensor, count: int, generator: torch.Generator) -> torch.Tensor:
    """``count`` distinct items per row, uniformly among the items ``excluded`` [B, V] leaves: ``[B, count]``."""
    available = (~excluded).sum(dim=1)  # [B]
    if bool((available < count).any()):
        fewest = int(available.min())
        raise InputError(
            f"a user leaves only {fewest} items to sample from, fewer than evaluate.negatives={count}; "
            f"lower evaluate.negatives for a catalogue this small"
        )
    # The `count` largest of i.i.d. uniform keys form a uniform sample without replacement (and this is
    # several times faster than torch.multinomial without replacement over a large catalogue).
    keys = torch.rand(excluded.shape, generator=generator).masked_fill_(excluded, -1.0)  # [B, V]
    return torch.topk(keys, count, dim=1, sorted=False).indices


def draw_negatives(batch: HeldOut, size: int, count: int, generator: torch.Generator) -> torch.Tensor:
    """``[B, count]`` negatives per row from the real items outside its inputs and held-out item."""
    excluded = torch.zeros(len(batch), size, dtype=torch.bool)
    excluded[:, :FIRST_ITEM_INDEX] = True
    inside = batch.input_items < size
    excluded[torch.from_numpy(batch.input_rows[inside]), torch.from_numpy(batch.input_items[inside])] = True
    rows = np.flatnonzero(batch.targets < size)
    excluded[torch.from_numpy(rows), torch.from_numpy(batch.targets[rows])] = True
    return sample_negatives(excluded, count, generator)


def sampled_ranks(scores: torch.Tensor, targets: torch.Tensor, negatives: torch.Tensor) -> torch.Tensor:
    """``[B]`` rank of each held-out item among itself and its ``[B, N]`` negatives; ``UNRANKED`` for an item
    newer than the model."""
    size = scores.shape[1]
    in_vocab = targets < size
    candidates = torch.cat([torch.where(in_vocab, targets, FIRST_ITEM_INDEX)[:, None], negatives], dim=1)
    ranks = target_ranks(scores.gather(1, candidates), torch.zeros_like(targets))
    return torch.where(in_vocab, ranks, torch.tensor(UNRANKED))
