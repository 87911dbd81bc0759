"""Entry point: validate one ds of recommendations and republish it as recommendations_latest.
`seqrec publish ...` or `spark-submit jobs/publish.py ...`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from jobs._common import ConfigOption, DsOption, console, run_stage
from lake import Config

if TYPE_CHECKING:
    from scoring.publish import PublishResult


def run(config: Config, ds: str, *, force: bool = False, allow_unapproved: bool = False) -> PublishResult:
    """The publish stage as a plain function of (config, ds)."""
    from lake.spark import get_spark
    from scoring.publish import publish

    return publish(config, ds, spark=get_spark(config), force=force, allow_unapproved=allow_unapproved)


def command(
    ds: DsOption,
    config: ConfigOption = None,
    force: Annotated[bool, typer.Option(
        "--force", help="Publish even though recommendations_latest holds a newer ds (rolls it back).")] = False,
    allow_unapproved: Annotated[bool, typer.Option(
        "--allow-unapproved", help="Publish the output of a model the quality gate has not approved.")] = False,
) -> None:
    """Check `recommendations` partition DS and, only if it passes, overwrite `recommendations_latest`; then
    make the model that scored it the champion if the quality gate approved it."""
    result = run_stage("publish", ds, config, lambda cfg: run(cfg, ds, force=force,
                                                              allow_unapproved=allow_unapproved))
    console.print(
        f"recommendations_latest version {result.table_version} now holds ds={result.ds} "
        f"({result.rows:,} rows, model version {result.model_version}, "
        f"from recommendations version {result.source_version})"
        + (f"; model version {result.model_version} is now the champion" if result.promoted else "")
    )


if __name__ == "__main__":
    typer.run(command)
