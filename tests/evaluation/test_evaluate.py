"""Evaluation against a tiny catalogue whose ranks are known by construction.

Every user walks consecutive items (i, i+1, i+2, ... wrapping inside the 38 real items 2..39), so a model
whose user vector is the embedding of "last item + 1" ranks every held-out item first, and its negation
ranks it last. The models are real registered versions: a ``torch.export`` program plus item embeddings,
logged to an MLflow run, exactly as lake/registry.py describes.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
import torch

from evaluation import protocols
from evaluation.evaluate import evaluate
from evaluation.heldout import heldout_batches, training_popularity
from evaluation.metrics import UNRANKED
from evaluation.protocols import (
    FULL,
    SERVED,
    ServedCatalogue,
    draw_negatives,
    excluded_coordinates,
    full_ranks,
    sample_negatives,
    sampled_ranks,
    served_ranks,
)
from evaluation.rankers import RecentItemsRanker
from evaluation.settings import EvaluateSettings
from lake import Config, InputError, Lake
from lake.schemas import spec
from lake.serving import ServingRules, build_catalogue
from lake.user_sample import in_user_sample

DS = "2024-01-05"
VOCAB = 40  # 0 padding, 1 unknown, 2..39 real items
REAL = VOCAB - 2
MAX_LEN = 6
NEGATIVES = 10
USERS = range(1, 31)


# -- fixtures shared with test_gate.py and test_report.py ------------------------------------------
def next_item(item: int) -> int:
    return 2 + (item - 2 + 1) % REAL


def sequence(user: int) -> list[int]:
    start, length = 2 + (user * 5) % REAL, 4 + user % 7
    return [2 + (start - 2 + j) % REAL for j in range(length)]


DAY = 19727  # DS in days since 1970-01-01
CLICK, PURCHASE = 1, 5


def example_rows(sequences: dict[int, list[int]], ds: str = DS,
                 behaviours: dict[int, list[int]] | None = None) -> pa.Table:
    """train_examples rows as featurization writes them: train, valid and test rows per user (clicks unless
    ``behaviours`` gives a user's behaviour per event)."""
    rows: list[dict] = []
    for user, seq in sequences.items():
        acts = (behaviours or {}).get(user, [CLICK] * len(seq))
        held_out = {"train": (slice(0, len(seq) - 3), seq[1:-2], acts[1:-2]),
                    "valid": (slice(0, len(seq) - 2), [0] * (len(seq) - 3) + [seq[-2]],
                              [0] * (len(seq) - 3) + [acts[-2]]),
                    "test": (slice(0, len(seq) - 1), [0] * (len(seq) - 2) + [seq[-1]],
                             [0] * (len(seq) - 2) + [acts[-1]])}
        for split, (inputs, targets, target_behaviours) in held_out.items():
            items = seq[inputs]
            rows.append({"user_id": user, "split": split, "items": items, "behaviours": acts[inputs],
                         "categories": [2 + i % 5 for i in items], "gap_buckets": [0] * len(items),
                         "days": [DAY] * len(items), "targets": targets, "target_behaviours": target_behaviours,
                         "ds": ds})
    return pa.Table.from_pylist(rows, schema=spec("train_examples").schema)


def write_dataset(lake: Lake, ds: str = DS, sequences: dict[int, list[int]] | None = None,
                  behaviours: dict[int, list[int]] | None = None) -> dict[int, list[int]]:
    sequences = sequences or {user: sequence(user) for user in USERS}
    lake.write("train_examples", example_rows(sequences, ds, behaviours), partition=ds)
    known = list(range(2, VOCAB + 10))  # the lake's vocabulary also holds items newer than the models
    lake.write("item_vocab", pa.table({"item_id": pa.array([1000 + i for i in known], pa.int64()),
                                       "item_index": pa.array(known, pa.int32()), "first_seen_ds": [ds] * len(known)}),
               mode="overwrite")
    items = list(range(2, VOCAB))
    lake.write("item_categories", pa.table({"item_index": items, "category_index": [2 + i % 5 for i in items],
                                            "ds": [ds] * len(items)}, schema=spec("item_categories").schema),
               partition=ds)
    return sequences


class LastItemLookup(torch.nn.Module):
    """User vector = a fixed row per most recent input item: ``user_table[items[:, -1]]`` -> [B, H]."""

    def __init__(self, user_table: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("user_table", user_table)

    def forward(self, items: torch.Tensor, behaviours: torch.Tensor, categories: torch.Tensor,
                gap_buckets: torch.Tensor) -> torch.Tensor:
        return self.user_table[items[:, -1]]


def oracle_table(sign: float = 1.0) -> torch.Tensor:
    """``[V, V]``: row i is (sign x) the one-hot embedding of next_item(i), so the target scores sign x 1."""
    table = torch.zeros(VOCAB, VOCAB)
    for item in range(2, VOCAB):
        table[item, next_item(item)] = sign
    return table


def register_model(config: Config, tmp_path: Path, user_table: torch.Tensor, *, trained_ds: str = DS,
                   meta: dict | None = None, curves: list[dict[str, float]] | None = None) -> str:
    """Export, log and register a LastItemLookup model; returns its version."""
    import mlflow

    from lake.artifacts import save
    from lake.registry import experiment_id, register, tracking

    item_embeddings = torch.eye(VOCAB)  # [V, H = V]
    model_dir = Path(tmp_path) / f"model-{len(list(Path(tmp_path).glob('model-*')))}"
    model_dir.mkdir(parents=True)
    # Four distinct example tensors: export would treat one tensor passed four times as one aliased input.
    examples = tuple(torch.randint(0, VOCAB, (3, MAX_LEN)) for _ in range(4))
    batch = torch.export.Dim("batch")
    program = torch.export.export(LastItemLookup(user_table), examples, dynamic_shapes=({0: batch},) * 4)
    save(model_dir, program, item_embeddings, {"user_table": user_table})
    with tracking(config), mlflow.start_run(experiment_id=experiment_id(config)) as run:
        for epoch, values in enumerate(curves or []):
            mlflow.log_metrics(values, step=epoch)
    full_meta = {"model_type": "lookup", "max_len": MAX_LEN, "item_vocab_size": VOCAB, "trained_ds": trained_ds,
                 "vocab_fingerprint": "test"} | (meta or {})
    return register(config, model_dir, full_meta, run_id=run.info.run_id).version


@pytest.fixture
def eval_config(config: Config) -> Config:
    return config.with_overrides({"evaluate": {"negatives": NEGATIVES, "batch_size": 7},
                                  "serve": {"top_n": 20}})


# -- held-out rows ---------------------------------------------------------------------------------
def _batches(lake: Lake, split: str = "test", rows: int = 7) -> list:
    return list(heldout_batches(lake, DS, split, batch_rows=rows))


def test_heldout_rows_stream_in_batches_with_their_history(lake: Lake):
    sequences = {7: [2, 3, 4, 5, 3], 3: [20, 21, 45, 22, 23], **{u: sequence(u) for u in range(10, 20)}}
    lake.write("train_examples", example_rows(sequences, behaviours={7: [1, 5, 1, 1, 2]}), partition=DS)
    batches = _batches(lake, rows=4)
    assert [len(b) for b in batches] == [4, 4, 4], "at most batch_rows rows at a time"
    by_user = {int(u): (b, i) for b in batches for i, u in enumerate(b.user_ids)}
    batch, row = by_user[7]
    assert batch.targets[row] == 3 and batch.target_behaviours[row] == 2 and batch.repeat[row]
    assert batch.lengths[row] == 4 and batch.last_days[row] == DAY
    mine = batch.input_rows == row
    assert batch.input_items[mine].tolist() == [2, 3, 4, 5] and batch.input_behaviours[mine].tolist() == [1, 5, 1, 1]
    batch, row = by_user[3]
    assert batch.targets[row] == 23 and not batch.repeat[row], "an explore target"
    assert [int(b.targets[by_user[7][1]]) for b in [by_user[7][0]]] == [3]
    valid = {int(u): int(t) for b in _batches(lake, "valid") for u, t in zip(b.user_ids, b.targets, strict=True)}
    assert valid[7] == 5 and valid[3] == 22


def test_rows_without_a_real_target_are_counted_not_ranked(lake: Lake):
    lake.write("train_examples", example_rows({1: [2, 3, 4, 5], 2: [6, 7, 8, 1]}), partition=DS)
    skipped: list[int] = []
    batches = list(heldout_batches(lake, DS, "test", skipped=skipped))
    assert [u for b in batches for u in b.user_ids.tolist()] == [1] and sum(skipped) == 1


def test_popularity_counts_each_training_interaction_once(lake: Lake):
    lake.write("train_examples", example_rows({1: [2, 3, 4, 5, 6], 2: [3, 4, 9, 10]}), partition=DS)
    popularity = training_popularity(lake, DS, VOCAB)
    # training sequences: user 1 -> 2, 3, 4 ; user 2 -> 3, 4 (valid/test items are not training data)
    assert popularity[2:6].tolist() == [1, 2, 2, 0]
    assert int(popularity.sum()) == 5


# -- protocols on a hand-made catalogue ------------------------------------------------------------
HAND_VOCAB = 8  # items 2..7; item i scores i for every user, so 7 ranks first


def _hand_made(lake: Lake, *, denied: tuple[int, ...] = (), categories: dict[int, int] | None = None,
               max_per_category: int = 0, exclude_window_days: int = 90):
    """User 1 clicked 2, bought 3, clicked 4 and then clicks 3 again (a repeat target the rules exclude);
    user 2 clicked 5 and 6 and then clicks 7 (explore)."""
    lake.write("train_examples", example_rows({1: [9, 2, 3, 4, 3], 2: [9, 9, 5, 6, 7]},
                                              behaviours={1: [1, 1, 5, 1, 1]}), partition=DS)
    batch = _batches(lake)[0]
    order = np.argsort(batch.user_ids)
    assert batch.user_ids[order].tolist() == [1, 2]
    rules = ServingRules(top_n=3, exclude_behaviours=("purchase",), exclude_window_days=exclude_window_days,
                         honour_deny_list=True, max_per_category=max_per_category)
    vocab = pa.table({"item_id": list(range(100, 100 + HAND_VOCAB)), "item_index": list(range(HAND_VOCAB))})
    category_rows = None
    if categories:
        category_rows = pa.table({"item_index": list(categories), "category_index": list(categories.values())})
    catalogue = build_catalogue(vocab, HAND_VOCAB, denied_item_ids=[100 + i for i in denied],
                                item_categories=category_rows)
    scores = torch.arange(HAND_VOCAB, dtype=torch.float32).expand(2, -1).clone()
    return batch, ServedCatalogue.build(catalogue, rules), scores, order


def _ranks(ranks: torch.Tensor, order: np.ndarray) -> list[int]:
    return ranks[torch.from_numpy(order)].tolist()


def test_served_full_and_sampled_ranks_by_hand(lake: Lake):
    batch, served, scores, order = _hand_made(lake)
    targets = torch.from_numpy(batch.targets)
    # full: nothing excluded; user 1's 3 is beaten by 4..7, user 2's 7 is first
    assert _ranks(full_ranks(scores.clone(), targets), order) == [5, 1]
    # served, top 3 with bought items excluded: user 1's list is 7, 6, 5 (3 was bought): a miss;
    # user 2's list is 7, 6, 5: a hit at 1
    ranks, lists, filled = served_ranks(scores.clone(), targets, served, excluded_coordinates(batch, served.rules, 8))
    assert _ranks(ranks, order) == [UNRANKED, 1]
    assert lists[torch.from_numpy(order)].tolist() == [[7, 6, 5], [7, 6, 5]] and bool(filled.all())
    # sampled: negatives come from items outside the row (user 1: 5, 6, 7 are all that is left)
    negatives = draw_negatives(batch, HAND_VOCAB, 2, torch.Generator().manual_seed(0))
    first = int(np.flatnonzero(batch.user_ids == 1)[0])
    assert set(negatives[first].tolist()) <= {5, 6, 7}
    assert _ranks(sampled_ranks(scores, targets, negatives), order) == [3, 1]


def test_served_rules_deny_list_window_and_category_cap(lake: Lake):
    batch, served, scores, order = _hand_made(lake, denied=(7,))
    targets = torch.from_numpy(batch.targets)
    ranks, lists, _ = served_ranks(scores.clone(), targets, served, excluded_coordinates(batch, served.rules, 8))
    assert _ranks(ranks, order) == [UNRANKED, UNRANKED], "user 2's target is deny-listed"
    assert lists[torch.from_numpy(order)].tolist() == [[6, 5, 4], [6, 5, 4]]
    batch, served, scores, order = _hand_made(lake, categories={7: 3, 6: 3, 5: 4, 4: 4, 3: 5, 2: 5},
                                              max_per_category=1)
    ranks, lists, _ = served_ranks(scores.clone(), targets, served, excluded_coordinates(batch, served.rules, 8))
    assert lists[torch.from_numpy(order)].tolist() == [[7, 5, 2], [7, 5, 3]], "one item per category"
    assert _ranks(ranks, order) == [UNRANKED, 1]
    # a purchase older than the window no longer excludes the item
    batch, served, scores, order = _hand_made(lake, exclude_window_days=1)
    old = batch.input_days.copy()
    old[(batch.input_behaviours == PURCHASE)] = DAY - 1
    aged = dataclasses.replace(batch, input_days=old)
    assert len(excluded_coordinates(aged, served.rules, 8)[0]) == 0
    assert len(excluded_coordinates(batch, served.rules, 8)[0]) == 1


def test_negatives_are_distinct_and_never_interacted():
    excluded = torch.zeros(2000, VOCAB, dtype=torch.bool)
    excluded[:, :2] = True
    excluded[:, 10:20] = True
    negatives = sample_negatives(excluded, 25, torch.Generator().manual_seed(0))
    assert negatives.shape == (2000, 25)
    assert not bool(excluded.gather(1, negatives).any())
    assert all(len(set(row)) == 25 for row in negatives.tolist())
    counts = torch.bincount(negatives.flatten(), minlength=VOCAB)[~excluded[0]]
    expected = 2000 * 25 / int((~excluded[0]).sum())  # uniform: ~1786 draws each, standard deviation ~14
    assert counts.min() > 0.9 * expected and counts.max() < 1.1 * expected
    with pytest.raises(InputError, match="evaluate.negatives"):
        sample_negatives(excluded, REAL - 9, torch.Generator())


def test_recent_items_rank_the_latest_distinct_item_first(lake: Lake):
    lake.write("train_examples", example_rows({1: [4, 2, 3, 2, 5, 2]}), partition=DS)
    scores = RecentItemsRanker(VOCAB).scores(_batches(lake)[0])
    ranked = torch.argsort(scores[0], descending=True)[:4].tolist()
    assert ranked == [5, 2, 3, 4] and torch.isinf(scores[0, 6:]).all()


# -- the stage -------------------------------------------------------------------------------------
def _repeat_last(user: int) -> list[int]:
    items = sequence(user)
    return [*items, items[-1]]


def test_recent_items_scores_one_under_full_and_zero_where_the_rules_exclude(eval_config: Config, lake: Lake,
                                                                             tmp_path: Path):
    sequences = {user: _repeat_last(user) for user in USERS}  # every target repeats the most recent item
    bought = {user: [CLICK] * (len(seq) - 2) + [PURCHASE, CLICK] for user, seq in sequences.items()}
    write_dataset(lake, sequences=sequences, behaviours=bought)
    evaluation = evaluate(eval_config, register_model(eval_config, tmp_path, oracle_table())).evaluation
    assert evaluation.metrics("recent-items", FULL)["hr@1"] == 1.0
    assert evaluation.metrics("recent-items", SERVED)["hr@1"] == 0.0, "the bought item is never served"
    assert evaluation.metrics("recent-items", SERVED)["hr@20"] == 0.0
    assert evaluation.group_users("recent-items", SERVED, segment="repeat") == len(USERS)
    assert evaluation.group_users("recent-items", SERVED, segment="explore") == 0
    assert evaluation.metrics("recent-items", SERVED, target="purchase") == {}, "no held-out purchase"


def test_oracle_model_ranks_every_user_first(eval_config: Config, lake: Lake, tmp_path: Path):
    write_dataset(lake)
    version = register_model(eval_config, tmp_path, oracle_table())
    run = evaluate(eval_config, version)
    evaluation = run.evaluation
    assert evaluation.users == len(USERS) and evaluation.ds == DS and evaluation.split == "test"
    for protocol in (SERVED, f"sampled{NEGATIVES}", FULL):
        metrics = evaluation.metrics(protocol=protocol)
        assert metrics["hr@1"] == metrics["ndcg@10"] == metrics["mrr"] == pytest.approx(1.0)
        assert metrics["f1_test@10"] == pytest.approx(2 / (1 + sum(1 / np.log2(r + 1) for r in range(1, 11))))
    assert evaluation.ks[SERVED] == (1, 5, 10, 20), "a served list holds serve.top_n = 20 items"
    assert evaluation.list_metrics["coverage@1"] == pytest.approx(len({sequence(u)[-1] for u in USERS}) / REAL)
    assert "diversity@10" in evaluation.list_metrics and "avg_popularity@10" in evaluation.list_metrics
    assert evaluation.group_users(segment="explore") == len(USERS)
    assert run.report_path is not None and run.report_path.exists()


def test_worst_and_constant_models_miss_under_every_protocol(eval_config: Config, lake: Lake, tmp_path: Path):
    write_dataset(lake)
    for table in (oracle_table(-1.0), torch.zeros(VOCAB, VOCAB)):  # the constant model only makes ties
        evaluation = evaluate(eval_config, register_model(eval_config, tmp_path, table)).evaluation
        assert evaluation.metrics(protocol=FULL)["mrr"] == pytest.approx(1 / REAL, rel=0.2)
        assert evaluation.metrics(protocol=f"sampled{NEGATIVES}")["mrr"] == pytest.approx(1 / (NEGATIVES + 1))
    worst = evaluate(eval_config, register_model(eval_config, tmp_path, oracle_table(-1.0))).evaluation
    assert worst.metrics(protocol=SERVED)["hr@20"] == 0.0, "the target scores below every other item"


def test_metrics_rows_one_per_group_metric_k_and_reevaluation_replaces(eval_config: Config, lake: Lake,
                                                                       tmp_path: Path):
    write_dataset(lake)
    version = register_model(eval_config, tmp_path, oracle_table())
    first = evaluate(eval_config, version).evaluation
    table = lake.read("model_metrics", partition=version)
    columns = ("ranker", "protocol", "target", "segment", "metric", "k")
    keys = list(zip(*(table.column(c).to_pylist() for c in columns), strict=True))
    assert len(keys) == len(set(keys)) == len(first.values) + len(first.list_metrics)
    assert ("model", "served", "interaction", "all", "ndcg", 10) in keys
    assert ("recent-items", "full", "interaction", "explore", "mrr", 0) in keys
    assert not any(key[3] == "repeat" for key in keys), "no target repeats an input: no repeat rows"
    assert ("popularity", f"sampled{NEGATIVES}", "interaction", "explore", "hr", 10) in keys
    served = table.filter(pa.compute.equal(table.column("protocol"), "served")).column("k").to_pylist()
    assert max(served) == 20
    errors = [v for v in table.column("std_error").to_pylist() if v is not None]
    assert errors and all(v >= 0 for v in errors)
    assert set(table.column("ds").to_pylist()) == {DS}

    evaluate(eval_config, version, split="valid")
    evaluate(eval_config, version)  # re-evaluating test replaces its rows and keeps the valid ones
    splits = lake.read("model_metrics", partition=version).column("split").to_pylist()
    assert splits.count("test") == len(keys) and splits.count("valid") > 0


def test_max_users_ranks_a_fixed_sample_and_says_so(eval_config: Config, lake: Lake, tmp_path: Path):
    write_dataset(lake)
    random_table = torch.randn(VOCAB, VOCAB, generator=torch.Generator().manual_seed(2))
    version = register_model(eval_config, tmp_path, random_table)
    everyone = evaluate(eval_config, version).evaluation
    assert everyone.sampled_from_users == 0
    sampled_config = eval_config.with_overrides({"evaluate": {"max_users": len(USERS) // 2}})
    sample = evaluate(sampled_config, version).evaluation
    seed = EvaluateSettings.from_config(sampled_config).seed
    picked = in_user_sample(np.array(USERS, dtype=np.int64), (len(USERS) // 2) / len(USERS), seed)
    assert sample.sampled_from_users == len(USERS) and sample.users == int(picked.sum()) < len(USERS)
    assert evaluate(sampled_config, version).evaluation.values == sample.values, "the same users each run"
    # the model's figures are those of ranking exactly the picked users' rows
    only_picked = {user: sequence(user) for user, keep in zip(USERS, picked, strict=True) if keep}
    write_dataset(lake, sequences=only_picked)
    alone = evaluate(eval_config, version).evaluation
    for protocol in (SERVED, FULL):
        assert alone.metrics(protocol=protocol) == pytest.approx(sample.metrics(protocol=protocol))
    # a max_users above the split's users ranks everyone
    assert evaluate(eval_config.with_overrides({"evaluate": {"max_users": 10_000}}), version
                    ).evaluation.sampled_from_users == 0


def test_under_ivf_retrieval_the_served_lists_come_through_scorings_index(
        eval_config: Config, lake: Lake, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    write_dataset(lake)
    random_table = torch.randn(VOCAB, VOCAB, generator=torch.Generator().manual_seed(3))
    version = register_model(eval_config, tmp_path, random_table)
    exact = evaluate(eval_config, version).evaluation
    calls = []
    served_top_of_users = protocols.served_top_of_users
    monkeypatch.setattr(protocols, "served_top_of_users",
                        lambda *args, **kwargs: calls.append(kwargs["index"]) or served_top_of_users(*args, **kwargs))
    # a catalogue of 38 items is one cluster, searched whole; 20 candidates for 20 places make the users who
    # bought one of their best items fall back to exact ranking: both paths, and the same lists as exact
    ivf = evaluate(eval_config.with_overrides({"serve": {"retrieval": "ivf", "ivf_candidates": 20}}), version)
    assert calls and all(index is not None for index in calls), "the model's rows went through the index"
    assert ivf.evaluation.values == exact.values


def test_sampled_negatives_are_reproducible(eval_config: Config, lake: Lake, tmp_path: Path):
    write_dataset(lake)
    random_table = torch.randn(VOCAB, VOCAB, generator=torch.Generator().manual_seed(1))
    version = register_model(eval_config, tmp_path, random_table)
    once = evaluate(eval_config, version).evaluation.metrics(protocol=f"sampled{NEGATIVES}")
    again = evaluate(eval_config, version).evaluation.metrics(protocol=f"sampled{NEGATIVES}")
    assert once == again


def test_new_items_are_unknown_inputs_and_missed_targets(eval_config: Config, lake: Lake, tmp_path: Path):
    sequences = {user: sequence(user) for user in USERS}
    sequences[1] = [5, 6, 7, VOCAB + 3]  # held-out item newer than the model's vocabulary
    write_dataset(lake, sequences=sequences)
    version = register_model(eval_config, tmp_path, oracle_table())
    evaluation = evaluate(eval_config, version).evaluation
    assert evaluation.out_of_vocab_targets == 1
    for protocol in (SERVED, FULL):
        assert evaluation.metrics(protocol=protocol)["hr@20"] == pytest.approx((len(USERS) - 1) / len(USERS))


def test_length_buckets_partition_the_users(eval_config: Config, lake: Lake, tmp_path: Path):
    write_dataset(lake)
    config = eval_config.with_overrides({"evaluate": {"length_buckets": [5, 8]}})
    evaluation = evaluate(config, register_model(config, tmp_path, oracle_table())).evaluation
    full = [r for r in evaluation.buckets if r["protocol"] == FULL]
    assert [r["bucket"] for r in full] == ["1-4", "5-7", "8+"]
    assert sum(r["users"] for r in full) == len(USERS)
    # test rows hold len(sequence) - 1 inputs: 3..9
    assert full[0]["users"] == sum(1 for u in USERS if len(sequence(u)) - 1 < 5)


def test_settings_come_from_the_shipped_defaults(config: Config):
    settings = EvaluateSettings.from_config(config)
    assert settings.negatives == 100 and settings.ks == (1, 5, 10, 20, 50) and settings.split == "test"
    assert settings.sampled_protocol == "sampled100"
    assert settings.target_behaviours == ("interaction", "purchase")
    assert settings.baselines == ("popularity", "recent-items")
    assert json.dumps(settings.length_buckets)


def _write_generated_rows(lake: Lake, users: int, length: int = 40) -> None:
    rng = np.random.default_rng(0)
    items = rng.integers(2, 12, size=(users, length + 1)).astype(np.int32)  # leaves items to sample from

    def lists(values: np.ndarray) -> pa.ListArray:
        return pa.ListArray.from_arrays(np.arange(0, values.size + 1, values.shape[1], dtype=np.int32), values.ravel())

    inputs, targets = items[:, :-1], np.zeros((users, length), dtype=np.int32)
    targets[:, -1] = items[:, -1]
    ones = np.ones_like(inputs)
    lake.write("train_examples", pa.table({
        "user_id": pa.array(np.arange(users), pa.int64()), "split": ["test"] * users, "items": lists(inputs),
        "behaviours": lists(ones), "categories": lists(ones * 2), "gap_buckets": lists(ones),
        "days": lists(ones * DAY), "targets": lists(targets),
        "target_behaviours": lists((targets > 0).astype(np.int32)), "ds": [DS] * users},
        schema=spec("train_examples").schema), partition=DS)
    lake.write("item_vocab", pa.table({"item_id": pa.array(range(VOCAB), pa.int64()),
                                       "item_index": pa.array(range(VOCAB), pa.int32()),
                                       "first_seen_ds": [DS] * VOCAB}), mode="overwrite")


_MEASURE = """
import sys, torch
from lake import Lake, load_config
from lake.serving import ServingRules
from evaluation.evaluate import evaluate_on_lake
from evaluation.settings import EvaluateSettings
from tests.evaluation.test_evaluate import LastItemLookup, oracle_table, VOCAB, DS

class Card:
    version = "1"

class Scorer:
    card = Card()
    meta = {"max_len": 50, "item_vocab_size": VOCAB}
    item_embeddings = torch.eye(VOCAB)
    module = LastItemLookup(oracle_table())
    def encode(self, *inputs):
        return self.module(*inputs)

config = load_config(environ={}).with_overrides({"lake": {"root": sys.argv[1]},
    "evaluate": {"negatives": 10, "batch_size": 256}, "serve": {"top_n": 20}})
import gc

def status_mib(key):
    # /proc, not getrusage: a child's ru_maxrss starts at its parent's RSS when it was forked.
    return next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith(key)) / 1024

gc.collect()
before = status_mib("VmRSS:")
settings, rules = EvaluateSettings.from_config(config), ServingRules.from_config(config)
[evaluation], _ = evaluate_on_lake(Lake.from_config(config), [Scorer()], ds=DS, split="test", settings=settings,
                                   rules=rules)
print(evaluation.users, before, status_mib("VmHWM:"))
"""


def _evaluation_peak_mib(config: Config, root: Path, users: int) -> float:
    """How far evaluating ``users`` generated rows lifts a fresh process's peak RSS above its RSS just before,
    in MiB."""
    import subprocess
    import sys

    _write_generated_rows(Lake.from_config(config.with_overrides({"lake": {"root": str(root)}})), users)
    done = subprocess.run([sys.executable, "-c", _MEASURE, str(root)], capture_output=True, text=True,
                          cwd=Path(__file__).resolve().parents[2])
    assert done.returncode == 0, done.stderr[-3000:]
    evaluated, before, after = done.stdout.split()
    assert int(evaluated) == users
    return float(after) - float(before)


@pytest.mark.slow
def test_evaluation_memory_does_not_grow_with_users(config: Config, tmp_path: Path):
    small = _evaluation_peak_mib(config, tmp_path / "small", 5_000)
    large = _evaluation_peak_mib(config, tmp_path / "large", 80_000)
    # Holding every row padded to max_len, as evaluation did before it streamed, adds 80k x 50 x 8 B x 4
    # columns = 122 MiB; streaming holds one batch.
    print(f"evaluation raised peak RSS by {small:.0f} MiB at 5k users, {large:.0f} MiB at 80k")
    assert small > 0, "the measurement sees the evaluation's own allocations"
    assert large < small + 40, f"peak RSS grew by {large - small:.0f} MiB from 5k to 80k users"


def test_cli_prints_the_served_protocol_first_and_the_table_version(eval_config: Config, lake: Lake,
                                                                     tmp_path: Path):
    import yaml
    from typer.testing import CliRunner

    from jobs.cli import app

    write_dataset(lake)
    version = register_model(eval_config, tmp_path, oracle_table())
    config_file = tmp_path / "seqrec.yaml"
    config_file.write_text(yaml.safe_dump(dict(eval_config.overrides)))
    done = CliRunner().invoke(app, ["evaluate", "--model", version, "--config", str(config_file)])
    assert done.exit_code == 0, done.output
    lines = done.stdout.strip().splitlines()
    served = [line for line in lines if " served " in line]
    assert served and " model: HR@10 1.0000" in served[0] and "(30 users, 0% repeat targets)" in served[0]
    assert lines.index(served[0]) < min(i for i, line in enumerate(lines) if " full " in line)
    assert lines[-1].startswith(f"model_version={version} split=test ds={DS} model_metrics_version=")
