"""Implicit-feedback ALS (Hu, Koren & Volinsky 2008) as a Spark-native baseline: Spark MLlib fits the item
factors, each held-out row gets its user vector by folding in its own inputs.

Fit: the split's rows' inputs as (user, item, times seen) with Spark MLlib's ``ALS(implicitPrefs=True)``.
A row's target is never among its own inputs, so the fit never sees what it is asked to rank.

Fold-in: Spark's last half-step solves every user's vector from the final item factors Y by the normal
equation ``(YᵀY + Σ_i α r_ui y_i y_iᵀ + λ n_u I) x_u = Σ_i (1 + α r_ui) y_i`` (n_u = the user's distinct items,
Spark's ALS-WR scaling). Solving the same equation per batch reproduces Spark's user factors (tested) while
only the item factors are held in memory: they grow with the catalogue, not with the users.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import torch

from evaluation.heldout import HeldOut
from lake import Lake, ValidationError
from lake.sequences import FIRST_ITEM_INDEX, left_pad

__all__ = ["ALS", "AlsFactors", "AlsRanker", "fit_item_factors", "fold_in"]

log = logging.getLogger(__name__)

ALS = "als"


@dataclass(frozen=True)
class AlsFactors:
    """Item factors ``[V, rank]`` (zero for an item the fit never saw) and the fit's hyper-parameters."""

    items: np.ndarray
    reg_param: float
    alpha: float

    def within(self, size: int) -> AlsFactors:
        """The factors of a catalogue of ``size`` items (a model older than the fit knows fewer)."""
        return AlsFactors(self.items[:size], self.reg_param, self.alpha)


def fit_item_factors(lake: Lake, ds: str, split: str, *, size: int, rank: int, iterations: int, reg_param: float,
                     alpha: float, seed: int, version: int | None = None) -> AlsFactors:
    """Fit ALS on the inputs of ds's ``split`` rows of ``train_examples`` (items below ``size``)."""
    if lake.spark is None:
        raise ValidationError("the als baseline fits with Spark; build the Lake with spark=get_spark(config)")
    from pyspark.ml.recommendation import ALS as SparkALS
    from pyspark.sql import functions as F

    rows = lake.read_spark("train_examples", version=version, partition=ds).where(F.col("split") == split)
    seen = (rows.select("user_id", F.explode("items").alias("item_index"))
            .where((F.col("item_index") >= FIRST_ITEM_INDEX) & (F.col("item_index") < size))
            .groupBy("user_id", "item_index").agg(F.count(F.lit(1)).cast("float").alias("times")))
    # MLlib wants 32-bit ids; user ids are 64-bit, so users are numbered 0..n-1 (a distributed zipWithIndex).
    numbered = (seen.select("user_id").distinct().rdd.map(lambda row: row[0]).zipWithIndex()
                .toDF(["user_id", "als_user"]))
    ratings = seen.join(numbered, "user_id").select(F.col("als_user").cast("int"),
                                                    F.col("item_index").cast("int"), "times")
    model = SparkALS(rank=rank, maxIter=iterations, regParam=reg_param, alpha=alpha, implicitPrefs=True,
                     userCol="als_user", itemCol="item_index", ratingCol="times", seed=seed,
                     nonnegative=False).fit(ratings)
    items = np.zeros((size, rank), dtype=np.float32)
    for row in model.itemFactors.toLocalIterator():
        items[row["id"]] = row["features"]
    log.info("als: fitted rank %d on %s rows of ds=%s (%d items with factors)", rank, split, ds,
             int(np.any(items != 0, axis=1).sum()))
    return AlsFactors(items, reg_param, alpha)


def fold_in(factors: AlsFactors, items: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """User vectors ``[B, rank]`` (float64) solved from each row's input items ``[B, L]`` (padding and items
    beyond the factors ignored), and whether the row had any item to solve from ``[B]``."""
    y = torch.from_numpy(factors.items).to(torch.float64)  # [V, r]
    indexes = torch.from_numpy(items)
    known = (indexes >= FIRST_ITEM_INDEX) & (indexes < y.shape[0])  # [B, L]
    indexes = torch.where(known, indexes, 0)
    same = (indexes[:, :, None] == indexes[:, None, :]) & known[:, :, None] & known[:, None, :]  # [B, L, L]
    times = same.sum(2).to(torch.float64)  # [B, L] how often the step's item occurs in the row
    earlier = torch.tril(torch.ones(same.shape[1:], dtype=torch.bool), diagonal=-1)
    first = known & ~(same & earlier).any(2)  # [B, L] the item's first occurrence counts it once
    steps = y[indexes]  # [B, L, r]
    confidence = first * factors.alpha * times  # [B, L]
    rank = y.shape[1]
    lhs = (y.T @ y + (steps * confidence[:, :, None]).transpose(1, 2) @ steps  # [B, r, r]
           + factors.reg_param * first.sum(1).to(torch.float64)[:, None, None] * torch.eye(rank, dtype=torch.float64))
    rhs = torch.einsum("bl,blr->br", first * (1.0 + factors.alpha * times), steps)
    usable = first.any(1)
    users = torch.zeros(len(items), rank, dtype=torch.float64)
    if usable.any():
        users[usable] = torch.linalg.solve(lhs[usable], rhs[usable])
    return users, usable


@dataclass
class AlsRanker:
    """Folded-in user vector . item factors; rows without an item the fit knows rank ``fallback``."""

    factors: AlsFactors
    fallback: torch.Tensor  # [V] as the model's fallback (popularity, -inf where never seen or blocked)
    name: str = ALS

    def scores(self, batch: HeldOut) -> torch.Tensor:
        longest = int(batch.lengths.max()) if len(batch) else 0
        users, usable = fold_in(self.factors, left_pad(batch.inputs["items"], max(longest, 1)))
        out = self.fallback.expand(len(batch), -1).clone()
        items = torch.from_numpy(self.factors.items).to(torch.float64)
        out[usable] = (users[usable] @ items.T).to(torch.float32)
        return out
