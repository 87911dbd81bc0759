"""The evaluation report: one Markdown page with PNG plots, under ``lake.reports_dir/evaluate/``.

It leads with the served protocol (the list users see), beside the baselines and split into repeat and
explore targets; then the secondary protocols, metrics by cutoff K, by sequence-length bucket, the training
curves (the per-epoch MLflow metrics of the model's run) and every version recorded in ``model_metrics``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.compute as pc

from lake import Config, Lake

if TYPE_CHECKING:
    from evaluation.evaluate import Evaluation
    from lake.artifacts import Scorer

__all__ = ["CURVE_KEYS", "comparison_rows", "render_for_run", "render_report", "report_dir", "training_curves"]

CURVE_KEYS = ("train_loss", "valid_ndcg@10", "valid_hr@10", "valid_sampled_ndcg@10", "valid_sampled_hr@10")
ACCURACY = ("hr", "ndcg", "precision", "recall", "f1", "f1_test")
LIST_LEVEL = ("coverage", "diversity", "avg_popularity")
COMPARED = ("hr", "ndcg")
COMPARED_K = 10
MODEL_RANKER, SERVED_PROTOCOL = "model", "served"


def report_dir(config: Config, model_version: str, split: str) -> Path:
    return Path(config.lake.reports_dir) / "evaluate" / f"model-{model_version}-{split}"


def training_curves(config: Config, run_id: str) -> dict[str, list[tuple[int, float]]]:
    """The per-epoch metrics training logged to MLflow run ``run_id``: ``{key: [(epoch, value), ...]}``."""
    from mlflow import MlflowClient

    from lake.registry import tracking

    if not run_id:
        return {}
    with tracking(config):
        client = MlflowClient()
        # MLflow refuses '@' in metric names, so training logs valid_ndcg@10 as valid_ndcg_at_10.
        curves = {key: sorted((m.step, m.value) for m in client.get_metric_history(run_id, key.replace("@", "_at_")))
                  for key in CURVE_KEYS}
    return {key: points for key, points in curves.items() if points}


def comparison_rows(lake: Lake, split: str) -> list[dict[str, Any]]:
    """HR@10 and NDCG@10 of every model version evaluated on ``split``, per protocol, by version."""
    if not lake.exists("model_metrics"):
        return []
    table = lake.read("model_metrics", columns=["model_version", "protocol", "split", "ranker", "target",
                                                "segment", "metric", "k", "value"])
    mask = pc.and_(pc.equal(table.column("split"), split), pc.equal(table.column("k"), COMPARED_K))
    mask = pc.and_(mask, pc.is_in(table.column("metric"), value_set=pa.array(COMPARED)))
    for column, value in (("ranker", "model"), ("target", "interaction"), ("segment", "all")):
        mask = pc.and_(mask, pc.equal(table.column(column), value))
    rows: dict[tuple[str, str], dict[str, Any]] = {}
    for row in table.filter(mask).to_pylist():
        entry = rows.setdefault((row["model_version"], row["protocol"]),
                                {"model_version": row["model_version"], "protocol": row["protocol"]})
        entry[f"{row['metric']}@{COMPARED_K}"] = row["value"]
    return sorted(rows.values(), key=lambda r: (r["protocol"], _version_key(r["model_version"])))


def _version_key(version: str) -> tuple[int, str]:
    return (int(version), "") if version.isdigit() else (math.inf, version)  # type: ignore[return-value]


def _fmt(value: float) -> str:
    return "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.4f}"


def _metric_table(metrics: Mapping[str, float], names: Sequence[str], ks: Sequence[int]) -> list[str]:
    present = [n for n in names if any(f"{n}@{k}" in metrics for k in ks)]
    if not present:
        return []
    lines = ["| metric | " + " | ".join(f"@{k}" for k in ks) + " |", "|---" * (len(ks) + 1) + "|"]
    for name in present:
        cells = [_fmt(metrics[f"{name}@{k}"]) if f"{name}@{k}" in metrics else "" for k in ks]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return lines


def _plot_curves(curves: Mapping[str, list[tuple[int, float]]], path: Path) -> None:
    import matplotlib.pyplot as plt

    loss = {k: v for k, v in curves.items() if "loss" in k}
    quality = {k: v for k, v in curves.items() if "loss" not in k}
    panels = [p for p in (loss, quality) if p]
    fig, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels), 3.8), squeeze=False)
    for ax, panel in zip(axes[0], panels, strict=True):
        for key, points in panel.items():
            ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", label=key)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle("Training curves")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _plot_by_k(evaluation: Evaluation, path: Path) -> None:
    import matplotlib.pyplot as plt

    protocols = list(evaluation.protocols)
    fig, axes = plt.subplots(1, len(protocols), figsize=(5.5 * len(protocols), 3.8), squeeze=False)
    for ax, protocol in zip(axes[0], protocols, strict=True):
        metrics = evaluation.metrics(protocol=protocol)
        ks = evaluation.ks[protocol]
        for name in ACCURACY:
            ax.plot(ks, [metrics.get(f"{name}@{k}", math.nan) for k in ks], marker="o", label=name)
        ax.set_xscale("log")
        ax.set_xticks(ks, [str(k) for k in ks])
        ax.set_xlabel("K")
        ax.set_title(protocol)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(f"Model {evaluation.model_version}: metrics by K ({evaluation.split}, next interaction)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _grouped_bars(ax: Any, groups: Sequence[str], series: Mapping[str, Sequence[float]]) -> None:
    width = 0.8 / max(len(series), 1)
    for i, (label, values) in enumerate(series.items()):
        offsets = [g + (i - (len(series) - 1) / 2) * width for g in range(len(groups))]
        ax.bar(offsets, [0.0 if math.isnan(v) else v for v in values], width, label=label)
    ax.set_xticks(range(len(groups)), groups)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8)


def _plot_by_length(buckets: Sequence[Mapping[str, Any]], metrics: Sequence[str], path: Path, title: str) -> None:
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(metrics), figsize=(5.5 * len(metrics), 3.8), squeeze=False)
    labels = list(dict.fromkeys(b["bucket"] for b in buckets))
    users = {b["bucket"]: b["users"] for b in buckets}
    for ax, metric in zip(axes[0], metrics, strict=True):
        series = {p: [b[metric] for b in buckets if b["protocol"] == p]
                  for p in dict.fromkeys(b["protocol"] for b in buckets)}
        _grouped_bars(ax, [f"{label}\n({users[label]} users)" for label in labels], series)
        ax.set_title(metric)
        ax.set_xlabel("inputs in the user's row (featurization keeps at most max_len)")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _plot_comparison(comparison: Sequence[Mapping[str, Any]], path: Path, split: str) -> None:
    import matplotlib.pyplot as plt

    protocols = list(dict.fromkeys(r["protocol"] for r in comparison))
    fig, axes = plt.subplots(1, len(protocols), figsize=(5.5 * len(protocols), 3.8), squeeze=False)
    for ax, protocol in zip(axes[0], protocols, strict=True):
        rows = [r for r in comparison if r["protocol"] == protocol]
        series = {f"{m}@{COMPARED_K}": [r.get(f"{m}@{COMPARED_K}", math.nan) for r in rows] for m in COMPARED}
        _grouped_bars(ax, [f"v{r['model_version']}" for r in rows], series)
        ax.set_title(protocol)
        ax.set_xlabel("model version")
    fig.suptitle(f"Model comparison ({split})")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _value(evaluation: Evaluation, ranker: str, protocol: str, target: str, segment: str, metric: str) -> str:
    for v in evaluation.values:
        if (v.ranker, v.protocol, v.target, v.segment, v.metric) == (ranker, protocol, target, segment, metric):
            error = "" if math.isnan(v.std_error) else f" ± {v.std_error:.4f}"
            return f"{_fmt(v.value)}{error}"
    return ""


def _ranker_table(evaluation: Evaluation, protocol: str, target: str) -> list[str]:
    """Rows per (ranker, segment): users, their share, HR@10, NDCG@10, MRR (± standard error)."""
    rankers = list(dict.fromkeys(v.ranker for v in evaluation.values))
    k = COMPARED_K if COMPARED_K in evaluation.ks[protocol] else max(evaluation.ks[protocol])
    lines = [f"| ranker | targets | users | share | HR@{k} | NDCG@{k} | MRR |", "|---|---|---|---|---|---|---|"]
    total = evaluation.group_users(MODEL_RANKER, protocol, target, "all")
    for ranker in rankers:
        for segment in ("all", "repeat", "explore"):
            users = evaluation.group_users(ranker, protocol, target, segment)
            share = f"{users / total:.1%}" if total else "n/a"
            cells = [_value(evaluation, ranker, protocol, target, segment, m) for m in (f"hr@{k}", f"ndcg@{k}", "mrr")]
            lines.append(f"| {ranker} | {segment} | {users:,} | {share} | " + " | ".join(cells) + " |")
    return lines


def render_report(evaluation: Evaluation, out_dir: Path, *, curves: Mapping[str, list[tuple[int, float]]],
                  comparison: Sequence[Mapping[str, Any]]) -> Path:
    """Write ``report.md`` and its PNG plots to ``out_dir``; returns the Markdown path.

    Args:
        evaluation: the metrics of one model and its baselines on one split.
        curves: ``{metric key: [(epoch, value)]}`` from training; the plot is left out when empty.
        comparison: rows from :func:`comparison_rows`; the plot is left out when empty.
    """
    import matplotlib

    matplotlib.use("Agg")
    out_dir.mkdir(parents=True, exist_ok=True)
    meta = evaluation.meta
    targets = list(dict.fromkeys(v.target for v in evaluation.values))
    lines = [
        f"# Model {evaluation.model_version} evaluation ({evaluation.split})",
        "",
        f"- model type: {meta.get('model_type', 'unknown')}; trained on ds {meta.get('trained_ds', 'unknown')}; "
        f"max_len {meta.get('max_len', '?')}; item vocabulary {meta.get('item_vocab_size', '?')}",
        f"- evaluated on ds {evaluation.ds}, split `{evaluation.split}`: {evaluation.users:,} users "
        f"({_which_users(evaluation)}; {evaluation.skipped_rows:,} rows without a real held-out item skipped, "
        f"{evaluation.out_of_vocab_targets:,} held-out items outside the model's vocabulary counted as misses)",
        "- **served** = the list `seqrec score` serves (same code, same `serve` rules: bought items excluded, "
        "deny list, category cap, top_n); the held-out item counts only if that list holds it. Secondary: "
        "full = every item a candidate, nothing excluded; sampled<N> = against N sampled unseen items",
        "- repeat = the held-out item is among the user's inputs (seen before); explore = it is not. "
        "Figures are means over users ± their standard error; definitions in docs/metrics.md",
        "",
    ]
    for target in targets:
        heading = "next interaction" if target == "interaction" else f"next {target}"
        for protocol in evaluation.protocols:
            lines += [f"## {protocol}: {heading}", "", *_ranker_table(evaluation, protocol, target), ""]
            if protocol == SERVED_PROTOCOL and target == targets[0]:
                metrics = evaluation.metrics(protocol=protocol, target=target)
                lines += [*_metric_table(metrics, ACCURACY, evaluation.ks[protocol]), ""]
                list_table = _metric_table(evaluation.list_metrics, LIST_LEVEL, evaluation.ks[protocol])
                if list_table:
                    lines += ["The served lists themselves:", "", *list_table, ""]

    _plot_by_k(evaluation, out_dir / "metrics_by_k.png")
    lines += ["## Metrics by K", "", "![metrics by K](metrics_by_k.png)", ""]

    buckets = list(evaluation.buckets)
    bucket_metrics = [m for m in buckets[0] if "@" in m] if buckets else []
    if buckets:
        _plot_by_length(buckets, bucket_metrics, out_dir / "metrics_by_length.png",
                        f"Model {evaluation.model_version}: by sequence length ({evaluation.split})")
        lines += ["## By sequence length", "",
                  "Length = the inputs in the user's row (featurization keeps at most max_len); next interaction.",
                  "", "| protocol | length | users | " + " | ".join(bucket_metrics) + " |",
                  "|---" * (3 + len(bucket_metrics)) + "|"]
        lines += [f"| {b['protocol']} | {b['bucket']} | {b['users']:,} | "
                  + " | ".join(_fmt(b.get(m, math.nan)) for m in bucket_metrics) + " |" for b in buckets]
        lines += ["", "![metrics by sequence length](metrics_by_length.png)", ""]

    lines += ["## Training curves", ""]
    if curves:
        _plot_curves(curves, out_dir / "training_curves.png")
        lines += ["![training curves](training_curves.png)", ""]
    else:
        lines += ["The model's MLflow run recorded no per-epoch metrics.", ""]

    lines += ["## Model comparison", ""]
    if comparison:
        _plot_comparison(comparison, out_dir / "model_comparison.png", evaluation.split)
        lines += ["Every version in `model_metrics` for this split (each on the ds it was evaluated on; next "
                  "interaction, all users).", "", "| model | protocol | hr@10 | ndcg@10 |", "|---|---|---|---|"]
        lines += [f"| {r['model_version']} | {r['protocol']} | {_fmt(r.get('hr@10', math.nan))} | "
                  f"{_fmt(r.get('ndcg@10', math.nan))} |" for r in comparison]
        lines += ["", "![model comparison](model_comparison.png)", ""]
    else:
        lines += ["No model has metrics recorded for this split yet.", ""]
    path = out_dir / "report.md"
    path.write_text("\n".join(lines))
    return path


def render_for_run(config: Config, lake: Lake, scorer: Scorer, evaluation: Evaluation) -> Path:
    """Gather curves and the comparison for ``evaluation`` and render its report."""
    return render_report(
        evaluation, report_dir(config, evaluation.model_version, evaluation.split),
        curves=training_curves(config, scorer.card.run_id),
        comparison=comparison_rows(lake, evaluation.split),
    )


def _which_users(evaluation: Evaluation) -> str:
    if not evaluation.sampled_from_users:
        return "every user"
    return (f"a fixed sample of the split's {evaluation.sampled_from_users:,} users, evaluate.max_users: metrics "
            f"are estimates over it")
