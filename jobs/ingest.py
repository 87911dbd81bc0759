"""Entry point: ingest one raw drop in the run for one ds. `seqrec ingest ...` or `spark-submit jobs/ingest.py ...`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from jobs._common import ConfigOption, DsOption, console, run_stage
from lake import Config

if TYPE_CHECKING:
    from featurization.ingest import IngestResult


def run(config: Config, ds: str, source: str, *, allow_quarantine: bool = False,
        allow_shrink: bool = False) -> IngestResult:
    """The ingest stage as a plain function of (config, ds)."""
    from featurization.ingest import ingest
    from lake.spark import get_spark

    return ingest(config, ds, source, spark=get_spark(config), allow_quarantine=allow_quarantine,
                  allow_shrink=allow_shrink)


def command(
    ds: DsOption,
    source: Annotated[str, typer.Option("--source", help="The drop: a CSV/Parquet file or folder, a path or a URI.")],
    allow_quarantine: Annotated[bool, typer.Option(
        "--allow-quarantine", help="Ingest even when more than ingest.max_quarantined_share of rows are refused.",
    )] = False,
    allow_shrink: Annotated[bool, typer.Option(
        "--allow-shrink", help="Ingest even when a day would keep less than ingest.min_kept_share of its rows.",
    )] = False,
    config: ConfigOption = None,
) -> None:
    """Ingest the drop SOURCE in the run for DS: each valid row into `events` of its own day, refused rows into
    `events_quarantine` with a reason, the accounting into `deliveries` and `ingest_stats`."""
    result = run_stage("ingest", ds, config, lambda cfg: run(cfg, ds, source, allow_quarantine=allow_quarantine,
                                                             allow_shrink=allow_shrink))
    console.print(
        f"drop {result.source} ({result.drop_id}, fingerprint {result.fingerprint[:12]}): rows in {result.rows_in:,} = "
        f"accepted {result.accepted:,} + other days {result.other_day:,} + quarantined {result.quarantined:,}"
    )
    for day, rows in result.days.items():
        if day != ds:
            late = " (late: that day's ingest already ran)" if day in result.late_days else ""
            console.print(f"  to ds={day}: {rows:,}{late}")
    for reason, count in sorted(result.quarantine_reasons.items(), key=lambda kv: -kv[1]):
        console.print(f"  quarantined {count:,}: {reason}")


if __name__ == "__main__":
    typer.run(command)
