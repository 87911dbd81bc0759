"""The quality gate: approve a candidate model unless it is worse than the champion. Approval is a tag on the
version; publish moves the ``champion`` alias once the candidate's recommendations are live.

The candidate is blocked when its metric (NDCG@10 by default) falls below the current champion's by more
than the configured tolerance. With ``gate.source: evaluate`` both models are scored now on the validation
rows of the same ds (same users, same sampled negatives); with ``gate.source: meta`` the gate compares the
``valid_<metric>`` that each model's training recorded in its registry meta. The first model is approved.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Literal

from lake import Config, Lake, ValidationError, typed_section
from training.evaluate import DEFAULTS, FULL, EvaluateSettings

__all__ = ["GateDecision", "GateSettings", "decide", "gate"]


@dataclass(frozen=True)
class GateSettings:
    metric: str
    source: Literal["evaluate", "meta"]
    protocol: Literal["full", "sampled"]
    split: Literal["valid", "test"]
    tolerance_kind: Literal["absolute", "relative"]
    tolerance: float

    @classmethod
    def from_config(cls, config: Config) -> GateSettings:
        settings = typed_section(cls, config, "gate", DEFAULTS)
        if settings.tolerance < 0:
            from lake import ConfigError

            raise ConfigError(f"gate.tolerance must be >= 0, got {settings.tolerance}")
        return settings

    def margin(self, champion_value: float) -> float:
        """How far below the champion a candidate may fall and still pass."""
        return self.tolerance if self.tolerance_kind == "absolute" else self.tolerance * abs(champion_value)


@dataclass(frozen=True)
class GateDecision:
    approved: bool
    model_version: str
    serve: str  # the version to score with: the approved candidate, else the champion
    previous_champion: str | None
    metric: str
    candidate_value: float | None
    champion_value: float | None
    reason: str

    @property
    def verdict(self) -> str:
        return "approved" if self.approved else "blocked"

    def summary(self) -> dict[str, str | None]:
        """What the CLI prints last, as one JSON line (the DAG's XCom)."""
        return {"gate": self.verdict, "model_version": self.model_version, "serve": self.serve,
                "champion": self.previous_champion}


def decide(candidate_value: float, champion_value: float, settings: GateSettings) -> tuple[bool, str]:
    """Approve unless ``candidate_value < champion_value - margin``; returns (approved, why)."""
    if math.isnan(candidate_value):
        return False, f"the candidate's {settings.metric} is not a number"
    margin = settings.margin(champion_value)
    floor = champion_value - margin
    comparison = (f"{settings.metric} {candidate_value:.4f} vs champion {champion_value:.4f}, "
                  f"allowed drop {margin:.4f} ({settings.tolerance_kind} tolerance {settings.tolerance:g})")
    if candidate_value < floor:
        return False, f"worse than the champion beyond tolerance: {comparison}"
    return True, f"not worse than the champion beyond tolerance: {comparison}"


def _meta_value(meta: dict, settings: GateSettings, version: str) -> float:
    key = f"valid_{settings.metric}"
    if meta.get(key) is None:
        raise ValidationError(f"model {version} records no '{key}' in its meta; gate it with "
                              f"gate.source=evaluate (SEQREC__GATE__SOURCE=evaluate) instead")
    return float(meta[key])


def _evaluated_values(config: Config, lake: Lake, candidate: str, champion: str, ds: str | None,
                      settings: GateSettings) -> tuple[float, float, str]:
    """Both models' metric on the same ds's ``settings.split`` rows; returns (candidate, champion, ds)."""
    from training.evaluate import evaluate_on_lake, load_model, model_ds

    evaluate_settings = EvaluateSettings.from_config(config)
    protocol = FULL if settings.protocol == "full" else evaluate_settings.sampled_protocol
    k = int(settings.metric.partition("@")[2] or 0)
    if k and k not in evaluate_settings.ks:
        evaluate_settings = dataclasses.replace(evaluate_settings, ks=(*evaluate_settings.ks, k))
    values = []
    for version in (candidate, champion):
        scorer = load_model(config, version)
        if ds is None:
            ds = model_ds(scorer, None)
        evaluation = evaluate_on_lake(config, lake, scorer, ds=ds, split=settings.split,
                                      settings=evaluate_settings, protocols=(protocol,))
        metrics = evaluation.protocols[protocol].metrics
        if settings.metric not in metrics:
            raise ValidationError(f"gate.metric {settings.metric!r} is not computed; choose one of {sorted(metrics)}")
        values.append(metrics[settings.metric])
    assert ds is not None
    return values[0], values[1], ds


def gate(config: Config, model: str, *, ds: str | None = None, lake: Lake | None = None) -> GateDecision:
    """Approve or block registered version ``model``. Approval is a tag on the version; ``champion`` moves
    only when publish has switched ``recommendations_latest`` to that model's output (lake/registry.py).

    Args:
        config: user configuration; the ``gate`` section is read from training/evaluate_defaults.yaml.
        model: the candidate's registered version number.
        ds: with ``gate.source: evaluate``, the day whose validation rows both models are scored on
            (the candidate's trained_ds by default).
    Returns:
        The decision. Nothing is decided on a registry that cannot answer: a RegistryError propagates.
    """
    from lake import ModelNotFoundError
    from lake.registry import CHAMPION, approve, find

    settings = GateSettings.from_config(config)
    lake = lake or Lake.from_config(config)
    card = find(config, version=model)
    if card is None:
        raise ModelNotFoundError(f"model version {model} is not registered; `seqrec train` prints the version")
    champion = find(config, alias=CHAMPION)
    candidate_value = champion_value = None
    if champion is None:
        approved, reason = True, "there is no champion yet: the first model is approved"
    elif champion.version == card.version:
        approved, reason = True, "it already is the champion"
    else:
        if settings.source == "meta":
            candidate_value = _meta_value(card.meta, settings, card.version)
            champion_value = _meta_value(champion.meta, settings, champion.version)
            where = "as recorded by training"
        else:
            candidate_value, champion_value, used_ds = _evaluated_values(
                config, lake, card.version, champion.version, ds, settings)
            where = f"both scored on ds {used_ds} {settings.split} rows, {settings.protocol} protocol"
        approved, reason = decide(candidate_value, champion_value, settings)
        reason = f"{reason}; {where}"
    if approved and (champion is None or champion.version != card.version):
        approve(config, card.version, ds or str(card.meta.get("trained_ds", "")))
    return GateDecision(
        approved=approved,
        model_version=card.version,
        serve=card.version if approved else champion.version,  # type: ignore[union-attr]
        previous_champion=champion.version if champion else None,
        metric=settings.metric,
        candidate_value=candidate_value,
        champion_value=champion_value,
        reason=reason,
    )
