"""Entry point: validate one ds of recommendations and republish it as recommendations_latest.
`seqrec publish ...` or `spark-submit jobs/publish.py ...`."""

from __future__ import annotations

from typing import TYPE_CHECKING

import typer

from jobs._common import ConfigOption, DsOption, console, run_stage
from lake import Config

if TYPE_CHECKING:
    from scoring.publish import PublishResult


def run(config: Config, ds: str) -> PublishResult:
    """The publish stage as a plain function of (config, ds)."""
    from lake.spark import get_spark
    from scoring.publish import publish

    return publish(config, ds, spark=get_spark(config))


def command(ds: DsOption, config: ConfigOption = None) -> None:
    """Check `recommendations` partition DS and, only if it passes, overwrite `recommendations_latest`."""
    result = run_stage("publish", ds, config, lambda cfg: run(cfg, ds))
    console.print(
        f"recommendations_latest version {result.table_version} now holds ds={result.ds} "
        f"({result.rows:,} rows, model version {result.model_version}, "
        f"from recommendations version {result.source_version})"
    )


if __name__ == "__main__":
    typer.run(command)
