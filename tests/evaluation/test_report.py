"""The evaluation report: Markdown with its numbers, and the four plots as real PNG files."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from evaluation.evaluate import Evaluation, MetricValue, evaluate
from evaluation.metrics import metrics_from_ranks
from evaluation.protocols import FULL, SERVED
from evaluation.report import comparison_rows, render_report, report_dir, training_curves
from lake import Config, Lake
from lake.registry import find
from tests.evaluation.test_evaluate import NEGATIVES, oracle_table, register_model, write_dataset

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
KS = (1, 5, 10)


def _evaluation() -> Evaluation:
    ranks = torch.tensor([1, 2, 7, 30])
    values = []
    for protocol in (SERVED, FULL):
        for segment, members in (("all", [0, 1, 2, 3]), ("repeat", [0]), ("explore", [1, 2, 3])):
            metrics = metrics_from_ranks(ranks[members], KS)
            values += [MetricValue("model", protocol, "interaction", segment, name, value, 0.01, len(members))
                       for name, value in metrics.items()]
    values += [MetricValue("recent-items", SERVED, "interaction", "all", "hr@10", 0.5, 0.02, 4)]
    return Evaluation(
        model_version="3", split="test", ds="2024-01-05", users=4, skipped_rows=0, out_of_vocab_targets=0,
        protocols=(SERVED, FULL), ks={SERVED: KS, FULL: KS}, values=tuple(values),
        buckets=({"protocol": SERVED, "bucket": "1-4", "users": 1, "hr@10": 1.0, "ndcg@10": 1.0},
                 {"protocol": SERVED, "bucket": "10+", "users": 2, "hr@10": 0.5, "ndcg@10": 0.1}),
        list_metrics={"coverage@1": 0.1, "coverage@5": 0.3, "coverage@10": 0.5},
        meta={"model_type": "sasrec", "trained_ds": "2024-01-05"},
    )


def _is_png(path: Path) -> bool:
    return path.exists() and path.read_bytes()[:8] == PNG_MAGIC and path.stat().st_size > 1000


def test_report_holds_the_numbers_and_four_plots(tmp_path: Path):
    evaluation = _evaluation()
    path = render_report(
        evaluation, tmp_path / "r",
        curves={"train_loss": [(0, 5.0), (1, 4.2)], "valid_ndcg@10": [(0, 0.2), (1, 0.3)]},
        comparison=[{"model_version": "2", "protocol": FULL, "hr@10": 0.4, "ndcg@10": 0.2},
                    {"model_version": "3", "protocol": FULL, "hr@10": 0.75, "ndcg@10": 0.5}],
    )
    text = path.read_text()
    assert "# Model 3 evaluation (test)" in text
    assert text.index("## served: next interaction") < text.index("## full: next interaction")
    assert f"| hr | {0.25:.4f} | {0.5:.4f} | {0.75:.4f} |" in text
    mrr = (1 + 1 / 2 + 1 / 7 + 1 / 30) / 4
    assert f"| model | all | 4 | 100.0% | {0.75:.4f} ± 0.0100 |" in text and f"{mrr:.4f} ± 0.0100 |" in text
    assert "| model | repeat | 1 | 25.0% |" in text and "| model | explore | 3 | 75.0% |" in text
    assert f"| recent-items | all | 4 | 100.0% | {0.5:.4f} ± 0.0200 |" in text
    assert "| coverage |" in text
    assert "| served | 1-4 | 1 |" in text and "| served | 10+ | 2 |" in text
    for name in ("metrics_by_k", "metrics_by_length", "training_curves", "model_comparison"):
        assert _is_png(tmp_path / "r" / f"{name}.png"), name
        assert f"({name}.png)" in text


def test_missing_curves_and_comparison_are_said_not_drawn(tmp_path: Path):
    path = render_report(_evaluation(), tmp_path / "r", curves={}, comparison=[])
    text = path.read_text()
    assert "recorded no per-epoch metrics" in text and "No model has metrics recorded" in text
    assert not (tmp_path / "r" / "training_curves.png").exists()


@pytest.fixture
def eval_config(config: Config) -> Config:
    return config.with_overrides({"evaluate": {"negatives": NEGATIVES}, "serve": {"top_n": 20}})


@pytest.mark.slow
def test_stage_report_reads_curves_and_compares_versions(eval_config: Config, lake: Lake, tmp_path: Path):
    write_dataset(lake)
    curves = [{"train_loss": 3.0 - epoch, "valid_ndcg_at_10": 0.1 * epoch, "valid_hr_at_10": 0.2 * epoch}
              for epoch in range(3)]
    first = register_model(eval_config, tmp_path, oracle_table(-1.0))
    second = register_model(eval_config, tmp_path, oracle_table(), curves=curves)
    evaluate(eval_config, first)
    run = evaluate(eval_config, second)

    card_run = find(eval_config, version=second).run_id
    curves_read = training_curves(eval_config, card_run)
    assert curves_read["train_loss"] == [(0, 3.0), (1, 2.0), (2, 1.0)]
    assert curves_read["valid_ndcg@10"] == [(0, 0.0), (1, 0.1), (2, pytest.approx(0.2))]
    rows = comparison_rows(lake, "test")
    assert [(r["model_version"], r["protocol"]) for r in rows if r["protocol"] == FULL] == [(first, FULL),
                                                                                            (second, FULL)]
    assert run.report_path == report_dir(eval_config, second, "test") / "report.md"
    assert _is_png(run.report_path.parent / "training_curves.png")
    assert _is_png(run.report_path.parent / "model_comparison.png")
