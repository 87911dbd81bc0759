"""The seam with a real Spark session: executor-parallel writes, one atomic commit, cross-engine reads."""

import datetime as dt

import pyarrow as pa
import pytest

from lake import Lake, SchemaMismatchError

pytestmark = [pytest.mark.spark, pytest.mark.both_backends]
T0 = dt.datetime(2017, 11, 25, 8, tzinfo=dt.UTC)


def spark_events(spark, ds: str, n: int, partitions: int = 3, drop: str = "d1"):
    from pyspark.sql import functions as F

    return spark.range(n, numPartitions=partitions).select(
        F.col("id").alias("user_id"), (F.col("id") % 7).alias("item_id"), F.lit(3).alias("category_id"),
        F.lit("cart").alias("behaviour"), F.lit(T0).alias("event_time"), F.lit("s.csv").alias("source_file"),
        F.lit(drop).alias("drop_id"), F.lit(ds).alias("ds"))


def test_spark_write_is_parallel_one_commit_and_readable_by_delta_rs(spark_lake: Lake, spark):
    spark_lake.write("events", spark_events(spark, "2017-11-25", 100), partition="2017-11-25")
    v_before = spark_lake.version("events")

    spark_lake.write("events", spark_events(spark, "2017-11-26", 50), partition="2017-11-26")

    assert spark_lake.version("events") == v_before + 1
    files = spark_lake.file_uris("events", partition="2017-11-26")
    assert len(files) == 3, "one file per Spark task: the executors wrote, not the driver"
    table = spark_lake.read("events")  # delta-rs log + pyarrow
    assert table.num_rows == 150
    assert table.schema.field("event_time").type == pa.timestamp("us", tz="UTC")
    assert set(table.column("event_time").to_pylist()) == {T0}


def test_delta_rs_write_is_readable_by_spark_with_declared_types(spark_lake: Lake):
    rows = {"user_id": [1, 2], "item_id": [5, 6], "category_id": [1, 1], "behaviour": ["click", "purchase"],
            "event_time": [T0, T0], "source_file": ["a", "a"], "drop_id": ["d1"] * 2, "ds": ["2017-11-25"] * 2}
    spark_lake.write("events", pa.table(rows), partition="2017-11-25")
    df = spark_lake.read_spark("events")
    assert df.columns == list(rows)
    assert dict(df.dtypes)["ds"] == "string"
    assert sorted(r.user_id for r in df.collect()) == [1, 2]


def test_spark_replace_partition_and_time_travel(spark_lake: Lake, spark):
    v1 = spark_lake.write("events", spark_events(spark, "2017-11-25", 20), partition="2017-11-25")
    spark_lake.write("events", spark_events(spark, "2017-11-25", 5, partitions=1), partition="2017-11-25")
    assert spark_lake.read_spark("events").count() == 5
    assert spark_lake.read_spark("events", version=v1).count() == 20


def test_failed_spark_write_leaves_table_unchanged(spark_lake: Lake, spark):
    from pyspark.sql import functions as F

    spark_lake.write("events", spark_events(spark, "2017-11-25", 10), partition="2017-11-25")
    version = spark_lake.version("events")
    # one task writes fine, another fails its schema check: nothing may become visible
    mixed = spark_events(spark, "2017-11-25", 10, partitions=2).withColumn(
        "ds", F.when(F.col("user_id") > 5, F.lit("2017-11-26")).otherwise(F.col("ds")))
    with pytest.raises(SchemaMismatchError, match="rows hold"):
        spark_lake.write("events", mixed, partition="2017-11-25")
    assert spark_lake.version("events") == version
    assert spark_lake.read("events").num_rows == 10


def test_empty_table_reads_as_declared_schema(spark_lake: Lake):
    spark_lake.create("events")
    assert spark_lake.read_spark("events").count() == 0
    assert spark_lake.read("events").num_rows == 0


def test_delta_spark_conform_casts_safely_and_refuses_meaning_changes(spark):
    from pyspark.sql import functions as F

    from lake._delta_spark import conform_spark
    from lake.schemas import spec

    df = spark.range(2).select(
        F.col("id").cast("int").alias("item_id"), F.lit("x").alias("reason"))
    assert dict(conform_spark(df, spec("deny_list")).dtypes)["item_id"] == "bigint"
    with pytest.raises(SchemaMismatchError, match="item_id"):
        conform_spark(df.withColumn("item_id", F.lit("7")), spec("deny_list"))


def test_a_drop_is_replaced_in_every_day_it_touches_in_one_commit(spark_lake: Lake, spark):
    """replace_where on the sub-partition: one drop's rows leave every day at once, other drops stay."""
    day1, day2 = "2017-11-25", "2017-11-26"
    spark_lake.write("events", spark_events(spark, day1, 4, drop="a").unionByName(
        spark_events(spark, day2, 2, drop="a")), mode="replace_where", where={"drop_id": "a"})
    spark_lake.write("events", spark_events(spark, day2, 3, drop="b"), mode="replace_where", where={"drop_id": "b"})
    before = spark_lake.version("events")

    spark_lake.write("events", spark_events(spark, day2, 1, drop="a"), mode="replace_where", where={"drop_id": "a"})

    assert spark_lake.version("events") == before + 1
    rows = spark_lake.read("events").to_pylist()
    assert sorted({(r["ds"], r["drop_id"]) for r in rows}) == [(day2, "a"), (day2, "b")]
    assert len(spark_lake.read("events", where={"drop_id": "b"})) == 3
    assert spark_lake.read_spark("events", where={"drop_id": "a"}).count() == 1
    assert spark_lake.partitions("events") == [day2]
    with pytest.raises(SchemaMismatchError, match="rows hold"):
        spark_lake.write("events", spark_events(spark, day1, 1, drop="c"), mode="replace_where", where={"drop_id": "a"})


def spark_recommendations(spark, ds: str, users: int, tasks: int = 3):
    from pyspark.sql import functions as F

    return spark.range(users * 2, numPartitions=tasks).select(
        F.floor(F.col("id") / 2).alias("user_id"), (F.col("id") % 2 + 1).cast("int").alias("rank"),
        (F.col("id") + 100).alias("item_id"), (F.lit(1.0) / (F.col("id") + 1)).cast("float").alias("score"),
        F.lit("model").alias("source"), F.lit(False).alias("short_list"), F.lit("3").alias("model_version"),
        F.lit(T0).alias("generated_at"), F.lit(ds).alias("ds"))


def test_republish_copies_one_partition_file_by_file_in_one_commit(spark_lake: Lake, spark):
    spark_lake.write("recommendations", spark_recommendations(spark, "2017-11-25", 40), partition="2017-11-25")
    checked = spark_lake.write("recommendations", spark_recommendations(spark, "2017-11-26", 30),
                               partition="2017-11-26")
    spark_lake.write("recommendations_latest", spark_lake.read_spark("recommendations", partition="2017-11-25"),
                     mode="overwrite")
    before = spark_lake.version("recommendations_latest")
    # a later commit to the source must not leak into a republish of the checked version
    spark_lake.write("recommendations", spark_recommendations(spark, "2017-11-26", 5), partition="2017-11-26")

    version = spark_lake.republish("recommendations", version=checked, partition="2017-11-26",
                                   into="recommendations_latest")

    assert version == before + 1
    expected = spark_lake.read("recommendations", version=checked, partition="2017-11-26")
    assert spark_lake.read("recommendations_latest").sort_by([("user_id", "ascending"), ("rank", "ascending")]) \
        == expected.sort_by([("user_id", "ascending"), ("rank", "ascending")])
    assert spark_lake.row_counts("recommendations_latest") == {(): 60}
    assert len(spark_lake.file_uris("recommendations_latest")) == len(
        spark_lake.file_uris("recommendations", version=checked, partition="2017-11-26"))
    assert spark_lake.read_spark("recommendations_latest").where("ds = '2017-11-26'").count() == 60


def test_a_failed_republish_leaves_the_table_and_its_folder_as_they_were(spark_lake: Lake, spark, tmp_path):
    import os
    from pathlib import Path

    checked = spark_lake.write("recommendations", spark_recommendations(spark, "2017-11-26", 30),
                               partition="2017-11-26")
    spark_lake.write("recommendations_latest", spark_lake.read_spark("recommendations"), mode="overwrite")
    before, folder = spark_lake.version("recommendations_latest"), Path(spark_lake.uri("recommendations_latest"))
    files_before = sorted(p.name for p in folder.iterdir())
    # two of the three files copy fine, the last is gone: the run must take the other two back
    os.remove(spark_lake.file_uris("recommendations", version=checked)[-1].removeprefix("file://"))

    with pytest.raises(Exception, match="No such file|not found|NotFound"):
        spark_lake.republish("recommendations", version=checked, partition="2017-11-26",
                             into="recommendations_latest")

    assert spark_lake.version("recommendations_latest") == before
    assert sorted(p.name for p in folder.iterdir()) == files_before
    assert spark_lake.read("recommendations_latest").num_rows == 60


def test_republish_refuses_tables_that_are_not_a_partition_and_its_copy(spark_lake: Lake):
    with pytest.raises(ValueError, match="not such a pair"):
        spark_lake.republish("events", version=0, partition="2017-11-26", into="recommendations_latest")
