"""Offline evaluation of a registered model on held-out rows, under the two protocols always reported.

- ``sampled<N>`` (the SASRec paper protocol): each user's held-out item is ranked against N negatives drawn
  uniformly, without replacement, from real items the user never interacted with. Every user is evaluated.
- ``full``: the held-out item is ranked against the whole catalogue, minus the items the user already
  interacted with.

"Interacted with" is the union of the items and targets of all the user's ``train_examples`` rows for the
ds: the featurized history, i.e. the most recent events kept by featurization (older ones may be truncated).
Ties never favour the held-out item (:func:`training.metrics.target_ranks` is pessimistic). Held-out items
the model's vocabulary lacks are ranked after every candidate: the model cannot recommend them.

:func:`evaluate` is the stage: load the model, read ``train_examples`` and ``item_categories``, rank, write
one row per (protocol, metric, K) to ``model_metrics`` and render the report.
"""

from __future__ import annotations

import datetime as dt
import itertools
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import torch

from lake import Config, EmptyInputError, InputError, Lake, ModelNotFoundError, ValidationError, typed_section
from lake.schemas import PAD_INDEX, UNKNOWN_INDEX, spec
from training.metrics import list_metrics, metrics_from_ranks, per_user_metrics_from_ranks, target_ranks

if TYPE_CHECKING:
    from lake.artifacts import Scorer

__all__ = [
    "DEFAULTS",
    "FULL",
    "EvalInputs",
    "EvaluateSettings",
    "Evaluation",
    "EvaluationRun",
    "ProtocolResult",
    "build_inputs",
    "evaluate",
    "evaluate_scorer",
    "full_ranking",
    "item_categories_vector",
    "item_popularity",
    "length_bucket_metrics",
    "load_model",
    "sample_negatives",
    "sampled_ranking",
    "write_metrics",
]

log = logging.getLogger(__name__)

DEFAULTS = Path(__file__).with_name("evaluate_defaults.yaml")
FULL = "full"
FIRST_REAL_ITEM = UNKNOWN_INDEX + 1
SEQUENCE_COLUMNS = ("items", "behaviours", "categories", "gap_buckets")


@dataclass(frozen=True)
class EvaluateSettings:
    split: str
    ks: tuple[int, ...]
    negatives: int
    seed: int
    batch_size: int
    length_buckets: tuple[int, ...]
    report: bool

    @classmethod
    def from_config(cls, config: Config) -> EvaluateSettings:
        settings = typed_section(cls, config, "evaluate", DEFAULTS)
        if settings.split not in ("valid", "test"):
            from lake import ConfigError

            raise ConfigError(f"evaluate.split must be valid or test, got {settings.split!r}")
        return settings

    @property
    def sampled_protocol(self) -> str:
        return f"sampled{self.negatives}"


@dataclass(frozen=True)
class EvalInputs:
    """One split's held-out rows, left-padded for a model with ``max_len`` inputs, sorted by user_id."""

    user_ids: np.ndarray  # [N] int64
    sequences: dict[str, torch.Tensor]  # SEQUENCE_COLUMNS -> [N, L] int64, left-padded with 0
    targets: torch.Tensor  # [N] item index of the held-out item
    lengths: torch.Tensor  # [N] inputs in the row before truncation to L
    history_rows: torch.Tensor  # [P] row of each (row, item) interaction pair, ascending
    history_items: torch.Tensor  # [P] item index, within the model's vocabulary
    skipped_rows: int  # rows whose held-out item is padding or unknown: nothing to rank

    def __len__(self) -> int:
        return int(self.targets.shape[0])


@dataclass(frozen=True)
class ProtocolResult:
    protocol: str
    metrics: dict[str, float]
    ranks: torch.Tensor  # [N]


@dataclass(frozen=True)
class Evaluation:
    model_version: str
    split: str
    ds: str
    users: int
    skipped_rows: int
    out_of_vocab_targets: int
    lengths: torch.Tensor  # [N]
    protocols: dict[str, ProtocolResult]
    ks: tuple[int, ...]
    meta: dict = field(default_factory=dict)

    def rows(self, evaluated_at: dt.datetime) -> pa.Table:
        """One ``model_metrics`` row per (protocol, metric, K); metrics without a cutoff (MRR) have K = 0."""
        columns: dict[str, list] = {name: [] for name in spec("model_metrics").schema.names}
        for protocol, result in self.protocols.items():
            for key, value in sorted(result.metrics.items()):
                metric, _, k = key.partition("@")
                columns["model_version"].append(self.model_version)
                columns["protocol"].append(protocol)
                columns["split"].append(self.split)
                columns["metric"].append(metric)
                columns["k"].append(int(k) if k else 0)
                columns["value"].append(float(value))
                columns["users"].append(self.users)
                columns["evaluated_at"].append(evaluated_at)
        return pa.table(columns, schema=spec("model_metrics").schema)


@dataclass(frozen=True)
class EvaluationRun:
    evaluation: Evaluation
    table_version: int
    report_path: Path | None


# -- inputs ----------------------------------------------------------------------------------------
def _offsets_values(lists: pa.ChunkedArray | pa.Array) -> tuple[np.ndarray, np.ndarray]:
    array = lists.combine_chunks() if isinstance(lists, pa.ChunkedArray) else lists
    offsets = np.asarray(array.offsets, dtype=np.int64)
    values = np.asarray(array.values.to_numpy(zero_copy_only=False), dtype=np.int64)
    return offsets, values


def _left_pad(lists: pa.ChunkedArray, max_len: int) -> np.ndarray:
    """The last ``max_len`` values of each list, right-aligned in a zero matrix: ``[N, max_len]``."""
    offsets, values = _offsets_values(lists)
    lengths = np.diff(offsets)
    kept = np.minimum(lengths, max_len)  # [N]
    columns = np.arange(max_len)  # [L]
    first_column = max_len - kept  # [N], where each row's kept values start
    source = offsets[1:, None] - kept[:, None] + (columns[None, :] - first_column[:, None])  # [N, L]
    present = columns[None, :] >= first_column[:, None]
    if values.size == 0:
        return np.zeros((len(lengths), max_len), dtype=np.int64)
    return np.where(present, values[np.clip(source, 0, values.size - 1)], PAD_INDEX)


def _last_values(lists: pa.ChunkedArray) -> np.ndarray:
    offsets, values = _offsets_values(lists)
    ends = offsets[1:]
    nonempty = ends > offsets[:-1]
    out = np.full(len(ends), PAD_INDEX, dtype=np.int64)
    out[nonempty] = values[ends[nonempty] - 1]
    return out


def _interaction_pairs(rows: pa.Table, column: str) -> tuple[np.ndarray, np.ndarray]:
    """(user_id, item) for every value of list column ``column``."""
    lists = rows.column(column).combine_chunks()
    parents = np.asarray(pc.list_parent_indices(lists).to_numpy(zero_copy_only=False), dtype=np.int64)
    values = np.asarray(pc.list_flatten(lists).to_numpy(zero_copy_only=False), dtype=np.int64)
    users = np.asarray(rows.column("user_id").to_numpy(), dtype=np.int64)
    return users[parents], values


def build_inputs(examples: pa.Table, split: str, *, max_len: int, item_vocab_size: int,
                 category_vocab_size: int | None = None) -> EvalInputs:
    """Held-out rows of ``split`` as model inputs, plus each user's interacted items.

    Args:
        examples: ``train_examples`` rows of one ds (all splits: every row adds to the user's history).
        split: ``valid`` or ``test``.
        max_len: the model's input length L; longer rows keep their most recent L steps.
        item_vocab_size: the model's item vocabulary V; newer items become UNKNOWN in inputs.
        category_vocab_size: the model's category vocabulary, if it has one; newer categories become UNKNOWN.
    """
    rows = examples.filter(pc.equal(examples.column("split"), split))
    if rows.num_rows == 0:
        raise EmptyInputError(
            f"train_examples holds no '{split}' rows for this ds; run `seqrec featurize` for it first"
        )
    rows = rows.sort_by("user_id")
    user_ids = np.asarray(rows.column("user_id").to_numpy(), dtype=np.int64)
    if np.any(user_ids[1:] == user_ids[:-1]):
        raise InputError(f"train_examples holds several '{split}' rows for one user; featurization must write "
                         f"one held-out row per user and split")
    targets = _last_values(rows.column("targets"))
    keep = targets >= FIRST_REAL_ITEM
    skipped = int((~keep).sum())
    if skipped:
        log.warning("%d %s rows hold no real held-out item (padding or unknown); they are not ranked",
                    skipped, split)
        rows, user_ids, targets = rows.filter(pa.array(keep)), user_ids[keep], targets[keep]
    if rows.num_rows == 0:
        raise EmptyInputError(f"no '{split}' row has a real held-out item; nothing to evaluate")

    sequences = {name: _left_pad(rows.column(name), max_len) for name in SEQUENCE_COLUMNS}
    sequences["items"] = np.where(sequences["items"] >= item_vocab_size, UNKNOWN_INDEX, sequences["items"])
    if category_vocab_size is not None:
        categories = sequences["categories"]
        sequences["categories"] = np.where(categories >= category_vocab_size, UNKNOWN_INDEX, categories)
    offsets, _ = _offsets_values(rows.column("items"))

    pair_users, pair_items = [], []
    for column in ("items", "targets"):
        users, items = _interaction_pairs(examples, column)
        pair_users.append(users)
        pair_items.append(items)
    users, items = np.concatenate(pair_users), np.concatenate(pair_items)
    row = np.searchsorted(user_ids, users)
    known = (row < len(user_ids)) & (user_ids[np.minimum(row, len(user_ids) - 1)] == users)
    known &= (items >= FIRST_REAL_ITEM) & (items < item_vocab_size)
    order = np.argsort(row[known], kind="stable")

    return EvalInputs(
        user_ids=user_ids,
        sequences={name: torch.from_numpy(np.ascontiguousarray(v)) for name, v in sequences.items()},
        targets=torch.from_numpy(targets),
        lengths=torch.from_numpy(np.diff(offsets)),
        history_rows=torch.from_numpy(row[known][order]),
        history_items=torch.from_numpy(items[known][order]),
        skipped_rows=skipped,
    )


def item_popularity(examples: pa.Table, vocab_size: int) -> torch.Tensor:
    """``[V]`` training interactions per item: its count in the train rows' inputs plus their last target.

    A train row's inputs followed by its last target is the user's training sequence, so each training
    interaction is counted once.
    """
    rows = examples.filter(pc.equal(examples.column("split"), "train"))
    _, inputs = _offsets_values(rows.column("items"))
    items = np.concatenate([inputs, _last_values(rows.column("targets"))])
    items = items[(items >= 0) & (items < vocab_size)]
    return torch.from_numpy(np.bincount(items, minlength=vocab_size).astype(np.int64))


def item_categories_vector(item_categories: pa.Table, vocab_size: int) -> torch.Tensor:
    """``[V]`` category index per item index; items without a row get UNKNOWN (one shared category)."""
    out = np.full(vocab_size, UNKNOWN_INDEX, dtype=np.int64)
    index = np.asarray(item_categories.column("item_index").to_numpy(), dtype=np.int64)
    category = np.asarray(item_categories.column("category_index").to_numpy(), dtype=np.int64)
    inside = index < vocab_size
    out[index[inside]] = category[inside]
    return torch.from_numpy(out)


# -- ranking ---------------------------------------------------------------------------------------
def _interacted(inputs: EvalInputs, start: int, stop: int, vocab_size: int) -> torch.Tensor:
    """``[stop - start, V]`` bool: True where the user interacted with the item (padding/unknown too)."""
    lo, hi = torch.searchsorted(inputs.history_rows, torch.tensor([start, stop])).tolist()
    mask = torch.zeros(stop - start, vocab_size, dtype=torch.bool)
    mask[inputs.history_rows[lo:hi] - start, inputs.history_items[lo:hi]] = True
    mask[:, : FIRST_REAL_ITEM] = True
    return mask


def sample_negatives(excluded: torch.Tensor, count: int, generator: torch.Generator) -> torch.Tensor:
    """``count`` distinct items per row, uniformly among the items ``excluded`` [B, V] leaves: ``[B, count]``."""
    available = (~excluded).sum(dim=1)  # [B]
    if bool((available < count).any()):
        fewest = int(available.min())
        raise InputError(
            f"a user leaves only {fewest} items to sample from, fewer than evaluate.negatives={count}; "
            f"lower evaluate.negatives for a catalogue this small"
        )
    # The `count` largest of i.i.d. uniform keys form a uniform sample without replacement (and this is
    # several times faster than torch.multinomial without replacement over a large catalogue).
    keys = torch.rand(excluded.shape, generator=generator).masked_fill_(excluded, -1.0)  # [B, V]
    return torch.topk(keys, count, dim=1, sorted=False).indices


def sampled_ranking(users: torch.Tensor, item_embeddings: torch.Tensor, targets: torch.Tensor,
                    negatives: torch.Tensor) -> torch.Tensor:
    """Rank of each target among itself and its negatives.

    Args:
        users: ``[B, H]`` user vectors.
        item_embeddings: ``[V, H]``.
        targets: ``[B]`` item index of the held-out item.
        negatives: ``[B, N]`` item indexes.
    Returns:
        ``[B]`` 1-based ranks in ``1..N+1``.
    """
    candidates = torch.cat([targets.unsqueeze(1), negatives], dim=1)  # [B, 1+N]
    scores = torch.bmm(item_embeddings[candidates], users.unsqueeze(2)).squeeze(2)  # [B, 1+N]
    return target_ranks(scores, torch.zeros_like(targets))


def full_ranking(users: torch.Tensor, item_embeddings: torch.Tensor, targets: torch.Tensor,
                 excluded: torch.Tensor, top_k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Rank of each target among all items not ``excluded``, and each user's top-``top_k`` list.

    Args:
        users: ``[B, H]``; item_embeddings: ``[V, H]``; targets: ``[B]``.
        excluded: ``[B, V]`` bool, True for items that are not candidates (the target must be False).
        top_k: length of the returned recommendation lists.
    Returns:
        ``([B] ranks, [B, top_k] item indexes best first)``.
    """
    scores = users @ item_embeddings.T  # [B, V]
    scores = scores.masked_fill(excluded, float("-inf"))
    ranks = target_ranks(scores, targets)
    top = torch.topk(scores, min(top_k, scores.shape[1]), dim=1).indices  # [B, top_k]
    return ranks, top


@torch.no_grad()
def evaluate_scorer(scorer: Scorer, inputs: EvalInputs, settings: EvaluateSettings, *, split: str, ds: str,
                    protocols: Sequence[str] | None = None, item_categories: torch.Tensor | None = None,
                    popularity: torch.Tensor | None = None) -> Evaluation:
    """Rank every user's held-out item with ``scorer`` under each protocol and compute the metrics.

    Args:
        scorer: a loaded model; ``encode`` maps ``[B, L]`` inputs to ``[B, H]``.
        inputs: from :func:`build_inputs` with this model's max_len and vocabulary size.
        settings: cutoffs, negatives, seed and batch size.
        protocols: subset of ``(settings.sampled_protocol, "full")``; both by default.
        item_categories, popularity: ``[V]`` vectors for the list-level metrics of the full protocol.
    """
    sampled = settings.sampled_protocol
    wanted = tuple(protocols or (sampled, FULL))
    unknown = sorted(set(wanted) - {sampled, FULL})
    if unknown:
        raise ValueError(f"unknown protocol(s) {unknown}; known: {[sampled, FULL]}")
    item_embeddings = scorer.item_embeddings.to(torch.float32)  # [V, H]
    vocab_size = int(item_embeddings.shape[0])
    top_k = max(settings.ks)
    in_vocab = inputs.targets < vocab_size  # [N]
    generator = torch.Generator().manual_seed(settings.seed)
    ranks: dict[str, list[torch.Tensor]] = {p: [] for p in wanted}
    top_lists: list[torch.Tensor] = []
    fewest_candidates = vocab_size
    for start in range(0, len(inputs), settings.batch_size):
        stop = min(start + settings.batch_size, len(inputs))
        batch = {name: seq[start:stop] for name, seq in inputs.sequences.items()}  # [b, L] each
        users = scorer.encode(batch["items"], batch["behaviours"], batch["categories"], batch["gap_buckets"])
        users = users.to(torch.float32)  # [b, H]
        if not bool(torch.isfinite(users).all()):
            raise ValidationError(f"model {scorer.card.version} produced non-finite user vectors; it cannot "
                                  f"be evaluated (retrain it or check its inputs)")
        batch_in_vocab = in_vocab[start:stop]
        targets = torch.where(batch_in_vocab, inputs.targets[start:stop], UNKNOWN_INDEX)  # [b]
        interacted = _interacted(inputs, start, stop, vocab_size)  # [b, V], targets included
        if sampled in wanted:
            negatives = sample_negatives(interacted, settings.negatives, generator)  # [b, negatives]
            batch_ranks = sampled_ranking(users, item_embeddings, targets, negatives)
            ranks[sampled].append(torch.where(batch_in_vocab, batch_ranks, settings.negatives + 1))
        if FULL in wanted:
            rows = torch.arange(stop - start)
            excluded = interacted.clone()
            excluded[rows, targets] = ~batch_in_vocab  # the held-out item is a candidate unless unknown
            batch_ranks, top = full_ranking(users, item_embeddings, targets, excluded, top_k)
            candidates = (~excluded).sum(dim=1)
            fewest_candidates = min(fewest_candidates, int(candidates.min()))
            ranks[FULL].append(torch.where(batch_in_vocab, batch_ranks, candidates + 1))
            top_lists.append(top)

    results: dict[str, ProtocolResult] = {}
    for protocol in wanted:
        protocol_ranks = torch.cat(ranks[protocol])
        metrics = metrics_from_ranks(protocol_ranks, settings.ks)
        if protocol == FULL:
            # A list longer than a user's candidates would hold excluded items; those cutoffs are left out.
            list_ks = [k for k in settings.ks if k <= fewest_candidates]
            if list_ks:
                metrics |= list_metrics(torch.cat(top_lists), list_ks,
                                        catalogue_size=vocab_size - FIRST_REAL_ITEM,
                                        item_categories=item_categories, item_popularity=popularity)
        results[protocol] = ProtocolResult(protocol, metrics, protocol_ranks)
    return Evaluation(
        model_version=scorer.card.version, split=split, ds=ds, users=len(inputs),
        skipped_rows=inputs.skipped_rows, out_of_vocab_targets=int((~in_vocab).sum()),
        lengths=inputs.lengths, protocols=results, ks=tuple(settings.ks), meta=dict(scorer.meta),
    )


def length_bucket_metrics(evaluation: Evaluation, edges: Sequence[int],
                          metrics: Sequence[str] = ("hr@10", "ndcg@10")) -> list[dict]:
    """Per protocol and sequence-length bucket: how many users, and the mean of each metric over them.

    Buckets are ``[1, edges[0])``, ``[edges[0], edges[1])``, ..., ``[edges[-1], inf)`` over the rows' input
    lengths; ``metrics`` are keys of :func:`per_user_metrics_from_ranks` at the evaluation's cutoffs.
    """
    bounds = [1, *edges]
    labels = [f"{lo}-{hi - 1}" for lo, hi in itertools.pairwise(bounds)] + [f"{bounds[-1]}+"]
    bucket = torch.bucketize(evaluation.lengths, torch.tensor(list(edges)), right=True)  # [N], 0..len(edges)
    out = []
    for protocol, result in evaluation.protocols.items():
        per_user = per_user_metrics_from_ranks(result.ranks, evaluation.ks)
        for index, label in enumerate(labels):
            members = bucket == index
            users = int(members.sum())
            row = {"protocol": protocol, "bucket": label, "users": users}
            for metric in metrics:
                row[metric] = float(per_user[metric][members].mean()) if users else float("nan")
            out.append(row)
    return out


# -- the stage -------------------------------------------------------------------------------------
def load_model(config: Config, model: str) -> Scorer:
    """A registered version by number, or the version carrying alias ``model`` (e.g. ``champion``), verified."""
    from lake.artifacts import load_model as load_verified

    return load_verified(config, model)


def model_ds(scorer: Scorer, ds: str | None) -> str:
    """The ds to evaluate on: ``ds`` if given, else the day the model was trained on."""
    if ds:
        return ds
    trained = scorer.meta.get("trained_ds")
    if not trained:
        raise ModelNotFoundError(f"model {scorer.card.version} records no trained_ds; pass --ds")
    return str(trained)


def evaluate_on_lake(config: Config, lake: Lake, scorer: Scorer, *, ds: str, split: str,
                     settings: EvaluateSettings, protocols: Sequence[str] | None = None) -> Evaluation:
    """Read ds's ``train_examples`` (and ``item_categories``) and evaluate ``scorer`` on ``split``. On the day
    the model trained on, ``train_examples`` is read at the version it trained on (recorded in its meta), so
    a rerun after that day was featurized again measures the same rows."""
    meta = scorer.meta
    vocab_size = int(scorer.item_embeddings.shape[0])
    if int(meta.get("item_vocab_size", vocab_size)) != vocab_size:
        raise ValidationError(f"model {scorer.card.version}: meta item_vocab_size {meta['item_vocab_size']} "
                              f"differs from its {vocab_size} item embeddings; the artifact is inconsistent")
    pinned = meta.get("train_examples_version") if str(meta.get("trained_ds")) == ds else None
    examples = lake.read("train_examples", partition=ds, version=int(pinned) if pinned is not None else None)
    if examples.num_rows == 0:
        raise EmptyInputError(f"train_examples has no rows for ds={ds}; run `seqrec featurize --ds {ds}` first")
    inputs = build_inputs(
        examples, split, max_len=int(meta["max_len"]), item_vocab_size=vocab_size,
        category_vocab_size=int(meta["category_vocab_size"]) if "category_vocab_size" in meta else None,
    )
    categories = None
    if lake.exists("item_categories"):
        table = lake.read("item_categories", partition=ds)
        if table.num_rows:
            categories = item_categories_vector(table, vocab_size)
    if categories is None:
        log.warning("item_categories has no rows for ds=%s; category diversity is not computed", ds)
    return evaluate_scorer(scorer, inputs, settings, split=split, ds=ds, protocols=protocols,
                           item_categories=categories, popularity=item_popularity(examples, vocab_size))


def write_metrics(lake: Lake, evaluation: Evaluation, evaluated_at: dt.datetime) -> int:
    """Replace this model's rows for this split in ``model_metrics`` (other splits' rows are kept)."""
    partition = evaluation.model_version
    kept = None
    if lake.exists("model_metrics"):
        existing = lake.read("model_metrics", partition=partition)
        kept = existing.filter(pc.not_equal(existing.column("split"), evaluation.split))
    rows = evaluation.rows(evaluated_at)
    if kept is not None and kept.num_rows:
        rows = pa.concat_tables([kept, rows])
    return lake.write("model_metrics", rows, partition=partition, mode="replace_partition")


def evaluate(config: Config, model: str, *, ds: str | None = None, split: str | None = None,
             lake: Lake | None = None) -> EvaluationRun:
    """The evaluate stage: rank ``split`` rows of ds with model ``model`` (version or alias), record the
    metrics in ``model_metrics`` and render the report.

    Args:
        config: user configuration; the ``evaluate`` section is read from training/evaluate_defaults.yaml.
        model: a registered version number, or an alias such as ``champion``.
        ds: the featurized day to evaluate on; the model's trained_ds by default.
        split: ``test`` or ``valid``; ``evaluate.split`` by default.
    """
    if split is not None:
        config = config.with_overrides({"evaluate": {"split": split}})
    settings = EvaluateSettings.from_config(config)
    lake = lake or Lake.from_config(config)
    scorer = load_model(config, model)
    ds = model_ds(scorer, ds)
    evaluation = evaluate_on_lake(config, lake, scorer, ds=ds, split=settings.split, settings=settings)
    table_version = write_metrics(lake, evaluation, dt.datetime.now(dt.UTC))
    report_path = None
    if settings.report:
        from training.report import render_for_run

        report_path = render_for_run(config, lake, scorer, evaluation, settings)
    return EvaluationRun(evaluation, table_version, report_path)
