from pathlib import Path

import pytest

from lake import ConfigError, load_config
from lake.config import LakeSettings, typed_section


def test_defaults_load_typed():
    settings = load_config(environ={}).lake
    assert isinstance(settings, LakeSettings)
    assert settings.spark_backend == "delta-rs"
    assert load_config(environ={}).spark.master.startswith("local")


def test_override_order_file_then_env_then_flags(tmp_path: Path):
    user = tmp_path / "user.yaml"
    user.write_text("lake:\n  root: /from/file\n  timezone: Europe/Paris\n")
    config = load_config(user, environ={"SEQREC__LAKE__ROOT": "/from/env"})
    assert config.lake.root == "/from/env"
    assert config.lake.timezone == "Europe/Paris"
    assert config.with_overrides({"lake": {"root": "/from/flag"}}).lake.root == "/from/flag"


def test_config_file_from_environment(tmp_path: Path):
    user = tmp_path / "user.yaml"
    user.write_text("spark:\n  master: local[1]\n")
    assert load_config(environ={"SEQREC_CONFIG": str(user)}).spark.master == "local[1]"


def test_env_values_parse_as_yaml_scalars():
    config = load_config(environ={"SEQREC__INGEST__SINGLE_DAY_SOURCE": "true", "SEQREC__SPARK__CONF": "{a: 1}"})
    assert config.overrides["ingest"]["single_day_source"] is True
    assert config.section("spark")["conf"]["a"] == 1


def test_unknown_key_is_refused_by_name():
    config = load_config(environ={"SEQREC__LAKE__ROOTT": "/typo"})
    with pytest.raises(ConfigError, match="root"):
        _ = config.lake


def test_wrong_type_is_refused():
    config = load_config(environ={}).with_overrides({"lake": {"spark_backend": "parquet"}})
    with pytest.raises(ConfigError, match="lake.spark_backend must be one of"):
        _ = config.lake


def test_missing_or_invalid_file(tmp_path: Path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.yaml", environ={})
    bad = tmp_path / "bad.yaml"
    bad.write_text("- just\n- a list\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(bad, environ={})


def test_typed_section_reports_missing_keys(tmp_path: Path):
    from dataclasses import dataclass

    @dataclass(frozen=True)
    class Needs:
        root: str
        extra: int

    defaults = tmp_path / "d.yaml"
    defaults.write_text("lake:\n  root: x\n")
    with pytest.raises(ConfigError, match="lacks \\['extra'\\]"):
        typed_section(Needs, load_config(environ={}), "lake", defaults)
