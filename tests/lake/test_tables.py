"""The table-IO seam on the delta-rs path (no Spark): atomic partition replace, time travel, schema checks."""

import datetime as dt

import pyarrow as pa
import pytest
from deltalake import DeltaTable

from lake import Config, Lake, SchemaMismatchError, TableNotFoundError

T0 = dt.datetime(2017, 11, 25, 8, tzinfo=dt.UTC)


def events(ds: str, users: list[int], drop: str = "d1") -> pa.Table:
    n = len(users)
    return pa.table({
        "user_id": users, "item_id": [10] * n, "category_id": [3] * n, "behaviour": ["click"] * n,
        "event_time": [T0] * n, "source_file": ["f.csv"] * n, "drop_id": [drop] * n, "ds": [ds] * n,
    })


def test_replace_partition_leaves_others_and_adds_one_version(lake: Lake):
    lake.write("events", events("2017-11-25", [1, 2, 3]), partition="2017-11-25")
    lake.write("events", events("2017-11-26", [4, 5]), partition="2017-11-26")
    before = lake.version("events")

    after = lake.write("events", events("2017-11-25", [9]), partition="2017-11-25")

    assert after == before + 1
    rows = lake.read("events").to_pydict()
    assert sorted(zip(rows["ds"], rows["user_id"], strict=True)) == [
        ("2017-11-25", 9), ("2017-11-26", 4), ("2017-11-26", 5)]
    assert lake.partitions("events") == ["2017-11-25", "2017-11-26"]


def test_rerun_is_idempotent(lake: Lake):
    for _ in range(3):
        lake.write("events", events("2017-11-25", [1, 2]), partition="2017-11-25")
    assert lake.read("events").num_rows == 2


def test_time_travel_and_history(lake: Lake):
    v1 = lake.write("events", events("2017-11-25", [1]), partition="2017-11-25")
    lake.write("events", events("2017-11-25", [1, 2, 3]), partition="2017-11-25")
    assert lake.read("events", version=v1).num_rows == 1
    assert lake.read("events").num_rows == 3
    ops = [h["operation"] for h in lake.history("events")]
    assert ops[0] == "WRITE" and ops[-1] == "CREATE TABLE"


def test_read_one_partition_and_columns(lake: Lake):
    lake.write("events", events("2017-11-25", [1]), partition="2017-11-25")
    lake.write("events", events("2017-11-26", [2, 3]), partition="2017-11-26")
    part = lake.read("events", partition="2017-11-26", columns=["user_id"])
    assert part.column_names == ["user_id"] and sorted(part.column("user_id").to_pylist()) == [2, 3]


def test_empty_replacement_empties_the_partition(lake: Lake):
    lake.write("events", events("2017-11-25", [1]), partition="2017-11-25")
    lake.write("events", events("2017-11-25", []), partition="2017-11-25")
    assert lake.read("events").num_rows == 0


def test_replace_where_swaps_one_drop_in_every_day(lake: Lake):
    both_days = pa.concat_tables([events("2017-11-25", [1, 2], "a"), events("2017-11-26", [3], "a")])
    lake.write("events", both_days, mode="replace_where", where={"drop_id": "a"})
    lake.write("events", events("2017-11-26", [4], "b"), mode="replace_where", where={"drop_id": "b"})
    lake.write("events", events("2017-11-26", [5], "a"), mode="replace_where", where={"drop_id": "a"})
    rows = lake.read("events").to_pylist()
    assert sorted((r["ds"], r["drop_id"], r["user_id"]) for r in rows) == [
        ("2017-11-26", "a", 5), ("2017-11-26", "b", 4)]
    assert lake.read("events", where={"drop_id": "b"}).column("user_id").to_pylist() == [4]
    with pytest.raises(ValueError, match="partition columns"):
        lake.write("events", events("2017-11-26", [5], "a"), mode="replace_where", where={"user_id": "5"})


def test_rows_of_another_partition_are_refused(lake: Lake):
    with pytest.raises(SchemaMismatchError, match="rows hold"):
        lake.write("events", events("2017-11-26", [1]), partition="2017-11-25")
    assert not lake.exists("events") or lake.read("events").num_rows == 0


def test_schema_is_enforced_by_name_and_type(lake: Lake):
    extra = events("2017-11-25", [1]).append_column("price", pa.array([1.0]))
    with pytest.raises(SchemaMismatchError, match=r"unexpected columns \['price'\]"):
        lake.write("events", extra, partition="2017-11-25")
    wrong = events("2017-11-25", [1]).set_column(0, "user_id", pa.array(["1"]))
    with pytest.raises(SchemaMismatchError, match="user_id.*got string"):
        lake.write("events", wrong, partition="2017-11-25")
    nulls = events("2017-11-25", [1]).set_column(0, "user_id", pa.array([None], pa.int64()))
    with pytest.raises(SchemaMismatchError, match="null"):
        lake.write("events", nulls, partition="2017-11-25")


def test_narrower_ints_are_widened_to_the_declared_type(lake: Lake):
    narrow = events("2017-11-25", [1]).set_column(0, "user_id", pa.array([1], pa.int32()))
    lake.write("events", narrow, partition="2017-11-25")
    assert lake.read("events").schema.field("user_id").type == pa.int64()


def test_stored_schema_drift_is_detected(lake: Lake):
    uri = lake.uri("deny_list")
    DeltaTable.create(uri, pa.schema([("item_id", pa.int64())]))
    with pytest.raises(SchemaMismatchError, match="Migrate the table on purpose"):
        lake.write("deny_list", pa.table({"item_id": [1], "reason": ["x"]}), mode="overwrite")


def test_missing_table_says_which_stage(lake: Lake):
    with pytest.raises(TableNotFoundError, match="run the stage that writes it"):
        lake.read("user_sequences")


def test_pandas_input_and_unpartitioned_modes(lake: Lake):
    import pandas as pd

    lake.write("deny_list", pd.DataFrame({"item_id": [1, 2], "reason": ["a", None]}), mode="overwrite")
    lake.write("deny_list", pd.DataFrame({"item_id": [3], "reason": ["c"]}), mode="append")
    assert sorted(lake.read("deny_list").column("item_id").to_pylist()) == [1, 2, 3]
    lake.write("deny_list", pd.DataFrame({"item_id": [7], "reason": ["z"]}), mode="overwrite")
    assert lake.read("deny_list").column("item_id").to_pylist() == [7]


def test_a_lake_reached_through_a_symlink_reads_its_files(config: Config, lake: Lake, tmp_path):
    lake.write("events", events("2017-11-25", [1, 2]), partition="2017-11-25")
    linked = tmp_path / "linked-lake"
    linked.symlink_to(lake.root, target_is_directory=True)

    through_link = Lake.from_config(config.with_overrides({"lake": {"root": str(linked)}}))

    assert sorted(through_link.read("events").column("user_id").to_pylist()) == [1, 2]


def test_republish_without_spark_copies_the_pinned_partition_in_this_process(lake: Lake):
    def day(ds: str, users: int) -> pa.Table:
        return pa.table({
            "user_id": list(range(users)), "rank": [1] * users, "item_id": [7] * users, "score": [0.5] * users,
            "source": ["model"] * users, "short_list": [False] * users, "model_version": ["3"] * users,
            "generated_at": [T0] * users, "ds": [ds] * users,
        })

    lake.write("recommendations", day("2017-11-25", 4), partition="2017-11-25")
    checked = lake.write("recommendations", day("2017-11-26", 3), partition="2017-11-26")
    lake.write("recommendations", day("2017-11-26", 9), partition="2017-11-26")

    version = lake.republish("recommendations", version=checked, partition="2017-11-26",
                             into="recommendations_latest")

    assert lake.read("recommendations_latest", version=version) == lake.read(
        "recommendations", version=checked, partition="2017-11-26")
    assert lake.row_counts("recommendations_latest") == {(): 3}
