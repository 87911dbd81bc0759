"""Entry points that make raw events: `seqrec generate` (synthetic, any size), `seqrec convert-sasrec` and
`seqrec convert-events` (public data sets -> the generic ingest format)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from jobs._common import ConfigOption, console, run_stage
from lake import Config

if TYPE_CHECKING:
    from sources.synthetic import GenerateResult


def run(config: Config, output: str) -> GenerateResult:
    """Write the `generate` section's synthetic events under ``output`` as Taobao-format CSV files."""
    from sources.synthetic import GenerateSettings, generate

    return generate(GenerateSettings.from_config(config), output, config.lake.timezone)


def command(
    output: Annotated[Path, typer.Option("--output", help="Folder for one CSV per day.")],
    events: Annotated[int | None, typer.Option("--events", help="Rows to write (generate.events).")] = None,
    days: Annotated[int | None, typer.Option("--days", help="Days from generate.start_ds.")] = None,
    seed: Annotated[int | None, typer.Option("--seed", help="Random seed; same seed, same files.")] = None,
    config: ConfigOption = None,
) -> None:
    """Generate synthetic Taobao-format events (power-law items, sessions, funnel, bots, malformed rows)."""
    flags = {k: v for k, v in {"events": events, "days": days, "seed": seed}.items() if v is not None}
    result = run_stage("generate", None, config,
                       lambda cfg: run(cfg.with_overrides({"generate": flags}), str(output)))
    console.print(
        f"{result.rows:,} rows = {result.normal_events:,} user events + {result.bot_events:,} from "
        f"{len(result.bot_user_ids)} bots + {result.duplicates:,} duplicates + {result.malformed:,} malformed; "
        f"{result.users:,} users, {result.items:,} items, {result.categories:,} categories"
    )
    for file in result.files:
        console.print(f"  {file}")
    console.print("next: seqrec ingest --ds <day> --source <that day's file>")


def convert_sasrec_command(
    input_path: Annotated[Path, typer.Option("--input", help="SASRec file: `user item` per line, in time order.",
                                             exists=True, dir_okay=False)],
    output: Annotated[Path, typer.Option("--output", help="Folder for events.parquet and seqrec.yaml.")],
    ds: Annotated[str, typer.Option("--ds", help="The day all converted events fall on (YYYY-MM-DD).")]
    = "2018-01-01",
    config: ConfigOption = None,
) -> None:
    """Convert a SASRec-format file into events for `seqrec ingest` (order kept, one behaviour, one day)."""
    from sources.sasrec_format import convert_sasrec

    result = run_stage("convert-sasrec", ds, config,
                       lambda cfg: convert_sasrec(input_path, output, ds, cfg.lake.timezone, base=cfg.overrides))
    console.print(f"{result.events:,} events, {result.users:,} users, {result.items:,} items -> {result.events_file}")
    console.print(f"next: seqrec ingest --ds {ds} --source {result.events_file} --config {result.config_file}")
    console.print(f"      seqrec featurize --ds {ds} --config {result.config_file}")


def convert_events_command(
    input_path: Annotated[Path, typer.Option("--input", help="Delimited file with a header: user, item, behaviour, "
                                             "Unix-seconds time per row.", exists=True, dir_okay=False)],
    output: Annotated[Path, typer.Option("--output", help="Folder for events.parquet and seqrec.yaml.")],
    heldout: Annotated[Path | None, typer.Option(
        "--heldout", help="Optional file of `user, item` rows (same column names): one later event per user.",
        exists=True, dir_okay=False)] = None,
    heldout_behaviour: Annotated[str, typer.Option(
        "--heldout-behaviour", help="Raw behaviour word of the held-out events (mapped by ingest.behaviours).")]
    = "buy",
    user: Annotated[str, typer.Option("--user-column")] = "user",
    item: Annotated[str, typer.Option("--item-column")] = "item",
    behaviour: Annotated[str, typer.Option("--behaviour-column")] = "behavior",
    time: Annotated[str, typer.Option("--time-column")] = "timestamp",
    category: Annotated[str | None, typer.Option("--category-column", help="None: every event is category 0.")]
    = None,
    delimiter: Annotated[str | None, typer.Option("--delimiter", help="Default: tab for .tsv, else comma.")] = None,
    id_offset: Annotated[int, typer.Option(
        "--id-offset", help="Added to every user and item id: 1 for files that number from 0 (ingest reads an id "
        "of 0 as missing).")] = 0,
    config: ConfigOption = None,
) -> None:
    """Convert a user/item/behaviour/timestamp file (and its held-out file) into events for `seqrec ingest`."""
    from sources.events_format import EventColumns, convert_events

    columns = EventColumns(user=user, item=item, behaviour=behaviour, time=time, category=category)
    result = run_stage("convert-events", None, config, lambda cfg: convert_events(
        input_path, output, cfg.lake.timezone, heldout_path=heldout, columns=columns,
        heldout_behaviour=heldout_behaviour, delimiter=delimiter, base=cfg.overrides, id_offset=id_offset))
    console.print(f"{result.events:,} events ({result.heldout_events:,} held out, "
                  f"{result.heldout_without_history:,} held-out rows without history left out), {result.users:,} "
                  f"users, {result.items:,} items, {result.first_ds} .. {result.last_ds} -> {result.events_file}")
    if result.non_positive_ids:
        console.print(f"[yellow]{result.non_positive_ids:,} rows have a user or item id of 0 or below: ingest will "
                      f"quarantine them (for ids numbered from 0, rerun with --id-offset 1)[/yellow]")
    console.print(f"next: seqrec ingest --ds {result.last_ds} --source {result.events_file} "
                  f"--config {result.config_file}")
    console.print(f"      seqrec featurize --ds {result.last_ds} --config {result.config_file}")


if __name__ == "__main__":
    typer.run(command)
