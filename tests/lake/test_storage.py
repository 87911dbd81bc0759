"""lake/storage.py: credentials stay out of configuration and off launchers' command lines."""

from __future__ import annotations

import pytest

from lake import ConfigError, Lake, load_config
from lake.storage import split_secrets


@pytest.mark.parametrize("key", ["AWS_SECRET_ACCESS_KEY", "aws_access_key_id", "AWS_SESSION_TOKEN",
                                 "google_service_account_key_password"])
def test_credentials_in_storage_options_are_refused(tmp_path, key: str) -> None:
    config = load_config(environ={}).with_overrides({"lake": {
        "root": str(tmp_path), "storage_options": {"AWS_REGION": "us-east-1", key: "x"}}})
    with pytest.raises(ConfigError, match=rf"lake.storage_options holds credentials \['{key}'\].*environment"):
        Lake.from_config(config)


def test_endpoints_and_regions_are_not_credentials(tmp_path) -> None:
    config = load_config(environ={}).with_overrides({"lake": {"root": str(tmp_path), "storage_options": {
        "AWS_ENDPOINT_URL": "http://127.0.0.1:9000", "AWS_REGION": "us-east-1", "conditional_put": "etag"}}})
    assert Lake.from_config(config).storage_options["conditional_put"] == "etag"


def test_split_secrets_keeps_the_environment_and_sets_credentials_apart() -> None:
    public, secret = split_secrets({"PATH": "/bin", "AWS_SECRET_ACCESS_KEY": "s", "AWS_ACCESS_KEY_ID": "i",
                                    "MLFLOW_TRACKING_TOKEN": "t", "AWS_REGION": "r", "HOROVOD_GLOO_IFACE": "lo"})
    assert public == {"PATH": "/bin", "AWS_REGION": "r", "HOROVOD_GLOO_IFACE": "lo"}
    assert secret == {"AWS_SECRET_ACCESS_KEY": "s", "AWS_ACCESS_KEY_ID": "i", "MLFLOW_TRACKING_TOKEN": "t"}
