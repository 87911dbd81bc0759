"""The score config section: shipped defaults, overrides in the documented order, refused values."""

from __future__ import annotations

import pytest

from lake import ConfigError, load_config
from scoring.settings import ScoreSettings


def test_defaults_are_documented_values():
    settings = ScoreSettings.from_config(load_config(environ={}))
    assert settings.top_n == 50
    assert settings.exclude_behaviours == ("purchase",)
    assert settings.max_per_category == 0


def test_environment_overrides_the_file_and_flags_override_both(tmp_path):
    file = tmp_path / "seqrec.yaml"
    file.write_text("score:\n  top_n: 20\n  active_window_days: 7\n")
    config = load_config(file, environ={"SEQREC__SCORE__TOP_N": "30"})
    assert ScoreSettings.from_config(config).top_n == 30
    assert ScoreSettings.from_config(config).active_window_days == 7
    assert ScoreSettings.from_config(config.with_overrides({"score": {"top_n": 5}})).top_n == 5


@pytest.mark.parametrize(("override", "message"), [
    ({"top_n": 0}, "score.top_n must be at least 1"),
    ({"max_per_category": -1}, "score.max_per_category must be 0"),
    ({"exclude_behaviours": ["buy"]}, "canonical behaviours"),
    ({"popular_behaviours": []}, "popularity fallback needs"),
    ({"device": "tpu"}, "score.device must be one of"),
    ({"top_k": 3}, "unknown key"),
])
def test_bad_values_are_refused_with_the_key_named(override, message):
    with pytest.raises(ConfigError, match=message):
        ScoreSettings.from_config(load_config(environ={}).with_overrides({"score": override}))
