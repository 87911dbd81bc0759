"""Every named table's schema, partition column and meaning: the one place a table's shape is declared.

Writes are checked against these (see lake.tables), so a table's schema never changes silently:
changing a column here is a deliberate, reviewed change.
"""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa

__all__ = ["BEHAVIOURS", "BEHAVIOUR_INDEX", "PAD_INDEX", "TABLES", "UNKNOWN_INDEX", "TableSpec", "spec"]

# Canonical behaviour vocabulary, in funnel order. Index 0 is padding in sequences.
BEHAVIOURS: tuple[str, ...] = ("click", "search", "favourite", "cart", "purchase")
BEHAVIOUR_INDEX: dict[str, int] = {name: i + 1 for i, name in enumerate(BEHAVIOURS)}
# Dense vocabulary indexes (items, categories): 0 pads sequences, 1 stands for an id the vocabulary lacks.
PAD_INDEX = 0
UNKNOWN_INDEX = 1

UTC_US = pa.timestamp("us", tz="UTC")
INT_LIST = pa.list_(pa.int32())


@dataclass(frozen=True)
class TableSpec:
    """A table's columns, its partition column (``partition_by``: the day, the model version) and, for a
    table whose rows arrive in deliveries, a second level under it (``sub_partition_by``)."""

    name: str
    schema: pa.Schema
    partition_by: str | None
    description: str
    sub_partition_by: str | None = None

    @property
    def partition_columns(self) -> list[str]:
        """The partition columns, outermost first (the folder levels of the table)."""
        return [c for c in (self.partition_by, self.sub_partition_by) if c is not None]


def _spec(name: str, partition_by: str | None | tuple[str, str], description: str, *fields: pa.Field) -> TableSpec:
    if isinstance(partition_by, tuple):
        return TableSpec(name, pa.schema(list(fields)), partition_by[0], description, partition_by[1])
    return TableSpec(name, pa.schema(list(fields)), partition_by, description)


def _f(name: str, type_: pa.DataType, nullable: bool = False) -> pa.Field:
    return pa.field(name, type_, nullable=nullable)


TABLES: dict[str, TableSpec] = {
    t.name: t
    for t in [
        _spec(
            "events", ("ds", "drop_id"),
            "Accepted raw behaviour events, one row per event, canonical behaviours; ds is the event's local "
            "day, drop_id the delivery it came in (a redelivery replaces that drop's rows in every day).",
            _f("user_id", pa.int64()),
            _f("item_id", pa.int64()),
            _f("category_id", pa.int64()),
            _f("behaviour", pa.string()),
            _f("event_time", UTC_US),
            _f("source_file", pa.string()),
            _f("drop_id", pa.string()),
            _f("ds", pa.string()),
        ),
        _spec(
            "events_quarantine", "drop_id",
            "Raw rows ingest refused, once per drop, with the reason; ds is the run that last delivered them.",
            _f("source_file", pa.string()),
            _f("line", pa.int64(), nullable=True),
            _f("raw", pa.string()),
            _f("reason", pa.string()),
            _f("drop_id", pa.string()),
            _f("ds", pa.string()),
        ),
        _spec(
            "ingest_stats", "ds", "Row accounting per ingest run: input = accepted + other_day + quarantined.",
            _f("source_file", pa.string()),
            _f("rows_in", pa.int64()),
            _f("accepted", pa.int64()),
            _f("other_day", pa.int64()),
            _f("quarantined", pa.int64()),
            _f("ingested_at", UTC_US),
            _f("ds", pa.string()),
        ),
        _spec(
            "deliveries", "ds",
            "Per ingest run and drop, where its rows went: one row per (destination, event day or reason).",
            _f("drop_id", pa.string()),
            _f("drop_path", pa.string()),
            _f("fingerprint", pa.string()),
            _f("files", pa.int64()),
            _f("bytes", pa.int64()),
            _f("destination", pa.string()),
            _f("event_ds", pa.string(), nullable=True),
            _f("reason", pa.string(), nullable=True),
            _f("rows", pa.int64()),
            _f("ingested_at", UTC_US),
            _f("ds", pa.string()),
        ),
        _spec(
            "late_events", None,
            "Rows a drop added to (or changed in) a day whose ingest had already run: that day's features and "
            "recommendations predate them. Appended, one row per (day, drop, run) that changed.",
            _f("event_ds", pa.string()),
            _f("drop_id", pa.string()),
            _f("drop_path", pa.string()),
            _f("arrived_ds", pa.string()),
            _f("rows_before", pa.int64()),
            _f("rows_after", pa.int64()),
            _f("recorded_at", UTC_US),
        ),
        _spec(
            "featurize_stats", "ds", "One row per cleaning step: rows in, rows out, removed and why.",
            _f("step_order", pa.int32()),
            _f("step", pa.string()),
            _f("rows_in", pa.int64()),
            _f("rows_out", pa.int64()),
            _f("removed", pa.int64()),
            _f("reason", pa.string()),
            _f("ds", pa.string()),
        ),
        _spec(
            "abnormal_users", "ds", "Users excluded as bot-like: their volume and the threshold they crossed.",
            _f("user_id", pa.int64()),
            _f("events", pa.int64()),
            _f("max_events_per_day", pa.int64()),
            _f("threshold", pa.float64()),
            _f("ds", pa.string()),
        ),
        _spec(
            "item_vocab", None, "item_id -> dense index (0 padding, 1 unknown). Append-only: never renumbered.",
            _f("item_id", pa.int64()),
            _f("item_index", pa.int32()),
            _f("first_seen_ds", pa.string()),
        ),
        _spec(
            "category_vocab", None, "category_id -> dense index (0 padding, 1 unknown). Append-only.",
            _f("category_id", pa.int64()),
            _f("category_index", pa.int32()),
            _f("first_seen_ds", pa.string()),
        ),
        _spec(
            "item_categories", "ds", "Each vocabulary item's category index as of ds (last category seen).",
            _f("item_index", pa.int32()),
            _f("category_index", pa.int32()),
            _f("ds", pa.string()),
        ),
        _spec(
            "user_sequences", "ds",
            "Each user's most recent events up to ds, oldest first (L most recent kept).",
            _f("user_id", pa.int64()),
            _f("items", INT_LIST),
            _f("behaviours", INT_LIST),
            _f("categories", INT_LIST),
            _f("gap_buckets", INT_LIST),
            _f("length", pa.int32()),
            _f("truncated", pa.int32()),
            _f("last_event_time", UTC_US),
            _f("ds", pa.string()),
        ),
        _spec(
            "train_examples", "ds",
            "Model inputs, oldest first: per position, the input step (with its local day, days since "
            "1970-01-01) and the next item to predict with its behaviour (targets 0 = no loss). "
            "split = train | valid | test.",
            _f("user_id", pa.int64()),
            _f("split", pa.string()),
            _f("items", INT_LIST),
            _f("behaviours", INT_LIST),
            _f("categories", INT_LIST),
            _f("gap_buckets", INT_LIST),
            _f("days", INT_LIST),
            _f("targets", INT_LIST),
            _f("target_behaviours", INT_LIST),
            _f("ds", pa.string()),
        ),
        _spec(
            "models", None, "Mirror of the MLflow registry for SQL readers: one row per registered version.",
            _f("model_name", pa.string()),
            _f("model_version", pa.string()),
            _f("run_id", pa.string()),
            _f("model_type", pa.string()),
            _f("trained_ds", pa.string()),
            _f("item_vocab_size", pa.int64()),
            _f("vocab_fingerprint", pa.string()),
            _f("valid_ndcg_at_10", pa.float64(), nullable=True),
            _f("aliases", pa.string()),
            _f("approved", pa.bool_()),
            _f("artifact_sha256", pa.string()),
            _f("created_at", UTC_US),
        ),
        _spec(
            "model_metrics", "model_version",
            "One row per (model, split, ranker, protocol, target, segment, metric, K): a mean over users and its "
            "standard error; ranker = model or a baseline ranked on the same rows (docs/metrics.md).",
            _f("model_version", pa.string()),
            _f("ds", pa.string()),
            _f("split", pa.string()),
            _f("ranker", pa.string()),
            _f("protocol", pa.string()),
            _f("target", pa.string()),
            _f("segment", pa.string()),
            _f("metric", pa.string()),
            _f("k", pa.int32()),
            _f("value", pa.float64()),
            _f("std_error", pa.float64(), nullable=True),
            _f("users", pa.int64()),
            _f("evaluated_at", UTC_US),
        ),
        _spec(
            "deny_list", None, "Items marketing never wants recommended.",
            _f("item_id", pa.int64()),
            _f("reason", pa.string(), nullable=True),
        ),
        _spec(
            "recommendations", "ds", "Top-N items per active user for ds, rank 1 = best.",
            _f("user_id", pa.int64()),
            _f("rank", pa.int32()),
            _f("item_id", pa.int64()),
            _f("score", pa.float32()),
            _f("source", pa.string()),
            _f("short_list", pa.bool_()),
            _f("model_version", pa.string()),
            _f("generated_at", UTC_US),
            _f("ds", pa.string()),
        ),
        _spec(
            "recommendations_latest", None, "The last validated recommendations partition, republished whole.",
            _f("user_id", pa.int64()),
            _f("rank", pa.int32()),
            _f("item_id", pa.int64()),
            _f("score", pa.float32()),
            _f("source", pa.string()),
            _f("short_list", pa.bool_()),
            _f("model_version", pa.string()),
            _f("generated_at", UTC_US),
            _f("ds", pa.string()),
        ),
    ]
}


def spec(name: str) -> TableSpec:
    """The declared spec of table ``name``; raises KeyError listing the known tables."""
    try:
        return TABLES[name]
    except KeyError:
        raise KeyError(f"no table named {name!r}; known tables: {sorted(TABLES)}") from None
