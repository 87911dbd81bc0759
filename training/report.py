"""The evaluation report: one Markdown page with PNG plots, under ``lake.reports_dir/evaluate/``.

Plots: training curves (the per-epoch MLflow metrics of the model's run), metrics by cutoff K, metrics by
sequence-length bucket, and a comparison with every model version recorded in ``model_metrics``.
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
    from lake.registry import Scorer
    from training.evaluate import EvaluateSettings, Evaluation

__all__ = ["CURVE_KEYS", "comparison_rows", "render_for_run", "render_report", "report_dir", "training_curves"]

CURVE_KEYS = ("train_loss", "valid_ndcg@10", "valid_hr@10", "valid_sampled_ndcg@10", "valid_sampled_hr@10")
ACCURACY = ("hr", "ndcg", "precision", "recall", "f1", "f1_test")
LIST_LEVEL = ("coverage", "diversity", "avg_popularity")
COMPARED = ("hr", "ndcg")
COMPARED_K = 10


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
    table = lake.read("model_metrics", columns=["model_version", "protocol", "split", "metric", "k", "value"])
    mask = pc.and_(pc.equal(table.column("split"), split), pc.equal(table.column("k"), COMPARED_K))
    mask = pc.and_(mask, pc.is_in(table.column("metric"), value_set=pa.array(COMPARED)))
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
        metrics = evaluation.protocols[protocol].metrics
        for name in ACCURACY:
            ax.plot(evaluation.ks, [metrics[f"{name}@{k}"] for k in evaluation.ks], marker="o", label=name)
        ax.set_xscale("log")
        ax.set_xticks(evaluation.ks, [str(k) for k in evaluation.ks])
        ax.set_xlabel("K")
        ax.set_title(protocol)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(f"Model {evaluation.model_version}: metrics by K ({evaluation.split})")
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


def _bucket_metrics(ks: Sequence[int]) -> tuple[str, str]:
    k = COMPARED_K if COMPARED_K in ks else max(ks)
    return f"hr@{k}", f"ndcg@{k}"


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


def render_report(evaluation: Evaluation, out_dir: Path, *, buckets: Sequence[Mapping[str, Any]],
                  curves: Mapping[str, list[tuple[int, float]]],
                  comparison: Sequence[Mapping[str, Any]]) -> Path:
    """Write ``report.md`` and its PNG plots to ``out_dir``; returns the Markdown path.

    Args:
        evaluation: the metrics of one model on one split.
        buckets: rows from :func:`training.evaluate.length_bucket_metrics`.
        curves: ``{metric key: [(epoch, value)]}`` from training; the plot is left out when empty.
        comparison: rows from :func:`comparison_rows`; the plot is left out when empty.
    """
    import matplotlib

    matplotlib.use("Agg")
    out_dir.mkdir(parents=True, exist_ok=True)
    meta = evaluation.meta
    lines = [
        f"# Model {evaluation.model_version} evaluation ({evaluation.split})",
        "",
        f"- model type: {meta.get('model_type', 'unknown')}; trained on ds {meta.get('trained_ds', 'unknown')}; "
        f"max_len {meta.get('max_len', '?')}; item vocabulary {meta.get('item_vocab_size', '?')}",
        f"- evaluated on ds {evaluation.ds}, split `{evaluation.split}`: {evaluation.users:,} users "
        f"(every user; {evaluation.skipped_rows:,} rows without a real held-out item skipped, "
        f"{evaluation.out_of_vocab_targets:,} held-out items outside the model's vocabulary counted as misses)",
        "- protocols: " + "; ".join(
            "full = against every item the user has not interacted with" if p == "full"
            else f"{p} = against {p.removeprefix('sampled')} uniformly sampled non-interacted items"
            for p in evaluation.protocols),
        "- ties are ranked against the held-out item; one held-out item per user, so hr = recall; "
        "definitions in docs/metrics.md",
        "",
    ]
    for protocol, result in evaluation.protocols.items():
        lines += [f"## {protocol}", "", f"MRR: {_fmt(result.metrics['mrr'])}", ""]
        lines += [*_metric_table(result.metrics, ACCURACY, evaluation.ks), ""]
        list_table = _metric_table(result.metrics, LIST_LEVEL, evaluation.ks)
        if list_table:
            lines += ["Recommendation lists (top-K over the full catalogue):", "", *list_table, ""]

    _plot_by_k(evaluation, out_dir / "metrics_by_k.png")
    lines += ["## Metrics by K", "", "![metrics by K](metrics_by_k.png)", ""]

    bucket_metrics = [m for m in buckets[0] if "@" in m] if buckets else []
    _plot_by_length(buckets, bucket_metrics, out_dir / "metrics_by_length.png",
                    f"Model {evaluation.model_version}: by sequence length ({evaluation.split})")
    lines += ["## By sequence length", "",
              "Length = the inputs in the user's row (featurization keeps at most max_len).", "",
              "| protocol | length | users | " + " | ".join(bucket_metrics) + " |",
              "|---" * (3 + len(bucket_metrics)) + "|"]
    lines += [f"| {b['protocol']} | {b['bucket']} | {b['users']:,} | "
              + " | ".join(_fmt(b[m]) for m in bucket_metrics) + " |" for b in buckets]
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
        lines += ["Every version in `model_metrics` for this split (each on the ds it was evaluated on).", "",
                  "| model | protocol | hr@10 | ndcg@10 |", "|---|---|---|---|"]
        lines += [f"| {r['model_version']} | {r['protocol']} | {_fmt(r.get('hr@10', math.nan))} | "
                  f"{_fmt(r.get('ndcg@10', math.nan))} |" for r in comparison]
        lines += ["", "![model comparison](model_comparison.png)", ""]
    else:
        lines += ["No model has metrics recorded for this split yet.", ""]
    path = out_dir / "report.md"
    path.write_text("\n".join(lines))
    return path


def render_for_run(config: Config, lake: Lake, scorer: Scorer, evaluation: Evaluation,
                   settings: EvaluateSettings) -> Path:
    """Gather curves and the comparison for ``evaluation`` and render its report."""
    from training.evaluate import length_bucket_metrics

    return render_report(
        evaluation, report_dir(config, evaluation.model_version, evaluation.split),
        buckets=length_bucket_metrics(evaluation, settings.length_buckets, _bucket_metrics(evaluation.ks)),
        curves=training_curves(config, scorer.card.run_id),
        comparison=comparison_rows(lake, evaluation.split),
    )
