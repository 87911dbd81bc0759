"""The evaluate stage: rank one split's held-out rows of a ds with a registered model and its baselines.

Every row is ranked by each ranker (the model, then the baselines of ``evaluate.baselines``) under each
protocol (served first, then full and sampled<N>; evaluation.protocols), and every metric is kept per target
(``evaluate.target_behaviours``: next-interaction, next-purchase) and segment (all; repeat = the held-out
item is among the row's inputs; explore = it is not) as a mean with its standard error over users. Rows
stream from the Delta snapshot in batches (evaluation.heldout), so memory does not grow with users.
"""

from __future__ import annotations

import datetime as dt
import itertools
import logging
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import torch

from evaluation.als import ALS, AlsFactors, fit_item_factors
from evaluation.heldout import HeldOut, heldout_batches, split_rows, training_popularity
from evaluation.metrics import per_user_metrics_from_ranks
from evaluation.protocols import (
    FULL,
    SERVED,
    ServedCatalogue,
    draw_negatives,
    excluded_coordinates,
    full_ranks,
    sampled_ranks,
    served_ranks,
    served_ranks_of_users,
)
from evaluation.rankers import MODEL, ModelRanker, Ranker, baseline
from evaluation.settings import INTERACTION, EvaluateSettings
from evaluation.tally import ListTally, Moments, PairedDifference, Tally
from lake import Config, EmptyInputError, Lake, ModelNotFoundError, ValidationError
from lake.schemas import BEHAVIOURS, spec
from lake.serving import ServingRules, build_catalogue, denied_item_ids, latest_item_categories
from lake.user_sample import sample_share

if TYPE_CHECKING:
    from lake.artifacts import Scorer

__all__ = [
    "SEGMENTS",
    "Evaluation",
    "EvaluationRun",
    "MetricValue",
    "Paired",
    "evaluate",
    "evaluate_on_lake",
    "load_model",
    "model_ds",
    "write_metrics",
]

log = logging.getLogger(__name__)

SEGMENTS = ("all", "repeat", "explore")
BUCKET_K = 10


@dataclass(frozen=True)
class MetricValue:
    ranker: str
    protocol: str
    target: str
    segment: str
    metric: str  # "ndcg@10", "mrr", ...
    value: float
    std_error: float
    users: int


@dataclass(frozen=True)
class Evaluation:
    """One model's (and its baselines') metrics on one split of one ds."""

    model_version: str
    ds: str
    split: str
    users: int
    skipped_rows: int
    out_of_vocab_targets: int
    protocols: tuple[str, ...]
    ks: dict[str, tuple[int, ...]]  # protocol -> its cutoffs (served: up to serve.top_n)
    values: tuple[MetricValue, ...]
    buckets: tuple[dict, ...] = ()
    list_metrics: dict[str, float] = field(default_factory=dict)
    meta: dict = field(default_factory=dict)
    # the split's users when evaluate.max_users ranked a sample of them (``users`` of these); 0 = all ranked
    sampled_from_users: int = 0

    def metrics(self, ranker: str = MODEL, protocol: str = SERVED, target: str = INTERACTION,
                segment: str = "all") -> dict[str, float]:
        """``{"ndcg@10": mean, ...}`` of one group (empty when the group had no users)."""
        return {v.metric: v.value for v in self.values
                if (v.ranker, v.protocol, v.target, v.segment) == (ranker, protocol, target, segment)}

    def group_users(self, ranker: str = MODEL, protocol: str = SERVED, target: str = INTERACTION,
                    segment: str = "all") -> int:
        return next((v.users for v in self.values
                     if (v.ranker, v.protocol, v.target, v.segment) == (ranker, protocol, target, segment)), 0)

    def rows(self, evaluated_at: dt.datetime) -> pa.Table:
        """``model_metrics`` rows: one per (ranker, protocol, target, segment, metric, K); MRR has K = 0;
        the served lists' coverage, diversity and popularity have no standard error."""
        columns: dict[str, list] = {name: [] for name in spec("model_metrics").schema.names}
        values = list(self.values) + [
            MetricValue(MODEL, SERVED, INTERACTION, "all", name, value, math.nan, self.users)
            for name, value in sorted(self.list_metrics.items())]
        for v in values:
            metric, _, k = v.metric.partition("@")
            for name, value in (("model_version", self.model_version), ("ds", self.ds), ("split", self.split),
                                ("ranker", v.ranker), ("protocol", v.protocol), ("target", v.target),
                                ("segment", v.segment), ("metric", metric), ("k", int(k) if k else 0),
                                ("value", float(v.value)),
                                ("std_error", None if math.isnan(v.std_error) else float(v.std_error)),
                                ("users", v.users), ("evaluated_at", evaluated_at)):
                columns[name].append(value)
        return pa.table(columns, schema=spec("model_metrics").schema)


@dataclass(frozen=True)
class Paired:
    """The gate's comparison: one metric of the candidate and the champion on the same users."""

    metric: str
    candidate: float
    champion: float
    difference: float
    std_error: float
    users: int


@dataclass(frozen=True)
class EvaluationRun:
    evaluation: Evaluation
    table_version: int
    report_path: Path | None


@dataclass
class _Setup:
    """One model in a pass: its rankers, its catalogue under the rules, its sampler, what it accumulated."""

    scorer: Scorer
    rankers: list[Ranker]
    catalogue: ServedCatalogue
    generator: torch.Generator
    tally: Tally = field(default_factory=Tally)
    buckets: dict[tuple[str, int], Moments] = field(default_factory=dict)
    lists: ListTally | None = None
    users: int = 0
    out_of_vocab: int = 0


def _target_masks(batch: HeldOut, targets: Sequence[str]) -> dict[str, torch.Tensor]:
    out = {}
    for target in targets:
        if target == INTERACTION:
            out[target] = torch.ones(len(batch), dtype=torch.bool)
        else:
            out[target] = torch.from_numpy(batch.target_behaviours == BEHAVIOURS.index(target) + 1)
    return out


def _protocol_ks(settings: EvaluateSettings, rules: ServingRules) -> dict[str, tuple[int, ...]]:
    served = tuple(k for k in settings.ks if k <= rules.top_n)
    if not served:
        raise ValidationError(f"no evaluate.ks cutoff fits a served list of serve.top_n={rules.top_n}")
    out = {SERVED: served, FULL: tuple(settings.ks)}
    if settings.sampled_protocol:
        out[settings.sampled_protocol] = tuple(k for k in settings.ks if k <= settings.negatives + 1)
    return out


def _rank(setup: _Setup, ranker: Ranker, batch: HeldOut, targets: torch.Tensor, negatives: torch.Tensor | None,
          excluded: tuple[torch.Tensor, torch.Tensor],
          protocols: dict[str, tuple[int, ...]]) -> tuple[dict[str, torch.Tensor], torch.Tensor, torch.Tensor]:
    """Ranks of the batch's held-out items under each protocol, and the served lists (items, filled)."""
    approximate = setup.catalogue.index is not None and isinstance(ranker, ModelRanker)
    encoded = ranker.encode(batch) if approximate else None
    scores = ranker.scores_of(batch, encoded) if encoded is not None else ranker.scores(batch)  # [B, V]
    ranks = {}
    for protocol in protocols:
        if protocol not in (SERVED, FULL):
            ranks[protocol] = sampled_ranks(scores, targets, negatives)
    ranks[FULL] = full_ranks(scores.clone(), targets)
    if encoded is not None:  # served as scoring serves it: through the same approximate index
        ranks[SERVED], lists, filled = served_ranks_of_users(scores, encoded, targets, setup.catalogue, excluded,
                                                             setup.scorer.item_embeddings.to(torch.float32))
    else:
        ranks[SERVED], lists, filled = served_ranks(scores, targets, setup.catalogue, excluded)
    return ranks, lists, filled


def _accumulate(setups: Sequence[_Setup], batches: Iterable[HeldOut], settings: EvaluateSettings,
                protocols: dict[str, tuple[int, ...]], paired: tuple[str, PairedDifference] | None,
                gate_target: str) -> None:
    bucket_edges = torch.tensor(list(settings.length_buckets))
    bucket_k = BUCKET_K if BUCKET_K in protocols[SERVED] else max(protocols[SERVED])
    for batch in batches:
        targets = torch.from_numpy(batch.targets)
        masks = _target_masks(batch, settings.target_behaviours)
        repeat = torch.from_numpy(batch.repeat)
        segments = {"all": torch.ones_like(repeat), "repeat": repeat, "explore": ~repeat}
        buckets = torch.bucketize(torch.from_numpy(batch.lengths), bucket_edges, right=True)
        gate_values = []
        for setup in setups:
            setup.users += len(batch)
            setup.out_of_vocab += int((batch.targets >= setup.catalogue.size).sum())
            excluded = excluded_coordinates(batch, setup.catalogue.rules, setup.catalogue.size)
            negatives = None
            if settings.sampled_protocol:
                negatives = draw_negatives(batch, setup.catalogue.size, settings.negatives, setup.generator)
            for ranker in setup.rankers:
                ranks, lists, filled = _rank(setup, ranker, batch, targets, negatives, excluded, protocols)
                for protocol, protocol_ranks in ranks.items():
                    per_user = per_user_metrics_from_ranks(protocol_ranks, protocols[protocol])
                    for target, target_mask in masks.items():
                        for segment, segment_mask in segments.items():
                            setup.tally.add((ranker.name, protocol, target, segment), per_user,
                                            target_mask & segment_mask)
                    if ranker.name == MODEL:
                        for bucket in range(len(bucket_edges) + 1):
                            setup.buckets.setdefault((protocol, bucket), Moments()).add(
                                {f"hr@{bucket_k}": per_user[f"hr@{bucket_k}"],
                                 f"ndcg@{bucket_k}": per_user[f"ndcg@{bucket_k}"]}, buckets == bucket)
                    if ranker.name == MODEL and protocol == SERVED and paired:
                        gate_values.append(per_user[paired[0]])
                if ranker.name == MODEL and setup.lists is not None:
                    setup.lists.add(lists, filled)
        if paired:
            candidate, champion = gate_values
            paired[1].add(candidate, champion, _target_masks(batch, [gate_target])[gate_target])


def _bucket_rows(setup: _Setup, edges: Sequence[int]) -> list[dict]:
    bounds = [1, *edges]
    labels = [f"{lo}-{hi - 1}" for lo, hi in itertools.pairwise(bounds)] + [f"{bounds[-1]}+"]
    names = sorted({name for moments in setup.buckets.values() for name in moments.sums})
    out = []
    for (protocol, bucket), moments in sorted(setup.buckets.items(), key=lambda item: (item[0][0], item[0][1])):
        row = {"protocol": protocol, "bucket": labels[bucket], "users": moments.users}
        row |= {name: moments.mean(name) for name in names}
        out.append(row)
    return out


def _evaluation(setup: _Setup, ds: str, split: str, skipped: int, settings: EvaluateSettings,
                protocols: dict[str, tuple[int, ...]], sampled_from_users: int) -> Evaluation:
    values = []
    for (ranker, protocol, target, segment), moments in setup.tally.groups.items():
        values += [MetricValue(ranker, protocol, target, segment, name, moments.mean(name),
                               moments.std_error(name), moments.users) for name in moments.sums]
    catalogue_size = setup.catalogue.size - len(setup.catalogue.blocked)
    return Evaluation(
        model_version=setup.scorer.card.version, ds=ds, split=split, users=setup.users, skipped_rows=skipped,
        out_of_vocab_targets=setup.out_of_vocab, protocols=tuple(protocols), ks=protocols, values=tuple(values),
        buckets=tuple(_bucket_rows(setup, settings.length_buckets)),
        list_metrics=setup.lists.metrics(catalogue_size) if setup.lists else {}, meta=dict(setup.scorer.meta),
        sampled_from_users=sampled_from_users,
    )


@dataclass(frozen=True)
class _CatalogueInputs:
    """What every model's catalogue is built from, read once per evaluation."""

    vocab: pa.Table  # item_id, item_index
    denied: list[int]  # deny-listed item ids (empty when the rules do not honour the list)
    categories: pa.Table | None  # item_index, category_index: the latest partition up to ds, if any

    @classmethod
    def read(cls, lake: Lake, ds: str, rules: ServingRules) -> _CatalogueInputs:
        has_categories = lake.exists("item_categories") and any(d <= ds for d in lake.partitions("item_categories"))
        # The category cap needs them (latest_item_categories says so when there are none); diversity uses them.
        categories = latest_item_categories(lake, ds) if rules.max_per_category or has_categories else None
        return cls(lake.read("item_vocab", columns=["item_id", "item_index"]), denied_item_ids(lake, rules),
                   categories)


def _setup(scorer: Scorer, inputs: _CatalogueInputs, rules: ServingRules, settings: EvaluateSettings,
           popularity_counts: np.ndarray, *, baselines: Sequence[str], lists: bool,
           als: AlsFactors | None) -> _Setup:
    size = int(scorer.item_embeddings.shape[0])
    meta = scorer.meta
    if int(meta.get("item_vocab_size", size)) != size:
        raise ValidationError(f"model {scorer.card.version}: meta item_vocab_size {meta['item_vocab_size']} "
                              f"differs from its {size} item embeddings; the artifact is inconsistent")
    catalogue = build_catalogue(inputs.vocab, size, denied_item_ids=inputs.denied, item_categories=inputs.categories)
    served = ServedCatalogue.build(catalogue, rules, scorer.item_embeddings)
    popularity = torch.from_numpy(popularity_counts[:size].copy())
    fallback = popularity.to(torch.float32)
    fallback[fallback <= 0] = float("-inf")
    fallback[served.blocked] = float("-inf")
    rankers: list[Ranker] = [ModelRanker(scorer, fallback),
                             *(baseline(name, popularity, fallback=fallback, als=als) for name in baselines)]
    setup = _Setup(scorer, rankers, served, torch.Generator().manual_seed(settings.seed))
    if lists:
        known = inputs.categories is not None and inputs.categories.num_rows > 0
        categories = torch.as_tensor(catalogue.categories, dtype=torch.int64) if known else None
        setup.lists = ListTally(size, _protocol_ks(settings, rules)[SERVED], categories, popularity)
    return setup


def evaluate_on_lake(lake: Lake, scorers: Sequence[Scorer], *, ds: str, split: str, settings: EvaluateSettings,
                     rules: ServingRules, baselines: bool = True,
                     paired_metric: tuple[str, str] | None = None) -> tuple[list[Evaluation], Paired | None]:
    """Evaluate ``scorers`` on the same ``split`` rows of ds in one streamed pass.

    On the day the first model trained on, ``train_examples`` is read at the version it trained on
    (recorded in its meta), so a rerun after that day was featurized again measures the same rows.

    Args:
        baselines: rank ``settings.baselines`` beside each model.
        paired_metric: (metric, target) to compare the first two models on, user by user, under the served
            protocol (the gate).
    """
    meta = scorers[0].meta
    pinned = meta.get("train_examples_version") if str(meta.get("trained_ds")) == ds else None
    version = int(pinned) if pinned is not None else None
    if not lake.exists("train_examples") or ds not in lake.partitions("train_examples", version=version):
        raise EmptyInputError(f"train_examples has no rows for ds={ds}; run `seqrec featurize --ds {ds}` first")
    protocols = _protocol_ks(settings, rules)
    largest = max(int(s.item_embeddings.shape[0]) for s in scorers)
    counts = training_popularity(lake, ds, largest, version=version)
    inputs = _CatalogueInputs.read(lake, ds, rules)
    chosen = settings.baselines if baselines else ()
    als = None
    if ALS in chosen:
        als = fit_item_factors(lake, ds, split, size=largest, rank=settings.als_rank,
                               iterations=settings.als_iterations, reg_param=settings.als_reg_param,
                               alpha=settings.als_alpha, seed=settings.seed, version=version)
    setups = [_setup(scorer, inputs, rules, settings, counts, baselines=chosen, lists=paired_metric is None,
                     als=als) for scorer in scorers]
    paired = None
    if paired_metric is not None:
        metric, _ = paired_metric
        if metric != "mrr" and int(metric.partition("@")[2] or 0) not in protocols[SERVED]:
            raise ValidationError(f"gate.metric {metric!r} is not computed under the served protocol; its cutoff "
                                  f"must be one of evaluate.ks up to serve.top_n: {list(protocols[SERVED])}")
        paired = (metric, PairedDifference())
    skipped: list[int] = []
    split_users = split_rows(lake, ds, split, version=version) if settings.max_users else 0
    share = sample_share(settings.max_users, split_users)
    batches = heldout_batches(lake, ds, split, version=version, batch_rows=settings.batch_size, skipped=skipped,
                              user_share=share, seed=settings.seed)
    _accumulate(setups, batches, settings, protocols, paired, paired_metric[1] if paired_metric else INTERACTION)
    if not setups[0].users:
        raise EmptyInputError(f"train_examples ds={ds} holds no '{split}' row with a real held-out item; "
                              f"run `seqrec featurize --ds {ds}` for it first")
    evaluations = [_evaluation(setup, ds, split, sum(skipped), settings, protocols,
                               split_users if share < 1.0 else 0) for setup in setups]
    result = None
    if paired is not None:
        metric, difference = paired
        result = Paired(metric, difference.candidate.mean("v"), difference.champion.mean("v"),
                        difference.difference.mean("v"), difference.difference.std_error("v"),
                        difference.difference.users)
    return evaluations, result


def load_model(config: Config, model: str) -> Scorer:
    """A registered version by number, or the version carrying alias ``model`` (e.g. ``champion``), verified."""
    from lake.registry import load_model as load_verified

    return load_verified(config, model)


def model_ds(scorer: Scorer, ds: str | None) -> str:
    """The ds to evaluate on: ``ds`` if given, else the day the model was trained on."""
    if ds:
        return ds
    trained = scorer.meta.get("trained_ds")
    if not trained:
        raise ModelNotFoundError(f"model {scorer.card.version} records no trained_ds; pass --ds")
    return str(trained)


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
    """The evaluate stage: rank ``split`` rows of ds with model ``model`` (version or alias) and the
    baselines, record the metrics in ``model_metrics`` and render the report.

    Args:
        config: user configuration; the ``evaluate`` section is read from evaluation/defaults.yaml and the
            serving rules from the ``serve`` section.
        model: a registered version number, or an alias such as ``champion``.
        ds: the featurized day to evaluate on; the model's trained_ds by default.
        split: ``test`` or ``valid``; ``evaluate.split`` by default.
    """
    if split is not None:
        config = config.with_overrides({"evaluate": {"split": split}})
    settings = EvaluateSettings.from_config(config)
    rules = ServingRules.from_config(config)
    if lake is None or (ALS in settings.baselines and lake.spark is None):
        spark = None
        if ALS in settings.baselines:
            from lake.spark import get_spark

            spark = get_spark(config)
        lake = Lake.from_config(config, spark=spark)
    scorer = load_model(config, model)
    ds = model_ds(scorer, ds)
    [evaluation], _ = evaluate_on_lake(lake, [scorer], ds=ds, split=settings.split, settings=settings, rules=rules)
    table_version = write_metrics(lake, evaluation, dt.datetime.now(dt.UTC))
    report_path = None
    if settings.report:
        from evaluation.report import render_for_run

        report_path = render_for_run(config, lake, scorer, evaluation)
    return EvaluationRun(evaluation, table_version, report_path)
