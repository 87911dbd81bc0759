"""The scoring stage end to end on Spark (local[1]): hand-checked lists, rules, reruns and failures."""

from __future__ import annotations

import datetime as dt
import os

import pyarrow as pa
import pytest

from lake import Config, EmptyInputError, InputError, Lake, ModelNotFoundError
from scoring.publish import publish
from scoring.score import score
from tests.scoring.conftest import (
    DS,
    EXPECTED_TOP3,
    STANDARD_EVENTS,
    STANDARD_SEQUENCES,
    event,
    sequence,
    vocab_table,
    write_events,
    write_sequences,
    write_world,
)

# delta-spark: the rerun and failure tests below; row-for-row equality in tests/cluster/test_standalone.py.
pytestmark = [pytest.mark.spark, pytest.mark.slow]
NOW = dt.datetime(2017, 12, 4, 1, 30, tzinfo=dt.UTC)


def lists(lake: Lake, table: str = "recommendations", **read) -> dict[int, tuple[str, list[tuple[int, float]]]]:
    rows = lake.read(table, **read).sort_by([("user_id", "ascending"), ("rank", "ascending")]).to_pylist()
    out: dict[int, tuple[str, list]] = {}
    for row in rows:
        out.setdefault(row["user_id"], (row["source"], []))[1].append((row["item_id"], round(row["score"], 4)))
    return out


def approx(expected: dict) -> dict:
    return {u: (source, [(i, pytest.approx(s, abs=1e-4)) for i, s in items]) for u, (source, items) in expected.items()}


def test_hand_checked_top_n_for_every_active_user(scoring_config: Config, spark):
    lake = Lake.from_config(scoring_config)
    write_world(lake)

    result = score(scoring_config, DS, spark=spark, now=NOW)

    assert lists(lake) == approx(EXPECTED_TOP3), "14 is inactive; 12 and 13 fall back to popularity"
    assert (result.users, result.popular_users, result.short_lists, result.rows) == (4, 2, 0, 12)
    table = lake.read("recommendations")
    assert set(table.column("model_version").to_pylist()) == {result.model_version} == {"1"}
    assert set(table.column("generated_at").to_pylist()) == {NOW}
    assert set(table.column("ds").to_pylist()) == {DS}
    assert not any(table.column("short_list").to_pylist())


def test_the_executors_ivf_index_serves_the_same_lists_in_the_job(scoring_config: Config, spark):
    lake = Lake.from_config(scoring_config)
    write_world(lake)
    score(scoring_config.with_overrides({"serve": {"retrieval": "ivf"}}), DS, spark=spark, now=NOW)
    assert lists(lake) == approx(EXPECTED_TOP3), "the executors' faiss index (one cluster here) finds every item"


def test_purchased_items_are_excluded_and_the_deny_list_is_honoured(scoring_config: Config, spark):
    lake = Lake.from_config(scoring_config)
    write_world(lake, deny=[106])

    score(scoring_config, DS, spark=spark)

    got = lists(lake)
    assert [i for i, _ in got[11][1]] == [104, 103, 102], "105 bought by 11, 106 denied"
    assert [i for i, _ in got[13][1]] == [105, 102, 103], "107 bought by 13, 106 denied"
    assert all(i != 106 for _, items in got.values() for i, _ in items)


def test_category_cap_and_short_lists_in_the_job(scoring_config: Config, spark):
    lake = Lake.from_config(scoring_config)
    write_world(lake)

    result = score(scoring_config.with_overrides({"serve": {"top_n": 4, "max_per_category": 1}}), DS, spark=spark)

    got = {u: [i for i, _ in items] for u, (_, items) in lists(lake).items()}
    assert got == {10: [102, 104, 106], 11: [106, 104, 103], 12: [107, 105, 102], 13: [106, 105, 102]}, \
        "one item per category (2: 102/103, 3: 104/105, 4: 106/107), only three categories"
    assert result.short_lists == 4
    assert all(lake.read("recommendations").column("short_list").to_pylist())


@pytest.mark.both_backends
def test_rerunning_a_ds_leaves_exactly_one_copy(scoring_config: Config, spark):
    lake = Lake.from_config(scoring_config)
    write_world(lake)
    write_events(lake, [event(12, 7, ds="2017-12-02")])
    write_sequences(lake, STANDARD_SEQUENCES, ds="2017-12-02")

    score(scoring_config, "2017-12-02", spark=spark)
    first = score(scoring_config, DS, spark=spark)
    second = score(scoring_config, DS, spark=spark)

    assert second.table_version == first.table_version + 1
    table = lake.read("recommendations", partition=DS)
    pairs = list(zip(table.column("user_id").to_pylist(), table.column("rank").to_pylist(), strict=True))
    assert len(pairs) == len(set(pairs)) == 12
    assert lake.partitions("recommendations") == ["2017-12-02", DS]
    assert lake.read("recommendations", partition="2017-12-02").num_rows > 0, "other days untouched"


@pytest.mark.both_backends
def test_a_failure_mid_job_leaves_the_previous_version_and_latest_untouched(scoring_config: Config, spark):
    lake = Lake.from_config(scoring_config)
    write_world(lake)
    score(scoring_config, DS, spark=spark)
    published = publish(scoring_config, DS, spark=spark)
    before = (lake.version("recommendations"), lists(lake), lake.version("recommendations_latest"))
    files_before = sorted(os.listdir(lake.uri("recommendations") + f"/ds={DS}"))
    # many active users over two Spark partitions, one of them corrupt: some tasks finish, one fails
    extra = range(1000, 1040)
    write_events(lake, [*STANDARD_EVENTS, *[event(u, 2) for u in extra]])
    write_sequences(lake, [*[sequence(u, [2, 3]) for u in extra], sequence(10, [2, -4])])

    with pytest.raises(InputError, match="negative item indexes"):
        score(scoring_config, DS, spark=spark)

    assert (lake.version("recommendations"), lists(lake), lake.version("recommendations_latest")) == before
    assert sorted(os.listdir(lake.uri("recommendations") + f"/ds={DS}")) == files_before, "no stray files"
    assert lists(lake, "recommendations_latest") == lists(lake) and published.rows == 12


def test_a_changed_vocabulary_refuses_the_model(scoring_config: Config, spark):
    lake = Lake.from_config(scoring_config)
    write_world(lake)
    vocab = vocab_table().to_pydict()
    vocab["item_id"][3] = 999  # index 5 now means another item: the model's embeddings are stale
    lake.write("item_vocab", pa.table(vocab, schema=lake.read("item_vocab").schema), mode="overwrite")
    with pytest.raises(ModelNotFoundError, match="different item vocabulary"):
        score(scoring_config, DS, spark=spark)
    assert not lake.exists("recommendations")


def test_a_named_version_scores_over_an_appended_vocabulary_and_an_unknown_one_is_refused(
        scoring_config: Config, spark):
    lake = Lake.from_config(scoring_config)
    write_world(lake)
    lake.write("item_vocab", pa.table({"item_id": [109], "item_index": [9], "first_seen_ds": [DS]},
                                      schema=lake.read("item_vocab").schema), mode="append")

    result = score(scoring_config, DS, spark=spark, model_version="1")

    assert (result.model_version, result.users) == ("1", 4), "appending items keeps the model's prefix valid"
    with pytest.raises(ModelNotFoundError, match="version 99"):
        score(scoring_config, DS, spark=spark, model_version="99")


def test_no_approved_model_is_refused_with_what_to_do(config: Config, spark):
    write_world(Lake.from_config(config))
    with pytest.raises(ModelNotFoundError, match="quality gate"):
        score(config, DS, spark=spark)


def test_missing_sequences_for_ds_are_refused(scoring_config: Config, spark):
    lake = Lake.from_config(scoring_config)
    write_world(lake)
    with pytest.raises(EmptyInputError, match="featurize"):
        score(scoring_config, "2017-12-05", spark=spark)
