"""The ``evaluate`` and ``gate`` config sections (evaluation/defaults.yaml), read once into typed values."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from lake import Config, ConfigError, typed_section
from lake.schemas import BEHAVIOURS

__all__ = ["BASELINES", "DEFAULTS", "INTERACTION", "EvaluateSettings", "GateSettings"]

DEFAULTS = Path(__file__).with_name("defaults.yaml")
INTERACTION = "interaction"  # a target of any behaviour: next-interaction
BASELINES = ("popularity", "recent-items", "als")


@dataclass(frozen=True)
class EvaluateSettings:
    split: Literal["valid", "test"]
    ks: tuple[int, ...]
    negatives: int
    seed: int
    batch_size: int
    max_users: int
    length_buckets: tuple[int, ...]
    target_behaviours: tuple[str, ...]
    baselines: tuple[str, ...]
    als_rank: int
    als_iterations: int
    als_reg_param: float
    als_alpha: float
    report: bool

    @classmethod
    def from_config(cls, config: Config) -> EvaluateSettings:
        settings = typed_section(cls, config, "evaluate", DEFAULTS)
        if not settings.ks or min(settings.ks) < 1:
            raise ConfigError(f"evaluate.ks must be cutoffs >= 1, got {list(settings.ks)}")
        if settings.negatives < 0 or settings.batch_size < 1 or settings.max_users < 0:
            raise ConfigError("evaluate.negatives and evaluate.max_users must be >= 0 and evaluate.batch_size >= 1")
        unknown = sorted(set(settings.target_behaviours) - {INTERACTION, *BEHAVIOURS})
        if unknown or not settings.target_behaviours:
            raise ConfigError(f"evaluate.target_behaviours must name {INTERACTION!r} and/or canonical behaviours "
                              f"{list(BEHAVIOURS)}, got {list(settings.target_behaviours)}")
        unknown = sorted(set(settings.baselines) - set(BASELINES))
        if unknown:
            raise ConfigError(f"evaluate.baselines names {unknown}; known: {list(BASELINES)}")
        if min(settings.als_rank, settings.als_iterations) < 1 or settings.als_reg_param <= 0 or settings.als_alpha < 0:
            raise ConfigError("evaluate.als_rank and als_iterations must be >= 1, als_reg_param > 0, als_alpha >= 0")
        return settings

    @property
    def sampled_protocol(self) -> str | None:
        return f"sampled{self.negatives}" if self.negatives else None


@dataclass(frozen=True)
class GateSettings:
    metric: str
    target: str
    split: Literal["valid", "test"]
    tolerance_kind: Literal["absolute", "relative"]
    tolerance: float

    @classmethod
    def from_config(cls, config: Config) -> GateSettings:
        settings = typed_section(cls, config, "gate", DEFAULTS)
        if settings.tolerance < 0:
            raise ConfigError(f"gate.tolerance must be >= 0, got {settings.tolerance}")
        if settings.target not in {INTERACTION, *BEHAVIOURS}:
            raise ConfigError(f"gate.target must be {INTERACTION!r} or a canonical behaviour, got {settings.target!r}")
        return settings

    def margin(self, champion_value: float) -> float:
        """How far below the champion a candidate may fall and still pass."""
        return self.tolerance if self.tolerance_kind == "absolute" else self.tolerance * abs(champion_value)
