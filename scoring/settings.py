"""The ``score`` config section, read once into typed values (see scoring/defaults.yaml)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from lake import Config, ConfigError, typed_section
from lake.schemas import BEHAVIOURS

__all__ = ["DEFAULTS", "ScoreSettings"]

DEFAULTS = Path(__file__).with_name("defaults.yaml")


@dataclass(frozen=True)
class ScoreSettings:
    top_n: int
    active_window_days: int
    exclude_behaviours: tuple[str, ...]
    exclude_window_days: int
    honour_deny_list: bool
    max_per_category: int
    popular_window_days: int
    popular_behaviours: tuple[str, ...]
    users_per_batch: int
    partitions: int
    torch_threads: int
    device: Literal["auto", "cpu", "cuda"]

    @classmethod
    def from_config(cls, config: Config) -> ScoreSettings:
        settings = typed_section(cls, config, "score", DEFAULTS)
        for key in ("top_n", "active_window_days", "exclude_window_days", "popular_window_days",
                    "users_per_batch"):
            if getattr(settings, key) < 1:
                raise ConfigError(f"score.{key} must be at least 1, got {getattr(settings, key)}")
        for key in ("max_per_category", "partitions", "torch_threads"):
            if getattr(settings, key) < 0:
                raise ConfigError(f"score.{key} must be 0 (off/automatic) or more, "
                                  f"got {getattr(settings, key)}")
        for key in ("exclude_behaviours", "popular_behaviours"):
            unknown = sorted(set(getattr(settings, key)) - set(BEHAVIOURS))
            if unknown:
                raise ConfigError(f"score.{key} names {unknown}; canonical behaviours are {list(BEHAVIOURS)}")
        if not settings.popular_behaviours:
            raise ConfigError("score.popular_behaviours is empty; the popularity fallback needs at least one")
        return settings
