"""The evaluation report: Markdown with its numbers, and the four plots as real PNG files."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from lake import Config, Lake
from lake.registry import find
from tests.training.test_evaluate import NEGATIVES, oracle_table, register_model, write_dataset
from training.evaluate import FULL, Evaluation, ProtocolResult, evaluate
from training.metrics import list_metrics, metrics_from_ranks
from training.report import comparison_rows, render_report, report_dir, training_curves

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
KS = (1, 5, 10)


def _evaluation() -> Evaluation:
    ranks = torch.tensor([1, 2, 7, 30])
    full = metrics_from_ranks(ranks, KS) | list_metrics(torch.tensor([[2, 3, 4, 5, 6, 7, 8, 9, 10, 11]] * 4), KS,
                                                        catalogue_size=20)
    return Evaluation(
        model_version="3", split="test", ds="2024-01-05", users=4, skipped_rows=0, out_of_vocab_targets=0,
        lengths=torch.tensor([2, 6, 12, 40]), ks=KS, meta={"model_type": "sasrec", "trained_ds": "2024-01-05"},
        protocols={"sampled100": ProtocolResult("sampled100", metrics_from_ranks(ranks, KS), ranks),
                   FULL: ProtocolResult(FULL, full, ranks)},
    )


def _is_png(path: Path) -> bool:
    return path.exists() and path.read_bytes()[:8] == PNG_MAGIC and path.stat().st_size > 1000


def test_report_holds_the_numbers_and_four_plots(tmp_path: Path):
    from training.evaluate import length_bucket_metrics

    evaluation = _evaluation()
    path = render_report(
        evaluation, tmp_path / "r",
        buckets=length_bucket_metrics(evaluation, [5, 10], ("hr@10", "ndcg@10")),
        curves={"train_loss": [(0, 5.0), (1, 4.2)], "valid_ndcg@10": [(0, 0.2), (1, 0.3)]},
        comparison=[{"model_version": "2", "protocol": FULL, "hr@10": 0.4, "ndcg@10": 0.2},
                    {"model_version": "3", "protocol": FULL, "hr@10": 0.75, "ndcg@10": 0.5}],
    )
    text = path.read_text()
    assert "# Model 3 evaluation (test)" in text
    assert f"| hr | {0.25:.4f} | {0.5:.4f} | {0.75:.4f} |" in text
    assert f"MRR: {(1 + 1 / 2 + 1 / 7 + 1 / 30) / 4:.4f}" in text
    assert "| coverage |" in text and "| full | 10-inf |" not in text
    assert "| full | 1-4 | 1 |" in text and "| full | 10+ | 2 |" in text
    for name in ("metrics_by_k", "metrics_by_length", "training_curves", "model_comparison"):
        assert _is_png(tmp_path / "r" / f"{name}.png"), name
        assert f"({name}.png)" in text


def test_missing_curves_and_comparison_are_said_not_drawn(tmp_path: Path):
    from training.evaluate import length_bucket_metrics

    evaluation = _evaluation()
    path = render_report(evaluation, tmp_path / "r", buckets=length_bucket_metrics(evaluation, [5]),
                         curves={}, comparison=[])
    text = path.read_text()
    assert "recorded no per-epoch metrics" in text and "No model has metrics recorded" in text
    assert not (tmp_path / "r" / "training_curves.png").exists()


@pytest.fixture
def eval_config(config: Config) -> Config:
    return config.with_overrides({"evaluate": {"negatives": NEGATIVES}})


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
