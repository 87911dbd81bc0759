"""The ALS baseline: Spark MLlib fits item factors; folding a row's inputs in gives Spark's own user vector."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from evaluation.als import ALS, AlsFactors, AlsRanker, fit_item_factors, fold_in
from evaluation.evaluate import evaluate_on_lake
from evaluation.heldout import heldout_batches
from evaluation.protocols import FULL, SERVED
from evaluation.settings import EvaluateSettings
from lake import Config, Lake, ValidationError
from lake.serving import ServingRules
from tests.evaluation.test_evaluate import DS, USERS, VOCAB, oracle_table, register_model, sequence, write_dataset

pytestmark = [pytest.mark.spark]


def test_fold_in_counts_repeats_as_confidence_and_ignores_padding():
    rng = np.random.default_rng(0)
    factors = AlsFactors(rng.normal(size=(8, 3)).astype(np.float32), reg_param=0.1, alpha=2.0)
    y = factors.items.astype(np.float64)
    # row 0: item 4 twice and item 5 once, behind padding; row 1: nothing known (padding, unknown, too new)
    users, usable = fold_in(factors, np.array([[0, 4, 5, 4], [0, 0, 1, 9]]))
    assert usable.tolist() == [True, False]
    lhs = y.T @ y + 2.0 * 2 * np.outer(y[4], y[4]) + 2.0 * 1 * np.outer(y[5], y[5]) + 0.1 * 2 * np.eye(3)
    rhs = (1 + 2.0 * 2) * y[4] + (1 + 2.0 * 1) * y[5]
    np.testing.assert_allclose(users[0].numpy(), np.linalg.solve(lhs, rhs), rtol=1e-9)
    assert users[1].abs().sum() == 0


def test_fold_in_reproduces_spark_user_factors(spark):
    from pyspark.ml.recommendation import ALS as SparkALS

    rng = np.random.default_rng(1)
    histories = {user: rng.choice(np.arange(2, 30), size=int(rng.integers(2, 9))).tolist() for user in range(40)}
    ratings = [(user, item, float(histories[user].count(item))) for user in histories
               for item in sorted(set(histories[user]))]
    frame = spark.createDataFrame(ratings, "user int, item int, times float")
    model = SparkALS(rank=4, maxIter=6, regParam=0.05, alpha=3.0, implicitPrefs=True, userCol="user",
                     itemCol="item", ratingCol="times", seed=7).fit(frame)
    items = np.zeros((30, 4), dtype=np.float32)
    for row in model.itemFactors.collect():
        items[row["id"]] = row["features"]
    spark_users = {row["id"]: np.array(row["features"]) for row in model.userFactors.collect()}
    longest = max(len(h) for h in histories.values())
    padded = np.array([[0] * (longest - len(histories[u])) + histories[u] for u in range(40)])
    users, usable = fold_in(AlsFactors(items, 0.05, 3.0), padded)
    assert bool(usable.all())
    for user in range(40):
        np.testing.assert_allclose(users[user].numpy(), spark_users[user], rtol=2e-3, atol=2e-4)


@pytest.mark.slow
def test_als_fits_on_the_splits_inputs_and_ranks_beside_the_model(config: Config, spark, tmp_path: Path):
    lake = Lake.from_config(config, spark=spark)
    write_dataset(lake)
    eval_config = config.with_overrides({"evaluate": {"baselines": ["popularity", ALS], "als_rank": 8,
                                                      "als_iterations": 5, "negatives": 0},
                                         "serve": {"top_n": 20}})
    settings = EvaluateSettings.from_config(eval_config)
    factors = fit_item_factors(lake, DS, "test", size=VOCAB, rank=8, iterations=5, reg_param=0.05, alpha=10.0,
                               seed=1)
    seen = {item for user in USERS for item in sequence(user)[:-1]}
    assert {int(i) for i in np.flatnonzero(np.any(factors.items != 0, axis=1))} == seen, \
        "factors exist exactly for the items of the rows' inputs (a held-out item alone gets none)"

    version = register_model(eval_config, tmp_path, oracle_table())
    from lake.registry import load_model

    [evaluation], _ = evaluate_on_lake(lake, [load_model(eval_config, version)], ds=DS, split="test",
                                       settings=settings, rules=ServingRules.from_config(eval_config))
    als = evaluation.metrics(ranker=ALS, protocol=FULL)
    popularity = evaluation.metrics(ranker="popularity", protocol=FULL)
    assert evaluation.group_users(ranker=ALS, protocol=SERVED) == len(USERS)
    # Users walk consecutive items, so items co-occur with their neighbours: ALS must beat popularity.
    assert als["mrr"] > popularity["mrr"]

    batch = next(iter(heldout_batches(lake, DS, "test", batch_rows=64)))
    fallback = torch.full((VOCAB,), float("-inf"))
    scores = AlsRanker(factors, fallback).scores(batch)
    assert scores.shape == (len(USERS), VOCAB) and bool(torch.isfinite(scores).all())


def test_als_needs_spark(lake: Lake):
    write_dataset(lake)
    with pytest.raises(ValidationError, match="Spark"):
        fit_item_factors(lake, DS, "test", size=VOCAB, rank=4, iterations=2, reg_param=0.1, alpha=1.0, seed=1)
