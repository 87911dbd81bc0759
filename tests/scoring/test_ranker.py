"""The executor-side ranking, run in-process on Arrow batches (no Spark): hand-checked top-N and rules."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
import torch

from lake import ArtifactIntegrityError, InputError
from lake.artifacts import ITEM_EMBEDDINGS
from lake.sequences import left_pad
from lake.serving import ServingRules, build_catalogue, rank_within_category, top_items
from scoring.ranker import USER_ROW_COLUMNS, RankPlan, load_plan, rank_batch
from tests.scoring.conftest import CATEGORY_OF_INDEX, EXPECTED_TOP3, local_model, vocab_table

POPULARITY = {7: 5, 6: 4, 5: 3, 2: 2, 3: 1}
LIST = pa.list_(pa.int32())


def test_left_pad_keeps_the_most_recent_items_right_aligned():
    lists = pa.array([[2, 3, 4, 5, 6], [7], None, []], type=LIST)
    assert left_pad(lists, 3).tolist() == [[4, 5, 6], [0, 0, 7], [0, 0, 0], [0, 0, 0]]


def test_rank_within_category_counts_better_items_of_the_same_category():
    categories = torch.tensor([[5, 3, 5, 5, 3, 9]])
    assert rank_within_category(categories).tolist() == [[0, 0, 1, 2, 1, 0]]


def test_top_items_puts_minus_inf_last_and_caps_categories():
    scores = torch.tensor([[9.0, 8.0, 7.0, 6.0, 5.0, float("-inf")]])
    categories = torch.tensor([1, 1, 1, 2, 2, 3])
    values, indexes = top_items(scores, 4, categories, max_per_category=2)
    assert indexes[0, :4].tolist()[:4] == [0, 1, 3, 4]
    assert values[0].tolist() == [9.0, 8.0, 6.0, 5.0]
    values, indexes = top_items(scores, 4, categories, max_per_category=1)
    assert indexes[0, :2].tolist() == [0, 3]
    assert values[0, 2:].tolist() == [float("-inf")] * 2, "only two categories have candidates"


def test_top_items_widens_its_window_when_the_cap_discards_the_first_candidates():
    width = 40
    scores = torch.arange(width, 0, -1, dtype=torch.float32).view(1, width)
    categories = torch.zeros(width, dtype=torch.int64)
    categories[-1] = 1  # the worst item is the only one of another category
    _, indexes = top_items(scores, 2, categories, max_per_category=1)
    assert indexes[0].tolist() == [0, width - 1]


def _plan(tmp_path: Path, top_n: int = 3, **rules) -> RankPlan:
    popularity = pa.table({"item_index": list(POPULARITY), "events": list(POPULARITY.values())})
    categories = pa.table({"item_index": list(CATEGORY_OF_INDEX), "category_index": list(CATEGORY_OF_INDEX.values())})
    catalogue = build_catalogue(vocab_table(), 8, denied_item_ids=rules.pop("denied", ()),
                                item_categories=categories, popularity=popularity)
    serve = ServingRules(top_n=top_n, exclude_behaviours=("purchase",), exclude_window_days=90,
                         honour_deny_list=True, max_per_category=rules.pop("max_per_category", 0),
                         retrieval=rules.pop("retrieval", "exact"))
    return RankPlan(model=local_model(tmp_path / "model"), catalogue=catalogue, rules=serve,
                    users_per_batch=rules.pop("per_batch", 64), torch_threads=1, device="cpu")


def _batch(users: dict[int, tuple[list[int] | None, list[int] | None]]) -> pa.RecordBatch:
    """user -> (sequence item indexes or None, excluded item indexes or None)."""
    sequences = [s for s, _ in users.values()]
    columns = {"user_id": pa.array(list(users), pa.int64()), "items": pa.array(sequences, LIST)}
    for name in ("behaviours", "categories", "gap_buckets"):
        columns[name] = pa.array([None if s is None else [1] * len(s) for s in sequences], LIST)
    columns["excluded"] = pa.array([e for _, e in users.values()], LIST)
    return pa.RecordBatch.from_pydict({name: columns[name] for name in USER_ROW_COLUMNS})


def _lists(plan: RankPlan, batch: pa.RecordBatch) -> dict[int, tuple[str, list[tuple[int, float]], bool]]:
    table = pa.Table.from_batches(list(rank_batch(load_plan(plan), batch)))
    table = table.sort_by([("user_id", "ascending"), ("rank", "ascending")])
    out: dict[int, tuple[str, list, bool]] = {}
    for row in table.to_pylist():
        _, items, _ = out.setdefault(row["user_id"], (row["source"], [], row["short_list"]))
        items.append((row["item_id"], round(row["score"], 4)))
        assert row["rank"] == len(items), "ranks are 1..n in score order"
    return out


STANDARD = {10: ([3, 2], None), 11: ([5, 6], [5]), 12: (None, None), 13: ([8], [7])}


@pytest.mark.parametrize("retrieval", ["exact", "ivf"])
def test_hand_checked_top_n_with_exclusions_and_popularity_fallback(tmp_path: Path, retrieval: str):
    plan = _plan(tmp_path, retrieval=retrieval)
    assert (load_plan(plan).index is not None) == (retrieval == "ivf")
    lists = _lists(plan, _batch(STANDARD))
    assert {u: (source, items) for u, (source, items, _) in lists.items()} == {
        u: (source, [(i, pytest.approx(s, abs=1e-4)) for i, s in items]) for u, (source, items) in EXPECTED_TOP3.items()
    }
    assert not any(short for _, _, short in lists.values())


@pytest.mark.parametrize("retrieval", ["exact", "ivf"])
def test_deny_list_padding_and_unknown_items_are_never_recommended(tmp_path: Path, retrieval: str):
    lists = _lists(_plan(tmp_path, top_n=4, denied=[106], retrieval=retrieval), _batch(STANDARD))
    recommended = {i for _, items, _ in lists.values() for i, _ in items}
    assert 106 not in recommended and 108 not in recommended, "denied and post-training items excluded"
    assert recommended <= {102, 103, 104, 105, 107}
    assert [i for i, _ in lists[11][1]] == [104, 103, 102, 107], "105 bought, 106 denied"


def test_short_lists_are_flagged_when_the_rules_leave_fewer_than_n_items(tmp_path: Path):
    lists = _lists(_plan(tmp_path, top_n=6), _batch(STANDARD))
    assert len(lists[10][1]) == 6 and lists[10][2] is False, "all six model items fit"
    assert len(lists[11][1]) == 5 and lists[11][2] is True, "one bought item removed"
    assert [i for i, _ in lists[12][1]] == [107, 106, 105, 102, 103] and lists[12][2] is True
    assert len(lists[13][1]) == 4 and lists[13][2] is True, "104 was never seen, 107 was bought"


@pytest.mark.parametrize("retrieval", ["exact", "ivf"])
def test_category_cap_keeps_the_best_item_of_each_category(tmp_path: Path, retrieval: str):
    lists = _lists(_plan(tmp_path, max_per_category=1, retrieval=retrieval), _batch(STANDARD))
    assert [i for i, _ in lists[10][1]] == [102, 104, 106]
    assert [i for i, _ in lists[11][1]] == [106, 104, 103]
    assert [i for i, _ in lists[12][1]] == [107, 105, 102]


def test_chunks_of_users_give_the_same_lists_as_one_batch(tmp_path: Path):
    whole = _lists(_plan(tmp_path), _batch(STANDARD))
    assert _lists(_plan(tmp_path, per_batch=1), _batch(STANDARD)) == whole


def test_sequences_longer_than_max_len_use_their_most_recent_items(tmp_path: Path):
    # max_len = 4 keeps (7, 7, 3, 2): u = (-0.1, -0.3); all six items would give u = (-2.1, -0.7) -> 107, 106, 105
    lists = _lists(_plan(tmp_path), _batch({20: ([7, 7, 7, 7, 3, 2], None)}))
    assert lists[20][1] == [(107, pytest.approx(0.16)), (102, pytest.approx(-0.1)), (103, pytest.approx(-0.12))]


def test_a_negative_item_index_is_refused(tmp_path: Path):
    with pytest.raises(InputError, match="negative item indexes"):
        list(rank_batch(load_plan(_plan(tmp_path)), _batch({30: ([2, -5], None)})))


def test_encoder_inputs_are_int64_and_left_padded(tmp_path: Path):
    seen = {}
    loaded = load_plan(_plan(tmp_path))
    encode = loaded.scorer.program

    def spy(items, behaviours, categories, gap_buckets):
        seen.update(items=items.clone(), dtype=items.dtype)
        return encode(items, behaviours, categories, gap_buckets)

    loaded.scorer.program = spy
    list(rank_batch(loaded, _batch({40: ([3, 2], None)})))
    assert seen["dtype"] == torch.int64
    assert np.array_equal(seen["items"].numpy(), [[0, 0, 3, 2]])


def test_an_executor_refuses_model_files_changed_after_they_were_shipped(tmp_path: Path):
    plan = _plan(tmp_path)  # the digests are recorded, then the file changes where the executor reads it
    shipped = Path(plan.model.folder) / ITEM_EMBEDDINGS
    data = bytearray(shipped.read_bytes())
    data[-1] ^= 0xFF
    shipped.write_bytes(bytes(data))
    with pytest.raises(ArtifactIntegrityError, match=f"{ITEM_EMBEDDINGS} does not match the sha256 recorded"):
        load_plan(plan)
