"""Entry point: evaluate a registered model. `seqrec evaluate ...` or `spark-submit jobs/evaluate.py ...`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from jobs._common import ConfigOption, console, run_stage
from lake import Config

if TYPE_CHECKING:
    from training.evaluate import EvaluationRun


def _optional_ds(value: str | None) -> str | None:
    import datetime as dt

    if value is None:
        return None
    try:
        return dt.date.fromisoformat(value).isoformat()
    except ValueError:
        raise typer.BadParameter(f"{value!r} is not a date; use YYYY-MM-DD") from None


OptionalDsOption = Annotated[
    str | None,
    typer.Option("--ds", help="Featurized day to evaluate on (YYYY-MM-DD); default: the model's trained_ds.",
                 callback=_optional_ds),
]
ModelOption = Annotated[str, typer.Option("--model", help="Registered model version, or an alias (champion).")]


def run(config: Config, ds: str | None, model: str, split: str | None = None) -> EvaluationRun:
    """The evaluate stage as a plain function of (config, ds)."""
    from training.evaluate import evaluate

    return evaluate(config, model, ds=ds, split=split)


def command(
    model: ModelOption,
    ds: OptionalDsOption = None,
    split: Annotated[str | None, typer.Option("--split", help="test (default) or valid.")] = None,
    config: ConfigOption = None,
) -> None:
    """Rank the held-out items of --split with model --model under the sampled and full protocols; write
    `model_metrics` rows and a Markdown + PNG report."""
    result = run_stage("evaluate", ds, config, lambda cfg: run(cfg, ds, model, split))
    evaluation = result.evaluation
    for protocol, outcome in evaluation.protocols.items():
        m = outcome.metrics
        console.print(f"{protocol:>11}: HR@10 {m['hr@10']:.4f}  NDCG@10 {m['ndcg@10']:.4f}  MRR {m['mrr']:.4f}  "
                      f"F1-Test@10 {m['f1_test@10']:.4f}  ({evaluation.users:,} users)")
    if result.report_path is not None:
        console.print(f"report: {result.report_path}")
    typer.echo(f"model_version={evaluation.model_version} split={evaluation.split} ds={evaluation.ds} "
               f"model_metrics_version={result.table_version}")


if __name__ == "__main__":
    typer.run(command)
