"""Where the lake lives, told once to every engine that reads or writes it.

``lake.storage_options`` holds delta-rs' (object_store's) options, e.g. for an S3-compatible store::

    lake:
      root: s3://bucket/lake
      storage_options: {AWS_ENDPOINT_URL: http://127.0.0.1:9000, AWS_REGION: us-east-1,
                        AWS_ALLOW_HTTP: "true", conditional_put: etag}

and this module derives the same settings for Spark's s3a (Hadoop), s3fs (Petastorm, raw drops) and MLflow
(boto3).
Credentials never go in these options: every engine takes them from the environment (AWS_ACCESS_KEY_ID,
AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN) or from the machine's role.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from lake.errors import ConfigError

__all__ = ["SECRET_NAME", "fsspec_filesystem", "is_s3", "mlflow_s3_environment", "petastorm_filesystem",
           "refuse_credentials", "spark_s3_conf", "split_secrets"]

_S3_SCHEMES = ("s3", "s3a")


def is_s3(uri: str) -> bool:
    return uri.split("://", 1)[0].lower() in _S3_SCHEMES if "://" in uri else False


def _option(options: Mapping[str, object], *names: str) -> str | None:
    by_name = {str(key).upper(): str(value) for key, value in options.items()}
    return next((by_name[name] for name in names if name in by_name), None)


def _endpoint(options: Mapping[str, object]) -> str | None:
    return _option(options, "AWS_ENDPOINT_URL", "AWS_ENDPOINT", "ENDPOINT_URL", "ENDPOINT")


def _region(options: Mapping[str, object]) -> str | None:
    return _option(options, "AWS_REGION", "AWS_DEFAULT_REGION", "REGION")


def _virtual_hosted(options: Mapping[str, object]) -> bool:
    style = _option(options, "AWS_VIRTUAL_HOSTED_STYLE_REQUEST", "VIRTUAL_HOSTED_STYLE_REQUEST")
    return (style or "").lower() == "true"


def spark_s3_conf(root: str, options: Mapping[str, object]) -> dict[str, str]:
    """Spark settings for a lake on S3 (s3:// read through s3a); {} for any other root."""
    if not is_s3(root):
        return {}
    conf = {"spark.hadoop.fs.s3.impl": "org.apache.hadoop.fs.s3a.S3AFileSystem"}
    endpoint = _endpoint(options)
    if endpoint:
        conf["spark.hadoop.fs.s3a.endpoint"] = endpoint
        conf["spark.hadoop.fs.s3a.path.style.access"] = str(not _virtual_hosted(options)).lower()
        if endpoint.startswith("http://"):
            conf["spark.hadoop.fs.s3a.connection.ssl.enabled"] = "false"
    region = _region(options)
    if region:
        conf["spark.hadoop.fs.s3a.endpoint.region"] = region
    return conf


def _s3fs_client_kwargs(options: Mapping[str, object]) -> dict[str, str]:
    client: dict[str, str] = {}
    endpoint, region = _endpoint(options), _region(options)
    if endpoint:
        client["endpoint_url"] = endpoint
    if region:
        client["region_name"] = region
    return client


def fsspec_filesystem(uri: str, options: Mapping[str, object]) -> tuple[Any, str]:
    """(an fsspec filesystem, the path within it) for a local path or a URI; S3 takes the lake's store
    settings (its endpoint and region) from ``options``."""
    import fsspec

    if is_s3(uri):
        import s3fs

        return s3fs.S3FileSystem(client_kwargs=_s3fs_client_kwargs(options)), uri.split("://", 1)[1]
    return fsspec.core.url_to_fs(uri)


def petastorm_filesystem(uri: str, options: Mapping[str, object]) -> Any:
    """The filesystem Petastorm reads ``uri`` with: None for local paths (it opens those itself); for S3,
    s3fs in pyarrow's legacy wrapper, since petastorm 0.13 drives pyarrow 14's legacy ParquetDataset, which
    takes only a legacy filesystem (given s3fs alone it switches to the new API and fails)."""
    if not is_s3(uri):
        return None
    import warnings

    fs, _ = fsspec_filesystem(uri, options)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        import pyarrow.filesystem as legacy

        return legacy.S3FSWrapper(fs)


def mlflow_s3_environment(options: Mapping[str, object]) -> dict[str, str]:
    """What MLflow's S3 artifact store (boto3) needs beyond the credentials: a non-AWS endpoint."""
    endpoint = _endpoint(options)
    return {"MLFLOW_S3_ENDPOINT_URL": endpoint} if endpoint else {}


# Names that hold credentials: Spark's own redaction pattern, widened to the usual cloud variable names.
SECRET_NAME = re.compile(r"(?i)secret|password|passwd|token|access[._]?key|credential|private[._]?key")


def refuse_credentials(options: Mapping[str, object], where: str) -> None:
    """Credentials never go in configuration: config values travel on command lines, into Spark plans and
    MLflow params. Each engine reads them from the environment or the machine's role instead."""
    named = sorted(str(key) for key in options if SECRET_NAME.search(str(key)))
    if named:
        raise ConfigError(f"{where} holds credentials {named}: set them as environment variables "
                          f"(AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, ...) or use the machine's role, never in "
                          f"configuration, which travels on command lines and into logs")


def split_secrets(environ: Mapping[str, str]) -> tuple[dict[str, str], dict[str, str]]:
    """(environment without credentials, the credentials): for launchers that put the environment on a
    command line (horovodrun's gloo launcher runs each worker as `env K=V ... python ...`)."""
    public = {key: value for key, value in environ.items() if not SECRET_NAME.search(key)}
    return public, {key: value for key, value in environ.items() if key not in public}
