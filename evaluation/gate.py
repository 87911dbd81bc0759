"""The quality gate: approve a candidate model unless it is worse than the champion. Approval is a tag on the
version; publish moves the ``champion`` alias once the candidate's recommendations are live.

Champion and candidate are ranked in one pass over the same held-out rows (``gate.split`` of the same ds)
under the served protocol, by the evaluate stage's code; both evaluations go to ``model_metrics``. The
candidate is blocked when its ``gate.metric`` falls below the champion's by more than the tolerance; the
decision's reason gives the paired difference over users and its standard error. The first model is approved.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
from dataclasses import dataclass

from evaluation.evaluate import Paired, evaluate_on_lake, load_model, model_ds, write_metrics
from evaluation.settings import EvaluateSettings, GateSettings
from lake import Config, Lake
from lake.serving import ServingRules

__all__ = ["GateDecision", "decide", "gate"]


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


def decide(paired: Paired, settings: GateSettings) -> tuple[bool, str]:
    """Approve unless ``candidate < champion - margin``; returns (approved, why)."""
    if math.isnan(paired.candidate):
        return False, f"the candidate's {settings.metric} is not a number"
    margin = settings.margin(paired.champion)
    comparison = (f"{settings.metric} {paired.candidate:.4f} vs champion {paired.champion:.4f}: difference "
                  f"{paired.difference:+.4f} (standard error {paired.std_error:.4f} over {paired.users:,} users), "
                  f"allowed drop {margin:.4f} ({settings.tolerance_kind} tolerance {settings.tolerance:g})")
    if paired.candidate < paired.champion - margin:
        return False, f"worse than the champion beyond tolerance: {comparison}"
    return True, f"not worse than the champion beyond tolerance: {comparison}"


def _compare(config: Config, lake: Lake, candidate: str, champion: str, ds: str | None,
             settings: GateSettings) -> tuple[Paired, str]:
    """Both models on the same rows in one pass; writes both evaluations to ``model_metrics``."""
    evaluate_settings = EvaluateSettings.from_config(config)
    k = int(settings.metric.partition("@")[2] or 0)
    if k and k not in evaluate_settings.ks:
        evaluate_settings = dataclasses.replace(evaluate_settings, ks=(*evaluate_settings.ks, k))
    targets = tuple(dict.fromkeys((*evaluate_settings.target_behaviours, settings.target)))
    evaluate_settings = dataclasses.replace(evaluate_settings, target_behaviours=targets)
    scorers = [load_model(config, version) for version in (candidate, champion)]
    ds = model_ds(scorers[0], ds)
    evaluations, paired = evaluate_on_lake(
        lake, scorers, ds=ds, split=settings.split, settings=evaluate_settings,
        rules=ServingRules.from_config(config), baselines=False, paired_metric=(settings.metric, settings.target))
    now = dt.datetime.now(dt.UTC)
    for evaluation in evaluations:
        write_metrics(lake, evaluation, now)
    assert paired is not None
    return paired, ds


def gate(config: Config, model: str, *, ds: str | None = None, lake: Lake | None = None) -> GateDecision:
    """Approve or block registered version ``model``. Approval is a tag on the version; ``champion`` moves
    only when publish has switched ``recommendations_latest`` to that model's output (lake/registry.py).

    Args:
        config: user configuration; the ``gate`` section is read from evaluation/defaults.yaml.
        model: the candidate's registered version number.
        ds: the day whose rows both models are ranked on (the candidate's trained_ds by default).
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
        paired, used_ds = _compare(config, lake, card.version, champion.version, ds, settings)
        candidate_value, champion_value = paired.candidate, paired.champion
        approved, reason = decide(paired, settings)
        reason = (f"{reason}; both ranked on ds {used_ds} {settings.split} rows ({settings.target} targets), "
                  f"served protocol")
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
