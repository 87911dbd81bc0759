"""Entry point: the quality gate. `seqrec gate --model N` or `spark-submit jobs/gate.py --model N`."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import typer

from jobs._common import ConfigOption, run_stage
from jobs.evaluate import ModelOption, OptionalDsOption
from lake import Config

if TYPE_CHECKING:
    from evaluation.gate import GateDecision


def run(config: Config, ds: str | None, model: str) -> GateDecision:
    """The gate as a plain function of (config, ds): approve the model (publish promotes it) or block it."""
    from evaluation.gate import gate

    return gate(config, model, ds=ds)


def command(model: ModelOption, ds: OptionalDsOption = None, config: ConfigOption = None) -> None:
    """Approve --model (publish then makes it the champion) unless its served validation NDCG@10, ranked on the
    same rows as the champion's, is worse than the champion's beyond the tolerance. Exit code 0 either way;
    the last stdout line is JSON:
    {"gate": "approved"|"blocked", "model_version": N, "serve": the version to score with, "champion": M}."""
    decision = run_stage("gate", ds, config, lambda cfg: run(cfg, ds, model))
    if decision.approved:
        typer.echo(f"APPROVED: model {decision.model_version} is served from now and becomes the champion when "
                   f"publish has switched recommendations_latest to it ({decision.reason})")
    else:
        typer.echo(f"BLOCKED: model {decision.model_version} is not served; model {decision.serve} stays the "
                   f"champion ({decision.reason})")
    typer.echo(json.dumps(decision.summary()))


if __name__ == "__main__":
    typer.run(command)
