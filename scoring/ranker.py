"""Scoring inside Spark executors: Arrow batches of users -> each user's top-N items after the business rules.

The driver broadcasts one :class:`RankPlan` (where the shipped model files are, the catalogue, the rules).
Each executor process loads it once (the model from the files Spark shipped, see ``scoring.model``; item
embeddings on the GPU when present; the approximate index under ``serve.retrieval: ivf``) and then, per
chunk of users, encodes the sequences and serves each user's list with lake.serving (one matrix product
against every item, or the index's candidates, then the rules and the top N). Users with no usable history
rank the popularity vector instead.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from lake.artifacts import load
from lake.errors import InputError, ModelNotFoundError
from lake.retrieval import ItemIndex
from lake.sequences import INPUT_COLUMNS, as_unknown_beyond, has_known_item, left_pad
from lake.serving import Catalogue, ServingRules, served_top, served_top_of_users
from scoring.model import ShippedModel

if TYPE_CHECKING:
    import torch
    from pyspark import Broadcast
    from pyspark.sql import DataFrame

    from lake.artifacts import Scorer

__all__ = [
    "OUTPUT_SCHEMA",
    "USER_ROW_COLUMNS",
    "LoadedPlan",
    "RankPlan",
    "load_plan",
    "rank_batch",
    "recommend",
]

USER_ROW_COLUMNS = ("user_id", *INPUT_COLUMNS, "excluded")
OUTPUT_SCHEMA = pa.schema([
    pa.field("user_id", pa.int64(), nullable=False),
    pa.field("rank", pa.int32(), nullable=False),
    pa.field("item_id", pa.int64(), nullable=False),
    pa.field("score", pa.float32(), nullable=False),
    pa.field("source", pa.string(), nullable=False),
    pa.field("short_list", pa.bool_(), nullable=False),
])
MODEL, POPULAR = "model", "popular"


@dataclass(frozen=True)
class RankPlan:
    """Everything an executor needs, broadcast once per job."""

    model: ShippedModel
    catalogue: Catalogue
    rules: ServingRules
    users_per_batch: int
    torch_threads: int  # 0 = spark.task.cpus
    device: str  # auto | cpu | cuda


@dataclass
class LoadedPlan:
    """A RankPlan with its tensors built on the executor's device."""

    plan: RankPlan
    scorer: Scorer
    max_len: int  # the model's sequence length: inputs are left-padded to it
    device: torch.device
    item_embeddings: torch.Tensor  # [V, H]
    blocked: torch.Tensor  # [K] item indexes never recommended
    popularity: torch.Tensor  # [V] fallback scores; -inf where never seen or blocked
    categories: torch.Tensor | None  # [V] category index, when a per-category cap applies
    category_vocab_size: int | None
    index: ItemIndex | None  # the approximate index, under serve.retrieval: ivf


def load_plan(plan: RankPlan) -> LoadedPlan:
    """Load the model and catalogue onto the device; checks that encoder and embeddings agree."""
    import torch

    wanted = plan.device
    if wanted == "auto":
        wanted = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(wanted)
    scorer = load(plan.model.files(), device=str(device))
    embeddings = scorer.item_embeddings
    version = plan.model.card.version
    if embeddings.ndim != 2 or embeddings.shape[0] != plan.catalogue.size:
        raise ModelNotFoundError(
            f"model version {version}: item_embeddings has shape {tuple(embeddings.shape)} but meta says "
            f"item_vocab_size={plan.catalogue.size}; re-register the model with consistent files"
        )
    if not bool(torch.isfinite(embeddings).all()):
        raise ModelNotFoundError(f"model version {version}: item_embeddings holds NaN or inf; retrain it")
    blocked = torch.as_tensor(plan.catalogue.blocked, dtype=torch.int64, device=device)
    popularity = torch.as_tensor(plan.catalogue.popularity, dtype=torch.float32, device=device).clone()
    popularity[popularity <= 0] = float("-inf")
    popularity[blocked] = float("-inf")
    categories = None
    if plan.rules.max_per_category:
        categories = torch.as_tensor(plan.catalogue.categories, dtype=torch.int64, device=device)
    category_size = scorer.meta.get("category_vocab_size")
    index = None
    if plan.rules.retrieval == "ivf":
        index = ItemIndex.for_catalogue(embeddings.to("cpu", torch.float32).numpy(), plan.catalogue.blocked,
                                        plan.rules, threads=_threads(plan))
    return LoadedPlan(plan, scorer, int(scorer.meta["max_len"]), device, embeddings, blocked, popularity, categories,
                      int(category_size) if category_size is not None else None, index)


def _exclusions(excluded: pa.Array, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-user excluded item indexes -> (row, item) coordinates inside the catalogue."""
    lengths = pc.fill_null(pc.list_value_length(excluded), 0).to_numpy().astype(np.int64)
    items = pc.list_flatten(excluded).to_numpy(zero_copy_only=False).astype(np.int64)
    rows = np.repeat(np.arange(len(lengths)), lengths)
    inside = (items >= 0) & (items < size)
    return rows[inside], items[inside]


def _served(loaded: LoadedPlan, excluded: pa.Array, *, users: torch.Tensor | None = None,
            scores: torch.Tensor | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The served lists (values, item indexes) ``[b, n]`` of user vectors ``[b, H]``, or of ``scores``
    ``[b, V]`` (modified) when the users rank a fixed vector (the popularity fallback)."""
    import torch

    plan = loaded.plan
    rows, items = _exclusions(excluded, plan.catalogue.size)
    rows, items = torch.as_tensor(rows, device=loaded.device), torch.as_tensor(items, device=loaded.device)
    if users is not None:
        values, indexes = served_top_of_users(users, loaded.item_embeddings, loaded.blocked, rows, items,
                                              rules=plan.rules, categories=loaded.categories, index=loaded.index)
    else:
        values, indexes = served_top(scores, loaded.blocked, rows, items, top_n=plan.rules.top_n,
                                     categories=loaded.categories, max_per_category=plan.rules.max_per_category)
    return values.cpu().numpy(), indexes.cpu().numpy()


def _rank_group(loaded: LoadedPlan, values: np.ndarray, indexes: np.ndarray, user_ids: np.ndarray,
                source: str) -> pa.RecordBatch:
    """Lay the served lists (values, item indexes ``[b, n]``) out as one row per (user, rank)."""
    plan = loaded.plan
    counts = np.isfinite(values).sum(axis=1)  # -inf slots are always last
    total = int(counts.sum())
    row = np.repeat(np.arange(len(counts)), counts)
    position = np.arange(total) - np.repeat(np.cumsum(counts) - counts, counts)
    return pa.RecordBatch.from_arrays([
        pa.array(user_ids[row], pa.int64()),
        pa.array(position + 1, pa.int32()),
        pa.array(plan.catalogue.item_ids[indexes[row, position]], pa.int64()),
        pa.array(values[row, position], pa.float32()),
        pa.array([source], pa.string()).take(pa.array(np.zeros(total, dtype=np.int32))),
        pa.array(np.repeat(counts < plan.rules.top_n, counts), pa.bool_()),
    ], schema=OUTPUT_SCHEMA)


def rank_batch(loaded: LoadedPlan, batch: pa.RecordBatch) -> Iterator[pa.RecordBatch]:
    """One Arrow batch of users (``USER_ROW_COLUMNS``) -> batches of ``OUTPUT_SCHEMA`` rows, up to
    ``users_per_batch`` users scored per matrix product."""
    for start in range(0, batch.num_rows, loaded.plan.users_per_batch):
        yield from _rank_chunk(loaded, batch.slice(start, loaded.plan.users_per_batch))


def _rank_chunk(loaded: LoadedPlan, chunk: pa.RecordBatch) -> list[pa.RecordBatch]:
    import torch

    plan = loaded.plan
    size, max_len = plan.catalogue.size, loaded.max_len
    lengths = [pc.fill_null(pc.list_value_length(chunk.column(name)), 0) for name in INPUT_COLUMNS]
    if any(not length.equals(lengths[0]) for length in lengths[1:]):
        raise InputError("user_sequences rows have lists of different lengths; rebuild them with featurize")
    sequences = {name: left_pad(chunk.column(name), max_len) for name in INPUT_COLUMNS}  # [B, L] each
    items = sequences["items"]
    if (items < 0).any():
        raise InputError("user_sequences holds negative item indexes; rebuild them with featurize")
    as_unknown_beyond(items, size)
    if loaded.category_vocab_size is not None:
        as_unknown_beyond(sequences["categories"], loaded.category_vocab_size)
    usable = has_known_item(items)  # [B]
    user_ids = chunk.column("user_id").to_numpy()
    excluded = chunk.column("excluded")
    out = []
    with torch.inference_mode():
        if usable.any():
            where = np.flatnonzero(usable)
            inputs = [torch.as_tensor(sequences[name][where], device=loaded.device)
                      for name in INPUT_COLUMNS]  # [b, L] each
            users = loaded.scorer.encode(*inputs).float()  # [b, H]
            if not bool(torch.isfinite(users).all()):
                raise ModelNotFoundError(f"model version {plan.model.card.version} encoded NaN or inf user "
                                         f"vectors; retrain it or name another version with --model")
            served = _served(loaded, excluded.take(pa.array(where)), users=users)
            out.append(_rank_group(loaded, *served, user_ids[where], MODEL))
        if not usable.all():
            where = np.flatnonzero(~usable)
            scores = loaded.popularity.expand(len(where), size).clone()  # [b, V]
            served = _served(loaded, excluded.take(pa.array(where)), scores=scores)
            out.append(_rank_group(loaded, *served, user_ids[where], POPULAR))
    return out


_LOADED: dict[str, LoadedPlan] = {}


def _loaded_plan(key: str, plan_broadcast: Broadcast[RankPlan]) -> LoadedPlan:
    """The broadcast plan, loaded once per executor process (Python workers are reused across tasks)."""
    if key not in _LOADED:
        _LOADED.clear()
        _LOADED[key] = load_plan(plan_broadcast.value)
    return _LOADED[key]


def _threads(plan: RankPlan) -> int:
    """score.torch_threads, else the task's cores inside Spark (0 = the library's default outside it)."""
    from pyspark import TaskContext

    context = TaskContext.get()
    return plan.torch_threads or (context.cpus() if context is not None else 0)


def _set_threads(plan: RankPlan) -> None:
    import torch

    threads = _threads(plan)
    if threads and torch.get_num_threads() != threads:
        torch.set_num_threads(threads)


def recommend(users: DataFrame, plan_broadcast: Broadcast[RankPlan]) -> DataFrame:
    """Users (``USER_ROW_COLUMNS``) -> one row per (user, rank) in ``OUTPUT_SCHEMA``, scored by executors."""

    key = uuid.uuid4().hex  # names this job's plan in the executors' per-process cache

    def rank_partition(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        loaded = _loaded_plan(key, plan_broadcast)
        _set_threads(loaded.plan)
        for batch in batches:
            yield from rank_batch(loaded, batch)

    return users.select(*USER_ROW_COLUMNS).mapInArrow(rank_partition, _spark_schema())


def _spark_schema() -> Any:
    from pyspark.sql.pandas.types import from_arrow_schema

    return from_arrow_schema(OUTPUT_SCHEMA)
