"""Entry point: featurize events up to one ds. `seqrec featurize ...` or `spark-submit jobs/featurize.py ...`."""

from __future__ import annotations

from typing import TYPE_CHECKING

import typer

from jobs._common import ConfigOption, DsOption, console, run_stage
from lake import Config

if TYPE_CHECKING:
    from featurization.featurize import FeaturizeResult


def run(config: Config, ds: str) -> FeaturizeResult:
    """The featurize stage as a plain function of (config, ds)."""
    from featurization.featurize import featurize
    from lake.spark import get_spark

    return featurize(config, ds, spark=get_spark(config))


def command(ds: DsOption, config: ConfigOption = None) -> None:
    """Clean events up to DS, extend the vocabularies and write user_sequences and train_examples for DS."""
    result = run_stage("featurize", ds, config, lambda cfg: run(cfg, ds))
    for step in result.steps:
        console.print(f"  {step.step:<20} {step.rows_in:>12,} -> {step.rows_out:>12,}  ({step.reason})")
    console.print(
        f"users {result.users:,}; vocabularies: items {result.item_vocab_size:,} (+{result.new_items:,}), "
        f"categories {result.category_vocab_size:,} (+{result.new_categories:,}); examples "
        + ", ".join(f"{split} {count:,}" for split, count in result.examples.items())
    )


if __name__ == "__main__":
    typer.run(command)
