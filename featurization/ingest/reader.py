"""A checked drop (featurization.ingest.drops) read by Spark into raw rows of strings.

Every row keeps the five canonical fields as text, the row as read (``raw``), the file it came from and two
flags: ``_bad_width`` (a field count other than expected) and ``_bad_encoding`` (a line that is not UTF-8;
the drop scan has its exact bytes and line number). Spark's text source keeps a line's bytes as they are,
so ``is_valid_utf8`` tells exactly; its CSV parser puts U+FFFD in place of bad bytes, so there a row of a
file the scan found bad lines in is flagged when it holds U+FFFD (and the stage checks the two counts agree).
"""

from __future__ import annotations

from collections import defaultdict
from typing import TYPE_CHECKING

from featurization.ingest.drops import Drop
from featurization.ingest.settings import CANONICAL, IngestSettings
from lake.errors import EmptyInputError

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame, SparkSession

__all__ = ["REPLACEMENT", "read_raw"]

# What Spark's UTF-8 decoding puts where bytes do not decode.
REPLACEMENT = "\ufffd"
# Spark's name for the text of a CSV row whose field count differs from the header's.
_CORRUPT = "_corrupt_record"


def read_raw(spark: SparkSession, drop: Drop, settings: IngestSettings) -> DataFrame:
    """``user_id, item_id, category_id, behaviour, event_time`` (strings), ``_bad_width``, ``_bad_encoding``,
    ``raw`` and ``source_file``: one row per line (CSV) or record (Parquet) of the drop."""
    if settings.format == "taobao":
        return _taobao(spark, drop)
    if drop.kind == "parquet":
        return _generic_parquet(spark, drop, settings)
    return _generic_csv(spark, drop, settings)


def _replaced_bytes(drop: Drop, text: Column) -> Column:
    """True for rows of files with invalid lines whose text holds a replacement character (CSV)."""
    from pyspark.sql import functions as F

    flagged = [f.uri for f in drop.files if f.invalid_count]
    if not flagged:
        return F.lit(False)
    return F.input_file_name().isin(flagged) & text.contains(REPLACEMENT)


def _taobao(spark: SparkSession, drop: Drop) -> DataFrame:
    from pyspark.sql import functions as F

    # Whole lines, so a malformed row is quarantined as it was, not half-parsed.
    lines = spark.read.text(drop.read_paths)
    parts = F.split(F.col("value"), ",")
    return lines.select(
        *[F.when(F.size(parts) == len(CANONICAL), F.trim(parts[i])).alias(c) for i, c in enumerate(CANONICAL)],
        (F.size(parts) != len(CANONICAL)).alias("_bad_width"),
        (~F.is_valid_utf8(F.col("value"))).alias("_bad_encoding"),
        F.col("value").alias("raw"),
        F.input_file_name().alias("source_file"),
    )


def _generic_csv(spark: SparkSession, drop: Drop, settings: IngestSettings) -> DataFrame:
    """Files are read in groups of identical headers and their columns taken by name, so a file that orders
    its columns differently is read right."""
    from functools import reduce

    from pyspark.sql import functions as F
    from pyspark.sql.types import StringType, StructField, StructType

    by_header: dict[tuple[str, ...], list[str]] = defaultdict(list)
    for file in drop.files:
        if file.header is not None:
            by_header[file.header].append(file.read_path)
    if not by_header:
        raise EmptyInputError(f"source {drop.path} has no rows (no header either)")
    frames = []
    for header, uris in by_header.items():
        # The corrupt-record column catches rows with more or fewer fields than the header.
        schema = StructType([StructField(c, StringType()) for c in [*header, _CORRUPT]])
        df = (spark.read.option("header", True).option("mode", "PERMISSIVE")
              .option("columnNameOfCorruptRecord", _CORRUPT).schema(schema).csv(uris))
        as_read = F.coalesce(F.col(_CORRUPT), F.to_json(F.struct(*[F.col(c) for c in header])))
        frames.append(df.select(
            *[F.col(settings.columns[c]).alias(c) for c in CANONICAL],
            F.col(_CORRUPT).isNotNull().alias("_bad_width"),
            _replaced_bytes(drop, F.concat_ws(",", *[F.coalesce(F.col(c), F.lit("")) for c in header])
                            ).alias("_bad_encoding"),
            as_read.alias("raw"),
            F.input_file_name().alias("source_file"),
        ))
    return reduce(lambda left, right: left.unionByName(right), frames)


def _generic_parquet(spark: SparkSession, drop: Drop, settings: IngestSettings) -> DataFrame:
    from pyspark.sql import functions as F
    from pyspark.sql.types import TimestampType

    df = spark.read.parquet(*drop.read_paths)
    columns = settings.raw_columns

    def as_text(field: str) -> Column:
        column = F.col(settings.columns[field])
        if field == "event_time" and isinstance(df.schema[settings.columns[field]].dataType, TimestampType):
            # an instant: written with its offset, so it is not read back as lake.timezone's wall clock
            return F.date_format(column, "yyyy-MM-dd'T'HH:mm:ss.SSSSSSxxx")
        return column.cast("string")

    return df.select(
        *[as_text(c).alias(c) for c in CANONICAL],
        F.lit(False).alias("_bad_width"),
        F.lit(False).alias("_bad_encoding"),
        F.to_json(F.struct(*[F.col(c) for c in columns])).alias("raw"),
        F.input_file_name().alias("source_file"),
    )
