"""What the nightly job serves: the list length and the business rules, applied by one implementation.

Scoring applies these rules to every active user's scores; evaluation applies the very same functions to
the held-out rows, so the headline metrics measure the list a user is actually shown (docs/metrics.md,
"served"). The rules, read from the ``serve`` config section (lake/defaults.yaml):

- never recommend padding, unknown, holes in the vocabulary, or an item newer than the model (it has no
  embedding: the catalogue only spans the model's vocabulary);
- never recommend a deny-listed item (``deny_list`` table, when ``honour_deny_list``);
- never recommend an item the user had one of ``exclude_behaviours`` with in the last
  ``exclude_window_days`` days (bought already);
- at most ``max_per_category`` items of one category per list (0 = no cap);
- ``top_n`` items per user.

How the best items are found is ``retrieval``: ``exact`` (every user against every item) or ``ivf``
(lake.retrieval: candidates from an approximate index, then the same rules; for catalogues of millions).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from lake.config import Config, ConfigError, typed_section
from lake.errors import InputError
from lake.schemas import BEHAVIOURS, PAD_INDEX, UNKNOWN_INDEX

if TYPE_CHECKING:
    import torch

    from lake.retrieval import ItemIndex
    from lake.tables import Lake

__all__ = [
    "Catalogue",
    "ServingRules",
    "build_catalogue",
    "denied_item_ids",
    "exclusions_within",
    "latest_item_categories",
    "rank_within_category",
    "served_top",
    "served_top_of_candidates",
    "served_top_of_users",
    "top_items",
]


@dataclass(frozen=True)
class ServingRules:
    top_n: int
    exclude_behaviours: tuple[str, ...]
    exclude_window_days: int
    honour_deny_list: bool
    max_per_category: int
    retrieval: Literal["exact", "ivf"] = "exact"
    ivf_lists: int = 0
    ivf_probe: int = 32
    ivf_candidates: int = 0

    @classmethod
    def from_config(cls, config: Config) -> ServingRules:
        rules = typed_section(cls, config, "serve")
        for key in ("top_n", "exclude_window_days", "ivf_probe"):
            if getattr(rules, key) < 1:
                raise ConfigError(f"serve.{key} must be at least 1, got {getattr(rules, key)}")
        if rules.ivf_lists < 0:
            raise ConfigError(f"serve.ivf_lists must be 0 (automatic) or more, got {rules.ivf_lists}")
        if rules.ivf_candidates and rules.ivf_candidates < rules.top_n:
            raise ConfigError(f"serve.ivf_candidates must be 0 (automatic) or at least serve.top_n={rules.top_n}, "
                              f"got {rules.ivf_candidates}")
        if rules.max_per_category < 0:
            raise ConfigError(f"serve.max_per_category must be 0 (no cap) or more, got {rules.max_per_category}")
        unknown = sorted(set(rules.exclude_behaviours) - set(BEHAVIOURS))
        if unknown:
            raise ConfigError(f"serve.exclude_behaviours names {unknown}; canonical behaviours are {list(BEHAVIOURS)}")
        return rules

    @property
    def candidates(self) -> int:
        """Items retrieved per user under ``ivf`` before the rules: ``ivf_candidates``, or 4 x ``top_n``."""
        return self.ivf_candidates or 4 * self.top_n

    @property
    def excluded_behaviour_indexes(self) -> tuple[int, ...]:
        """The behaviour indexes (as in sequences: 1-based, funnel order) whose items are never re-served."""
        return tuple(BEHAVIOURS.index(name) + 1 for name in self.exclude_behaviours)


@dataclass(frozen=True)
class Catalogue:
    """Per item index ``< size``: its item id, category and popularity, and the indexes never recommended."""

    item_ids: np.ndarray  # [V] int64; -1 where the vocabulary has no item at that index
    categories: np.ndarray  # [V] int32; UNKNOWN_INDEX where the category is not known
    popularity: np.ndarray  # [V] float32; the fallback's counts
    blocked: np.ndarray  # [K] int64 indexes: padding, unknown, holes, deny-listed

    @property
    def size(self) -> int:
        return len(self.item_ids)


def build_catalogue(
    vocab: pa.Table,
    size: int,
    *,
    denied_item_ids: Iterable[int] = (),
    item_categories: pa.Table | None = None,
    popularity: pa.Table | None = None,
) -> Catalogue:
    """Dense arrays over item indexes ``0..size-1``; only indexes below the model's vocabulary size exist.

    Args:
        vocab: ``item_vocab`` rows (item_id, item_index).
        size: the model's item vocabulary size V.
        denied_item_ids: item ids never to recommend (the deny list).
        item_categories: (item_index, category_index) rows; None when no category cap is applied.
        popularity: (item_index, events) rows for the popularity fallback.
    """
    item_ids = np.full(size, -1, dtype=np.int64)
    indexes = vocab.column("item_index").to_numpy().astype(np.int64)
    known = indexes < size
    item_ids[indexes[known]] = vocab.column("item_id").to_numpy()[known]

    categories = np.full(size, UNKNOWN_INDEX, dtype=np.int32)
    if item_categories is not None and item_categories.num_rows:
        cat_items = item_categories.column("item_index").to_numpy().astype(np.int64)
        cat_known = cat_items < size
        categories[cat_items[cat_known]] = item_categories.column("category_index").to_numpy()[cat_known]

    counts = np.zeros(size, dtype=np.float32)
    if popularity is not None and popularity.num_rows:
        pop_items = popularity.column("item_index").to_numpy().astype(np.int64)
        pop_known = pop_items < size
        counts[pop_items[pop_known]] = popularity.column("events").to_numpy()[pop_known]

    blocked = item_ids < 0
    blocked[[i for i in (PAD_INDEX, UNKNOWN_INDEX) if i < size]] = True
    denied = pa.array(list(denied_item_ids), type=pa.int64())
    if len(denied):
        blocked |= pc.is_in(pa.array(item_ids), value_set=denied).to_numpy(zero_copy_only=False)
    return Catalogue(item_ids, categories, counts, np.flatnonzero(blocked).astype(np.int64))


def denied_item_ids(lake: Lake, rules: ServingRules) -> list[int]:
    """The deny list's item ids when the rules honour it and the table exists; else none."""
    if not (rules.honour_deny_list and lake.exists("deny_list")):
        return []
    return lake.read("deny_list", columns=["item_id"]).column("item_id").to_pylist()


def latest_item_categories(lake: Lake, ds: str) -> pa.Table:
    """``item_index, category_index`` from the latest ``item_categories`` partition up to ds (categories
    change rarely, so the cap uses the newest known)."""
    stored = lake.partitions("item_categories") if lake.exists("item_categories") else []
    days = [d for d in stored if d <= ds]
    if not days:
        raise InputError(f"serve.max_per_category needs item_categories up to ds={ds} and there are none; "
                         f"run featurize or set serve.max_per_category: 0")
    return lake.read("item_categories", partition=days[-1], columns=["item_index", "category_index"])


def rank_within_category(categories: torch.Tensor) -> torch.Tensor:
    """``[B, K]`` categories of candidates in score order -> ``[B, K]`` how many better candidates of the
    same category come before each one (0 for the best of its category)."""
    import torch

    _, width = categories.shape
    grouped, order = torch.sort(categories, dim=1, stable=True)  # [B, K], score order kept within a category
    positions = torch.arange(width, device=categories.device).expand_as(grouped)
    starts = torch.ones_like(grouped, dtype=torch.bool)
    starts[:, 1:] = grouped[:, 1:] != grouped[:, :-1]
    group_start = torch.cummax(torch.where(starts, positions, torch.zeros_like(positions)), dim=1).values
    ranks = torch.empty_like(positions)
    ranks.scatter_(1, order, positions - group_start)
    return ranks


def top_items(scores: torch.Tensor, n: int, categories: torch.Tensor | None = None,
              max_per_category: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Best ``n`` of ``scores`` ``[B, V]`` (``-inf`` = excluded) per row, at most ``max_per_category`` per
    category when a cap is given: ``categories`` is ``[V]``, or ``[B, V]`` when each row's columns are
    different items (candidate lists).

    Returns:
        values ``[B, min(n, V)]`` best first, ``-inf`` in the slots of rows with fewer candidates, and the
        matching item indexes ``[B, min(n, V)]``.
    """
    import torch

    width = scores.shape[1]
    n = min(n, width)
    if not max_per_category or categories is None:
        return torch.topk(scores, n, dim=1)
    # Greedy in score order is exact, and a prefix of the ranking suffices: widen it only for rows whose
    # cap discarded too much while candidates remain.
    k = min(width, 2 * n)
    while True:
        values, indexes = torch.topk(scores, k, dim=1)  # [B, k]
        ranked = categories.gather(1, indexes) if categories.ndim == 2 else categories[indexes]  # [B, k]
        keep = (values > float("-inf")) & (rank_within_category(ranked) < max_per_category)
        done = (keep.sum(dim=1) >= n) | (values[:, -1] == float("-inf"))
        if k == width or bool(done.all()):
            break
        k = min(width, 2 * k)
    order = torch.argsort((~keep).to(torch.int32), dim=1, stable=True)[:, :n]  # kept first, score order kept
    values = values.gather(1, order).masked_fill(~keep.gather(1, order), float("-inf"))
    return values, indexes.gather(1, order)


def served_top(scores: torch.Tensor, blocked: torch.Tensor, excluded_rows: torch.Tensor,
               excluded_items: torch.Tensor, *, top_n: int, categories: torch.Tensor | None = None,
               max_per_category: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """The served lists: ``scores`` ``[B, V]`` (modified in place) masked by the rules, then the top ``top_n``.

    Args:
        scores: ``[B, V]`` one row per user over the model's catalogue.
        blocked: ``[K]`` item indexes nobody is served (``Catalogue.blocked``).
        excluded_rows, excluded_items: ``[P]`` coordinates (row, item index) of each user's excluded items.
        categories: ``[V]`` category per item, for the cap.
    Returns:
        ``top_items``' (values, indexes), ``-inf`` values in the slots of short lists.
    """
    scores.index_fill_(1, blocked, float("-inf"))
    if len(excluded_rows):
        scores[excluded_rows, excluded_items] = float("-inf")
    return top_items(scores, top_n, categories, max_per_category)


def exclusions_within(excluded_rows: torch.Tensor, excluded_items: torch.Tensor,
                      rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The (row, item index) exclusions of the batch rows ``rows`` (sorted), renumbered as rows of
    ``batch[rows]``."""
    import torch

    inside = torch.isin(excluded_rows, rows)
    return torch.searchsorted(rows, excluded_rows[inside]), excluded_items[inside]


def served_top_of_candidates(values: torch.Tensor, items: torch.Tensor, excluded_rows: torch.Tensor,
                             excluded_items: torch.Tensor, *, size: int, top_n: int,
                             categories: torch.Tensor | None = None,
                             max_per_category: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`served_top` over each user's retrieved candidates instead of the whole catalogue.

    Args:
        values, items: ``[B, C]`` candidate scores and item indexes (-1 = no candidate); blocked items are
            never among them (the index holds servable items only).
        excluded_rows, excluded_items: ``[P]`` (row, item index) of each user's excluded items.
        size: the catalogue's size V; categories: ``[V]`` category per item, for the cap.
    Returns:
        (values, item indexes) ``[B, min(top_n, C)]``, ``-inf`` values in the slots of short lists.
    """
    import torch

    values = values.masked_fill(items < 0, float("-inf"))
    if len(excluded_rows):
        rows = torch.arange(len(items), device=items.device)[:, None]
        values.masked_fill_(torch.isin(rows * size + items, excluded_rows * size + excluded_items),
                            float("-inf"))
    row_categories = categories[items.clamp(min=0)] if categories is not None else None  # [B, C]
    top_values, positions = top_items(values, top_n, row_categories, max_per_category)
    return top_values, items.gather(1, positions).clamp(min=0)


def served_top_of_users(users: torch.Tensor, item_embeddings: torch.Tensor, blocked: torch.Tensor,
                        excluded_rows: torch.Tensor, excluded_items: torch.Tensor, *, rules: ServingRules,
                        categories: torch.Tensor | None = None,
                        index: ItemIndex | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The served lists of user vectors ``[B, H]``: every item scored (no ``index``), or ``index``'s
    candidates under the same rules, users whose candidates leave a short list ranked exactly.

    Returns:
        (values, item indexes) ``[B, top_n]`` (fewer columns only for a catalogue under ``top_n`` items).
    """
    import torch

    def exact(rows: torch.Tensor, row_users: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        row_excluded = exclusions_within(excluded_rows, excluded_items, rows)
        return served_top(row_users @ item_embeddings.T, blocked, *row_excluded, top_n=rules.top_n,
                          categories=categories, max_per_category=rules.max_per_category)

    everyone = torch.arange(len(users), device=users.device)
    if index is None or index.items < rules.top_n:  # a catalogue this small is ranked exactly anyway
        return exact(everyone, users)
    values, items = index.search(users, rules.candidates)
    values, items = served_top_of_candidates(values, items, excluded_rows, excluded_items,
                                             size=item_embeddings.shape[0], top_n=rules.top_n,
                                             categories=categories, max_per_category=rules.max_per_category)
    short = values[:, -1] == float("-inf")  # [B]: the rules left fewer than top_n of the candidates
    if bool(short.any()):
        rows = everyone[short]
        values[rows], items[rows] = exact(rows, users[rows])
    return values, items
