"""The ``score`` config section, read once into typed values (see scoring/defaults.yaml). The rules of what
is served are the ``serve`` section (lake.serving.ServingRules)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from lake import Config, ConfigError, typed_section
from lake.schemas import BEHAVIOURS

__all__ = ["DEFAULTS", "ScoreSettings"]

DEFAULTS = Path(__file__).with_name("defaults.yaml")
MOVED_TO_SERVE = frozenset({"top_n", "exclude_behaviours", "exclude_window_days", "honour_deny_list",
                            "max_per_category"})


@dataclass(frozen=True)
class ScoreSettings:
    active_window_days: int
    popular_window_days: int
    popular_behaviours: tuple[str, ...]
    users_per_batch: int
    partitions: int
    torch_threads: int
    device: Literal["auto", "cpu", "cuda"]

    @classmethod
    def from_config(cls, config: Config) -> ScoreSettings:
        moved = sorted(set(config.overrides.get("score") or {}) & MOVED_TO_SERVE)
        if moved:
            raise ConfigError(f"score.{moved[0]} moved to serve.{moved[0]} (the rules scoring applies and "
                              f"evaluation measures under; lake/defaults.yaml): rename {moved} in your configuration")
        settings = typed_section(cls, config, "score", DEFAULTS)
        for key in ("active_window_days", "popular_window_days", "users_per_batch"):
            if getattr(settings, key) < 1:
                raise ConfigError(f"score.{key} must be at least 1, got {getattr(settings, key)}")
        for key in ("partitions", "torch_threads"):
            if getattr(settings, key) < 0:
                raise ConfigError(f"score.{key} must be 0 (off/automatic) or more, "
                                  f"got {getattr(settings, key)}")
        unknown = sorted(set(settings.popular_behaviours) - set(BEHAVIOURS))
        if unknown:
            raise ConfigError(f"score.popular_behaviours names {unknown}; canonical behaviours are {list(BEHAVIOURS)}")
        if not settings.popular_behaviours:
            raise ConfigError("score.popular_behaviours is empty; the popularity fallback needs at least one")
        return settings
