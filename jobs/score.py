"""Entry point: score every active user for one ds. `seqrec score ...` or `spark-submit jobs/score.py ...`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from jobs._common import ConfigOption, DsOption, console, run_stage
from lake import Config

if TYPE_CHECKING:
    from scoring.score import ScoreResult


def run(config: Config, ds: str, model: str | None = None) -> ScoreResult:
    """The scoring stage as a plain function of (config, ds)."""
    from lake.spark import get_spark
    from scoring.score import score

    return score(config, ds, spark=get_spark(config), model_version=model)


def command(
    ds: DsOption,
    model: Annotated[str | None, typer.Option(
        "--model", help="Registered model version to score with (default: the quality gate's champion).",
    )] = None,
    top_n: Annotated[int | None, typer.Option(
        "--top-n", help="Items per user (overrides serve.top_n).")] = None,
    config: ConfigOption = None,
) -> None:
    """Write the top-N recommendations of every active user for DS into `recommendations` (partition DS)."""
    flags = {"serve": {"top_n": top_n}} if top_n is not None else {}
    result = run_stage("score", ds, config, lambda cfg: run(cfg.with_overrides(flags), ds, model))
    console.print(
        f"model version {result.model_version}: {result.users:,} users, {result.rows:,} rows "
        f"(popularity fallback {result.popular_users:,}, short lists {result.short_lists:,}); "
        f"recommendations version {result.table_version}. Publish with `seqrec publish --ds {ds}`."
    )


if __name__ == "__main__":
    typer.run(command)
