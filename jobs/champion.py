"""Entry point: which model is the champion. `seqrec champion [--ds D]`; the DAG's decide_training reads it."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import typer

from jobs._common import ConfigOption, run_stage
from jobs.evaluate import OptionalDsOption
from lake import Config

if TYPE_CHECKING:
    from lake.registry import ModelCard


def run(config: Config, ds: str | None) -> ModelCard | None:
    """The champion now, or of day ``ds``; None when there is none. A registry that cannot answer raises
    RegistryError (exit code 2): "none" is only ever said when the registry says so."""
    from lake.registry import CHAMPION, champion_as_of, find

    return champion_as_of(config, ds) if ds else find(config, alias=CHAMPION)


def command(ds: OptionalDsOption = None, config: ConfigOption = None) -> None:
    """Print the champion model as one JSON line: {"champion": "N" or null, "trained_ds": ..., "ds": ...}.
    With --ds, the champion of that day (the version publish promoted last on or before it)."""
    card = run_stage("champion", ds, config, lambda cfg: run(cfg, ds))
    typer.echo(json.dumps({"champion": card.version if card else None,
                           "trained_ds": card.meta.get("trained_ds") if card else None, "ds": ds}))


if __name__ == "__main__":
    typer.run(command)
