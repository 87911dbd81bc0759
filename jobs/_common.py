"""What every entry point shares: the --config/--ds options and one way to report success or failure."""

from __future__ import annotations

import datetime as dt
import logging
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, TypeVar

import typer
from rich.console import Console

from lake import Config, SeqrecError, load_config

console = Console(stderr=True)
T = TypeVar("T")


def _valid_ds(value: str) -> str:
    try:
        return dt.date.fromisoformat(value).isoformat()
    except ValueError:
        raise typer.BadParameter(f"{value!r} is not a date; use YYYY-MM-DD") from None


DsOption = Annotated[str, typer.Option("--ds", help="Logical date YYYY-MM-DD.", callback=_valid_ds)]
ConfigOption = Annotated[
    Path | None,
    typer.Option("--config", help="YAML overrides (else $SEQREC_CONFIG); see lake/defaults.yaml.", exists=True),
]


def _not_py4j_chatter(record: logging.LogRecord) -> bool:
    """py4j logs its retried connections on the root logger at INFO, with a traceback; keep them out."""
    return record.levelno >= logging.WARNING or "/py4j/" not in record.pathname.replace("\\", "/")


def configure_logging() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        stream=sys.stderr)
    for handler in logging.getLogger().handlers:
        handler.addFilter(_not_py4j_chatter)
    for noisy in ("py4j", "alembic", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


@contextmanager
def _timed(stage: str, ds: str | None) -> Iterator[None]:
    started = time.monotonic()
    label = f"{stage}" + (f" ds={ds}" if ds else "")
    console.print(f"[bold]{label}[/]: started")
    yield
    console.print(f"[bold green]{label}[/]: done in {time.monotonic() - started:.1f}s")


def run_stage(stage: str, ds: str | None, config_path: Path | None, body: Callable[[Config], T]) -> T:
    """Load config, run ``body``, and turn an expected failure into one clear line and exit code 2."""
    configure_logging()
    try:
        config = load_config(config_path)
        with _timed(stage, ds):
            return body(config)
    except SeqrecError as exc:
        console.print(f"[bold red]{stage} failed[/] ({type(exc).__name__}): {exc}")
        raise typer.Exit(code=2) from None
