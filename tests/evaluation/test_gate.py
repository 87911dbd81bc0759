"""The quality gate: the first model passes, a deliberately worse one is blocked, the CLI says so. The gate
only approves; `published` stands in for publish, which moves the champion alias (tests/scoring cover it)."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.compute
import pytest
import torch
import yaml
from typer.testing import CliRunner

from evaluation.evaluate import Paired
from evaluation.gate import decide, gate
from evaluation.settings import GateSettings
from lake import Config, Lake
from tests.evaluation.test_evaluate import NEGATIVES, VOCAB, oracle_table, register_model, write_dataset


def _settings(kind: str = "absolute", tolerance: float = 0.01) -> GateSettings:
    return GateSettings(metric="ndcg@10", target="interaction", split="valid", tolerance_kind=kind,
                        tolerance=tolerance)  # type: ignore[arg-type]


def _paired(candidate: float, champion: float) -> Paired:
    return Paired("ndcg@10", candidate, champion, candidate - champion, 0.002, 1000)


def test_decide_absolute_and_relative_tolerance():
    assert decide(_paired(0.491, 0.50), _settings())[0]
    assert decide(_paired(0.60, 0.50), _settings())[0]
    approved, why = decide(_paired(0.489, 0.50), _settings())
    assert not approved and "worse than the champion beyond tolerance" in why
    assert "difference -0.0110 (standard error 0.0020 over 1,000 users)" in why
    assert decide(_paired(0.476, 0.50), _settings("relative", 0.05))[0]  # allowed drop 0.025
    assert not decide(_paired(0.474, 0.50), _settings("relative", 0.05))[0]
    assert not decide(_paired(float("nan"), 0.50), _settings())[0]


@pytest.fixture
def gate_config(config: Config) -> Config:
    return config.with_overrides({"evaluate": {"negatives": NEGATIVES}, "serve": {"top_n": 20}})


def _champion(config: Config) -> str | None:
    from lake.registry import find

    card = find(config)
    return card.version if card else None


def published(config: Config, version: str) -> None:
    """What publish does once an approved model's recommendations are live."""
    from lake.registry import promote

    promote(config, version)


def _approved(config: Config, version: str) -> bool:
    from lake.registry import find

    return find(config, version=version).approved


def test_first_model_is_approved_and_a_worse_one_blocked(gate_config: Config, lake: Lake, tmp_path: Path):
    write_dataset(lake)
    good = register_model(gate_config, tmp_path, oracle_table())
    first = gate(gate_config, good)
    assert first.approved and first.serve == good and first.previous_champion is None
    assert first.summary() == {"gate": "approved", "model_version": good, "serve": good, "champion": None}
    assert _champion(gate_config) is None and _approved(gate_config, good)  # champion moves at publish
    published(gate_config, good)

    worse = register_model(gate_config, tmp_path, oracle_table(-1.0))
    blocked = gate(gate_config, worse)
    assert not blocked.approved and not _approved(gate_config, worse)
    assert blocked.summary() == {"gate": "blocked", "model_version": worse, "serve": good, "champion": good}
    assert blocked.candidate_value == pytest.approx(0.0) and blocked.champion_value == pytest.approx(1.0)
    assert _champion(gate_config) == good


def test_an_equal_model_passes_and_takes_over(gate_config: Config, lake: Lake, tmp_path: Path):
    write_dataset(lake)
    first = register_model(gate_config, tmp_path, oracle_table())
    gate(gate_config, first)
    published(gate_config, first)
    second = register_model(gate_config, tmp_path, oracle_table())
    decision = gate(gate_config, second)
    assert decision.approved and decision.previous_champion == first and decision.serve == second
    assert _champion(gate_config) == first
    published(gate_config, second)
    assert gate(gate_config, second).reason == "it already is the champion"


def test_champion_and_candidate_are_ranked_on_identical_rows(gate_config: Config, lake: Lake, tmp_path: Path):
    write_dataset(lake)
    random_table = torch.randn(VOCAB, VOCAB, generator=torch.Generator().manual_seed(3))
    champion = register_model(gate_config, tmp_path, random_table)
    gate(gate_config, champion)
    published(gate_config, champion)
    twin = register_model(gate_config, tmp_path, random_table)  # the same model under another version
    decision = gate(gate_config, twin)
    assert decision.approved and decision.candidate_value == decision.champion_value
    assert "difference +0.0000 (standard error 0.0000 over 30 users)" in decision.reason
    rows = {version: lake.read("model_metrics", partition=version) for version in (champion, twin)}
    for table in rows.values():
        assert set(table.column("split").to_pylist()) == {"valid"}
        assert set(table.column("protocol").to_pylist()) >= {"served"}
    served = [t.filter(pa.compute.equal(t.column("protocol"), "served")).select(["metric", "k", "value", "users"])
              for t in rows.values()]
    assert served[0].sort_by([("metric", "ascending"), ("k", "ascending")]).equals(
        served[1].sort_by([("metric", "ascending"), ("k", "ascending")])), "both evaluated on the same rows"


def test_cli_prints_blocked_and_a_machine_readable_last_line(gate_config: Config, lake: Lake, tmp_path: Path):
    from jobs.cli import app

    write_dataset(lake)
    good = register_model(gate_config, tmp_path, oracle_table())
    worse = register_model(gate_config, tmp_path, oracle_table(-1.0))
    config_file = tmp_path / "seqrec.yaml"
    config_file.write_text(yaml.safe_dump(dict(gate_config.overrides)))
    runner = CliRunner()
    approved = runner.invoke(app, ["gate", "--model", good, "--config", str(config_file)])
    assert approved.exit_code == 0, approved.output
    published(gate_config, good)
    blocked = runner.invoke(app, ["gate", "--model", worse, "--config", str(config_file)])
    assert blocked.exit_code == 0, blocked.output
    lines = blocked.stdout.strip().splitlines()
    assert json.loads(lines[-1]) == {"gate": "blocked", "model_version": worse, "serve": good, "champion": good}
    assert any(line.startswith(f"BLOCKED: model {worse} is not served; model {good} stays") for line in lines)
    missing = runner.invoke(app, ["gate", "--model", "99", "--config", str(config_file)])
    assert missing.exit_code == 2


def test_a_registry_that_cannot_answer_fails_the_gate_and_promotes_nothing(gate_config: Config, lake: Lake,
                                                                           tmp_path: Path, monkeypatch):
    import mlflow
    from mlflow import MlflowClient

    from lake import RegistryError

    write_dataset(lake)
    candidate = register_model(gate_config, tmp_path, oracle_table())

    def locked(*args, **kwargs):  # what MLflow makes of SQLite's "database is locked"
        raise mlflow.exceptions.MlflowException("(sqlite3.OperationalError) database is locked",
                                                error_code="INTERNAL_ERROR")

    monkeypatch.setattr(MlflowClient, "get_model_version_by_alias", locked)
    with pytest.raises(RegistryError, match="could not answer.*database is locked"):
        gate(gate_config, candidate)
    monkeypatch.undo()
    assert _champion(gate_config) is None and not _approved(gate_config, candidate)
