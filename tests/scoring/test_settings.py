"""The score and serve config sections: shipped defaults, overrides in the documented order, refused values."""

from __future__ import annotations

import pytest

from lake import ConfigError, load_config
from lake.serving import ServingRules
from scoring.settings import ScoreSettings


def test_defaults_are_documented_values():
    rules = ServingRules.from_config(load_config(environ={}))
    assert rules.top_n == 50
    assert rules.exclude_behaviours == ("purchase",)
    assert rules.excluded_behaviour_indexes == (5,)
    assert rules.max_per_category == 0
    assert ScoreSettings.from_config(load_config(environ={})).active_window_days == 30


def test_environment_overrides_the_file_and_flags_override_both(tmp_path):
    file = tmp_path / "seqrec.yaml"
    file.write_text("serve:\n  top_n: 20\nscore:\n  active_window_days: 7\n")
    config = load_config(file, environ={"SEQREC__SERVE__TOP_N": "30"})
    assert ServingRules.from_config(config).top_n == 30
    assert ScoreSettings.from_config(config).active_window_days == 7
    assert ServingRules.from_config(config.with_overrides({"serve": {"top_n": 5}})).top_n == 5


@pytest.mark.parametrize(("override", "message"), [
    ({"popular_behaviours": []}, "popularity fallback needs"),
    ({"device": "tpu"}, "score.device must be one of"),
    ({"top_k": 3}, "unknown key"),
    ({"top_n": 3}, "score.top_n moved to serve.top_n"),
])
def test_bad_score_values_are_refused_with_the_key_named(override, message):
    with pytest.raises(ConfigError, match=message):
        ScoreSettings.from_config(load_config(environ={}).with_overrides({"score": override}))


@pytest.mark.parametrize(("override", "message"), [
    ({"top_n": 0}, "serve.top_n must be at least 1"),
    ({"max_per_category": -1}, "serve.max_per_category must be 0"),
    ({"exclude_behaviours": ["buy"]}, "canonical behaviours"),
])
def test_bad_serving_rules_are_refused_with_the_key_named(override, message):
    with pytest.raises(ConfigError, match=message):
        ServingRules.from_config(load_config(environ={}).with_overrides({"serve": override}))
