"""Evaluation against a tiny catalogue whose ranks are known by construction.

Every user walks consecutive items (i, i+1, i+2, ... wrapping inside the 38 real items 2..39), so a model
whose user vector is the embedding of "last item + 1" ranks every held-out item first, and its negation
ranks it last. The models are real registered versions: a ``torch.export`` program plus item embeddings,
logged to an MLflow run, exactly as lake/registry.py describes.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
import torch

from lake import Config, EmptyInputError, InputError, Lake
from lake.schemas import spec
from training.evaluate import (
    FULL,
    EvaluateSettings,
    build_inputs,
    evaluate,
    full_ranking,
    item_popularity,
    length_bucket_metrics,
    sample_negatives,
)

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


def example_rows(sequences: dict[int, list[int]], ds: str = DS) -> pa.Table:
    """train_examples rows as featurization writes them: train, valid and test rows per user."""
    rows: list[dict] = []
    for user, seq in sequences.items():
        held_out = {"train": (seq[:-3], seq[1:-2]),
                    "valid": (seq[:-2], [0] * (len(seq) - 3) + [seq[-2]]),
                    "test": (seq[:-1], [0] * (len(seq) - 2) + [seq[-1]])}
        for split, (items, targets) in held_out.items():
            rows.append({"user_id": user, "split": split, "items": items, "behaviours": [1] * len(items),
                         "categories": [2 + i % 5 for i in items], "gap_buckets": [0] * len(items),
                         "targets": targets, "ds": ds})
    return pa.Table.from_pylist(rows, schema=spec("train_examples").schema)


def write_dataset(lake: Lake, ds: str = DS, sequences: dict[int, list[int]] | None = None) -> dict[int, list[int]]:
    sequences = sequences or {user: sequence(user) for user in USERS}
    lake.write("train_examples", example_rows(sequences, ds), partition=ds)
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
    return config.with_overrides({"evaluate": {"negatives": NEGATIVES, "batch_size": 7}})


# -- inputs ----------------------------------------------------------------------------------------
def test_inputs_are_left_padded_truncated_and_carry_the_whole_history():
    sequences = {7: [2, 3, 4, 5, 6, 7, 8, 9, 10], 3: [20, 21, 45, 22, 23]}  # 45 is beyond the model vocab
    inputs = build_inputs(example_rows(sequences), "test", max_len=MAX_LEN, item_vocab_size=VOCAB)
    assert inputs.user_ids.tolist() == [3, 7]
    assert inputs.targets.tolist() == [23, 10]
    assert inputs.lengths.tolist() == [4, 8]
    assert inputs.sequences["items"].tolist() == [[0, 0, 20, 21, 1, 22], [4, 5, 6, 7, 8, 9]]
    assert inputs.sequences["behaviours"][0].tolist() == [0, 0, 1, 1, 1, 1]
    history = {(int(r), int(i)) for r, i in zip(inputs.history_rows, inputs.history_items, strict=True)}
    assert history == {(0, i) for i in (20, 21, 22, 23)} | {(1, i) for i in range(2, 11)}
    valid = build_inputs(example_rows(sequences), "valid", max_len=MAX_LEN, item_vocab_size=VOCAB)
    assert valid.targets.tolist() == [22, 9]


def test_rows_without_a_real_target_are_skipped_and_empty_splits_refused():
    rows = example_rows({1: [2, 3, 4, 5], 2: [6, 7, 8, 1]})  # user 2's held-out item is unknown
    inputs = build_inputs(rows, "test", max_len=MAX_LEN, item_vocab_size=VOCAB)
    assert inputs.user_ids.tolist() == [1] and inputs.skipped_rows == 1
    with pytest.raises(EmptyInputError, match="featurize"):
        build_inputs(rows.filter(pa.compute.equal(rows.column("split"), "train")), "test",
                     max_len=MAX_LEN, item_vocab_size=VOCAB)


def test_popularity_counts_each_training_interaction_once():
    popularity = item_popularity(example_rows({1: [2, 3, 4, 5, 6], 2: [3, 4, 9, 10]}), VOCAB)
    # training sequences: user 1 -> 2, 3, 4 ; user 2 -> 3, 4 (valid/test items are not training data)
    assert popularity[2:6].tolist() == [1, 2, 2, 0]
    assert int(popularity.sum()) == 5


# -- ranking ---------------------------------------------------------------------------------------
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


def test_full_ranking_excludes_history_and_ties_go_against_the_target():
    users = torch.tensor([[1.0, 0.0], [0.0, 0.0]])
    items = torch.tensor([[0.0, 0.0], [0.0, 0.0], [2.0, 0.0], [1.0, 0.0], [1.0, 0.0], [0.5, 0.0]])
    excluded = torch.tensor([[True, True, True, False, False, False]] * 2)  # item 2 (best) was interacted
    ranks, top = full_ranking(users, items, torch.tensor([3, 5]), excluded, top_k=2)
    assert ranks.tolist() == [2, 3]  # user 0: 3 ties with 4; user 1: every candidate ties
    assert top[0].tolist()[0] in (3, 4) and 2 not in top.flatten().tolist()


# -- the stage -------------------------------------------------------------------------------------
def test_oracle_model_ranks_every_user_first(eval_config: Config, lake: Lake, tmp_path: Path):
    write_dataset(lake)
    version = register_model(eval_config, tmp_path, oracle_table())
    run = evaluate(eval_config, version)
    evaluation = run.evaluation
    assert evaluation.users == len(USERS) and evaluation.ds == DS and evaluation.split == "test"
    for protocol in (f"sampled{NEGATIVES}", FULL):
        metrics = evaluation.protocols[protocol].metrics
        assert metrics["hr@1"] == metrics["ndcg@10"] == metrics["mrr"] == pytest.approx(1.0)
        assert metrics["f1_test@10"] == pytest.approx(2 / (1 + sum(1 / np.log2(r + 1) for r in range(1, 11))))
    full = evaluation.protocols[FULL].metrics
    assert full["coverage@1"] == pytest.approx(len({sequence(u)[-1] for u in USERS}) / REAL)
    assert "diversity@10" in full and "avg_popularity@10" in full
    # a top-50 list would need more candidates than the 38-item catalogue leaves: that cutoff is left out
    assert "coverage@50" not in full and all(v <= 1.0 for k, v in full.items() if k.startswith("coverage"))
    assert run.report_path is not None and run.report_path.exists()


def test_worst_and_constant_models_rank_the_target_last(eval_config: Config, lake: Lake, tmp_path: Path):
    sequences = write_dataset(lake)
    expected_full = [REAL - len(sequences[u]) + 1 for u in sorted(sequences)]  # every non-interacted item
    for table in (oracle_table(-1.0), torch.zeros(VOCAB, VOCAB)):  # the constant model only makes ties
        evaluation = evaluate(eval_config, register_model(eval_config, tmp_path, table)).evaluation
        assert evaluation.protocols[FULL].ranks.tolist() == expected_full
        assert set(evaluation.protocols[f"sampled{NEGATIVES}"].ranks.tolist()) == {NEGATIVES + 1}


def test_metrics_rows_one_per_protocol_metric_k_and_reevaluation_replaces(eval_config: Config, lake: Lake,
                                                                          tmp_path: Path):
    write_dataset(lake)
    version = register_model(eval_config, tmp_path, oracle_table())
    first = evaluate(eval_config, version).evaluation
    table = lake.read("model_metrics", partition=version)
    keys = list(zip(table.column("protocol").to_pylist(), table.column("metric").to_pylist(),
                    table.column("k").to_pylist(), strict=True))
    assert len(keys) == len(set(keys)) == sum(len(p.metrics) for p in first.protocols.values())
    assert ("full", "mrr", 0) in keys and (f"sampled{NEGATIVES}", "ndcg", 50) in keys
    assert set(table.column("users").to_pylist()) == {len(USERS)}

    evaluate(eval_config, version, split="valid")
    evaluate(eval_config, version)  # re-evaluating test replaces its rows and keeps the valid ones
    table = lake.read("model_metrics", partition=version)
    splits = table.column("split").to_pylist()
    assert splits.count("test") == splits.count("valid") == len(keys)


def test_sampled_negatives_are_reproducible(eval_config: Config, lake: Lake, tmp_path: Path):
    write_dataset(lake)
    random_table = torch.randn(VOCAB, VOCAB, generator=torch.Generator().manual_seed(1))
    version = register_model(eval_config, tmp_path, random_table)
    once = evaluate(eval_config, version).evaluation.protocols[f"sampled{NEGATIVES}"].ranks
    again = evaluate(eval_config, version).evaluation.protocols[f"sampled{NEGATIVES}"].ranks
    assert torch.equal(once, again)


def test_new_items_are_unknown_inputs_and_missed_targets(eval_config: Config, lake: Lake, tmp_path: Path):
    sequences = {user: sequence(user) for user in USERS}
    sequences[1] = [5, 6, 7, VOCAB + 3]  # held-out item newer than the model's vocabulary
    write_dataset(lake, sequences=sequences)
    version = register_model(eval_config, tmp_path, oracle_table())
    evaluation = evaluate(eval_config, version).evaluation
    assert evaluation.out_of_vocab_targets == 1
    full = evaluation.protocols[FULL]
    assert full.metrics["hr@20"] == pytest.approx((len(USERS) - 1) / len(USERS))
    assert int(full.ranks[0]) == REAL - 3 + 1  # behind every candidate: 38 real items minus 3 interacted, + 1


def test_length_buckets_partition_the_users(eval_config: Config, lake: Lake, tmp_path: Path):
    write_dataset(lake)
    evaluation = evaluate(eval_config, register_model(eval_config, tmp_path, oracle_table())).evaluation
    rows = length_bucket_metrics(evaluation, [5, 8])
    full = [r for r in rows if r["protocol"] == FULL]
    assert [r["bucket"] for r in full] == ["1-4", "5-7", "8+"]
    assert sum(r["users"] for r in full) == len(USERS)
    # test rows hold len(sequence) - 1 inputs: 3..9
    assert full[0]["users"] == sum(1 for u in USERS if len(sequence(u)) - 1 < 5)


def test_settings_come_from_the_shipped_defaults(config: Config):
    settings = EvaluateSettings.from_config(config)
    assert settings.negatives == 100 and settings.ks == (1, 5, 10, 20, 50) and settings.split == "test"
    assert settings.sampled_protocol == "sampled100"
    assert json.dumps(settings.length_buckets)
