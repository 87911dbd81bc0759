"""Entry point: ingest raw events for one ds. `seqrec ingest ...` or `spark-submit jobs/ingest.py ...`."""

from __future__ import annotations

from typing import Annotated

import typer

from jobs._common import ConfigOption, DsOption, console, run_stage
from lake import Config


def run(config: Config, ds: str, source: str):
    """The ingest stage as a plain function of (config, ds)."""
    from featurization.ingest import ingest
    from lake.spark import get_spark

    return ingest(config, ds, source, spark=get_spark(config))


def command(
    ds: DsOption,
    source: Annotated[str, typer.Option("--source", help="CSV/Parquet file or folder of raw events.")],
    config: ConfigOption = None,
) -> None:
    """Ingest raw events for DS into `events`; refused rows go to `events_quarantine` with a reason."""
    result = run_stage("ingest", ds, config, lambda cfg: run(cfg, ds, source))
    console.print(
        f"rows in {result.rows_in:,} = accepted {result.accepted:,} + other days {result.other_day:,} "
        f"+ quarantined {result.quarantined:,}"
    )
    for reason, count in sorted(result.quarantine_reasons.items(), key=lambda kv: -kv[1]):
        console.print(f"  quarantined {count:,}: {reason}")


if __name__ == "__main__":
    typer.run(command)
