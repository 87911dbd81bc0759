"""Entry point: evaluate a registered model. `seqrec evaluate ...` or `spark-submit jobs/evaluate.py ...`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from jobs._common import ConfigOption, console, run_stage
from lake import Config

if TYPE_CHECKING:
    from evaluation.evaluate import EvaluationRun


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
    from evaluation.evaluate import evaluate

    return evaluate(config, model, ds=ds, split=split)


def command(
    model: ModelOption,
    ds: OptionalDsOption = None,
    split: Annotated[str | None, typer.Option("--split", help="test (default) or valid.")] = None,
    config: ConfigOption = None,
) -> None:
    """Rank the held-out items of --split with model --model and the baselines under the served protocol (the
    list `seqrec score` serves) and the secondary ones; write `model_metrics` rows and a Markdown + PNG report."""
    result = run_stage("evaluate", ds, config, lambda cfg: run(cfg, ds, model, split))
    evaluation = result.evaluation
    for target in dict.fromkeys(v.target for v in evaluation.values):
        for protocol in evaluation.protocols:
            for ranker in dict.fromkeys(v.ranker for v in evaluation.values):
                m = evaluation.metrics(ranker, protocol, target)
                if not m:
                    continue
                users = evaluation.group_users(ranker, protocol, target)
                repeat = evaluation.group_users(ranker, protocol, target, "repeat")
                typer.echo(
                    f"{target:>11} {protocol:>11} {ranker:>12}: HR@10 {m.get('hr@10', float('nan')):.4f}  "
                    f"NDCG@10 {m.get('ndcg@10', float('nan')):.4f}  MRR {m['mrr']:.4f}  "
                    f"({users:,} users, {repeat / max(users, 1):.0%} repeat targets)")
    if evaluation.sampled_from_users:
        console.print(f"ranked a fixed sample of {evaluation.users:,} of the split's {evaluation.sampled_from_users:,} "
                      f"users (evaluate.max_users)")
    if result.report_path is not None:
        console.print(f"report: {result.report_path}")
    typer.echo(f"model_version={evaluation.model_version} split={evaluation.split} ds={evaluation.ds} "
               f"model_metrics_version={result.table_version}")


if __name__ == "__main__":
    typer.run(command)
