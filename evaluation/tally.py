"""Streaming sums of per-user metrics: what evaluation keeps while rows stream past, independent of users.

Every figure is a mean over users with its standard error (sample standard deviation / sqrt(users)),
kept as running sums and sums of squares per group (ranker, protocol, target, segment).
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field

import torch

__all__ = ["GroupKey", "ListTally", "Moments", "PairedDifference", "Tally"]

GroupKey = tuple[str, str, str, str]  # ranker, protocol, target, segment


@dataclass
class Moments:
    """Running count, sums and sums of squares of several per-user metrics."""

    users: int = 0
    sums: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    squares: dict[str, float] = field(default_factory=lambda: defaultdict(float))

    def add(self, per_user: dict[str, torch.Tensor], mask: torch.Tensor) -> None:
        chosen = int(mask.sum())
        if not chosen:
            return
        self.users += chosen
        for name, values in per_user.items():
            kept = values[mask].to(torch.float64)
            self.sums[name] += float(kept.sum())
            self.squares[name] += float((kept * kept).sum())

    def mean(self, name: str) -> float:
        return self.sums[name] / self.users if self.users else math.nan

    def std_error(self, name: str) -> float:
        if self.users < 2:
            return math.nan
        mean = self.mean(name)
        variance = max(self.squares[name] / self.users - mean * mean, 0.0) * self.users / (self.users - 1)
        return math.sqrt(variance / self.users)


@dataclass
class Tally:
    groups: dict[GroupKey, Moments] = field(default_factory=lambda: defaultdict(Moments))

    def add(self, key: GroupKey, per_user: dict[str, torch.Tensor], mask: torch.Tensor) -> None:
        self.groups[key].add(per_user, mask)


@dataclass
class ListTally:
    """List-level metrics of the served lists: coverage (a set over the catalogue), and per-user diversity and
    average popularity summed, at each cutoff; a user counts at K only when the list holds K items."""

    size: int
    ks: tuple[int, ...]
    categories: torch.Tensor | None  # [V] category per item, for diversity
    popularity: torch.Tensor  # [V]
    covered: dict[int, torch.Tensor] = field(default_factory=dict)
    moments: dict[int, Moments] = field(default_factory=lambda: defaultdict(Moments))

    def add(self, lists: torch.Tensor, filled: torch.Tensor) -> None:
        for k in self.ks:
            if k > lists.shape[1]:
                continue
            full = filled[:, :k].all(dim=1)  # [B]
            top = lists[full, :k]
            seen = self.covered.setdefault(k, torch.zeros(self.size, dtype=torch.bool))
            seen[top.reshape(-1)] = True
            values = {f"avg_popularity@{k}": self.popularity.to(torch.float64)[top].mean(dim=1)}
            if self.categories is not None and k >= 2:
                cats = self.categories[top]
                same = (cats.unsqueeze(2) == cats.unsqueeze(1)).sum(dim=(1, 2)) - k
                values[f"diversity@{k}"] = 1.0 - same.to(torch.float64) / (k * (k - 1))
            self.moments[k].add(values, torch.ones(len(top), dtype=torch.bool))

    def metrics(self, catalogue_size: int) -> dict[str, float]:
        out = {f"coverage@{k}": float(seen.sum()) / max(catalogue_size, 1) for k, seen in self.covered.items()}
        for moments in self.moments.values():
            out |= {name: moments.mean(name) for name in moments.sums}
        return out


@dataclass
class PairedDifference:
    """candidate - champion of one per-user metric on the same users: mean and its standard error."""

    candidate: Moments = field(default_factory=Moments)
    champion: Moments = field(default_factory=Moments)
    difference: Moments = field(default_factory=Moments)

    def add(self, candidate: torch.Tensor, champion: torch.Tensor, mask: torch.Tensor) -> None:
        self.candidate.add({"v": candidate}, mask)
        self.champion.add({"v": champion}, mask)
        self.difference.add({"v": candidate.to(torch.float64) - champion.to(torch.float64)}, mask)
