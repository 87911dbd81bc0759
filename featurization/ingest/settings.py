"""The ``ingest`` config section (featurization/defaults.yaml), read once into typed values."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from lake import Config, ConfigError, typed_section
from lake.schemas import BEHAVIOURS

__all__ = ["CANONICAL", "DEFAULTS", "IngestSettings"]

DEFAULTS = Path(__file__).resolve().parents[1] / "defaults.yaml"
# The five fields every raw row is read into, in the Taobao file's column order.
CANONICAL = ("user_id", "item_id", "category_id", "behaviour", "event_time")


@dataclass(frozen=True)
class IngestSettings:
    format: Literal["taobao", "generic"]
    columns: dict
    time_unit: Literal["unix_seconds", "unix_millis", "iso8601"]
    behaviours: dict
    time_floor: str
    single_day_source: bool
    max_quarantined_share: float
    min_kept_share: float

    @classmethod
    def from_config(cls, config: Config) -> IngestSettings:
        settings = typed_section(cls, config, "ingest", DEFAULTS)
        unknown = sorted(set(settings.behaviours.values()) - set(BEHAVIOURS))
        if unknown:
            raise ConfigError(f"ingest.behaviours maps to {unknown}; canonical behaviours are {list(BEHAVIOURS)}")
        missing = sorted(set(CANONICAL) - set(settings.columns))
        if missing:
            raise ConfigError(f"ingest.columns lacks {missing}; it maps each of {list(CANONICAL)} to a raw column")
        for key in ("max_quarantined_share", "min_kept_share"):
            if not 0.0 <= getattr(settings, key) <= 1.0:
                raise ConfigError(f"ingest.{key} must be within [0, 1], got {getattr(settings, key)}")
        try:
            dt.datetime.fromisoformat(settings.time_floor)
        except ValueError:
            raise ConfigError(f"ingest.time_floor must be an ISO date-time, got {settings.time_floor!r}") from None
        return settings

    @property
    def raw_columns(self) -> list[str]:
        """The raw column names the generic format maps (in CANONICAL order)."""
        return [self.columns[field] for field in CANONICAL]
