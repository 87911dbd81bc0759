"""The `train:` section: defaults load, overrides apply, impossible values are refused."""

from __future__ import annotations

import pytest

from lake import Config, ConfigError
from training.models import MODEL_KINDS, step_features
from training.settings import TrainSettings


def test_defaults_are_a_small_two_block_sasrec(config: Config) -> None:
    settings = TrainSettings.from_config(config)
    assert (settings.model_type, settings.num_layers, settings.hidden_size, settings.max_len) == ("sasrec", 2, 64, 50)
    assert settings.loss == "full_softmax" and settings.reader_pool in ("dummy", "process")
    assert step_features(settings) == {"item": True, "position": True, "behaviour": True, "category": True,
                                   "time_gap": True}


@pytest.mark.parametrize(("override", "message"), [
    ({"hidden_size": 30, "num_heads": 4}, "divisible"),
    ({"epochs": 0}, "at least 1"),
    ({"dropout": 1.0}, "dropout"),
    ({"model_type": "bert4rec"}, "must be one of"),
    ({"reader_pool": "thread"}, "must be one of"),
    ({"learning_rate": 0}, "learning_rate"),
    ({"max_steps_per_epoch": -1}, "max_steps_per_epoch"),
    ({"valid_max_users": -1}, "valid_max_users"),
])
def test_impossible_settings_are_refused(config: Config, override: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        TrainSettings.from_config(config.with_overrides({"train": override}))


def test_popularity_uses_no_side_features(config: Config) -> None:
    settings = TrainSettings.from_config(config.with_overrides({"train": {"model_type": "popularity"}}))
    assert not any(value for name, value in step_features(settings).items() if name != "item")


def test_every_model_type_the_settings_accept_has_a_kind() -> None:
    from typing import get_args

    from training.settings import ModelType

    assert set(get_args(ModelType)) == set(MODEL_KINDS)
