"""Configuration: commented YAML defaults per component, merged in one documented order.

Order, later wins: a component's ``defaults.yaml`` < the user's file (``--config`` or ``$SEQREC_CONFIG``)
< environment variables ``SEQREC__<SECTION>__<KEY>`` < explicit overrides (command-line flags).
Components read their section once into a typed dataclass with :func:`typed_section`.
"""

from __future__ import annotations

import copy
import dataclasses
import os
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import yaml

from lake.errors import ConfigError

__all__ = ["Config", "LakeSettings", "SparkSettings", "load_config", "typed_section"]

LAKE_DEFAULTS = Path(__file__).with_name("defaults.yaml")
ENV_PREFIX = "SEQREC__"

T = TypeVar("T")


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except FileNotFoundError as exc:
        raise ConfigError(f"config file {path} does not exist") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {path} is not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping of sections, got {type(data).__name__}")
    return data


def _merge(base: dict[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _env_overrides(environ: Mapping[str, str]) -> dict[str, Any]:
    """SEQREC__TRAIN__EPOCHS=3 -> {"train": {"epochs": 3}}; values are parsed as YAML scalars."""
    out: dict[str, Any] = {}
    for name, raw in environ.items():
        if not name.startswith(ENV_PREFIX):
            continue
        path = [part.lower() for part in name[len(ENV_PREFIX) :].split("__") if part]
        if len(path) < 2:
            continue
        node = out
        for part in path[:-1]:
            node = node.setdefault(part, {})
        node[path[-1]] = yaml.safe_load(raw) if raw != "" else ""
    return out


@dataclass(frozen=True)
class Config:
    """User-level configuration (file + environment + flags), before component defaults are applied."""

    overrides: Mapping[str, Any] = field(default_factory=dict)
    source: str = "defaults"

    def section(self, name: str, defaults_file: Path = LAKE_DEFAULTS) -> dict[str, Any]:
        """The merged section ``name``: the component's defaults file, then the user's overrides."""
        defaults = _read_yaml(defaults_file)
        if name not in defaults:
            raise ConfigError(f"section '{name}' has no defaults in {defaults_file}")
        return _merge(defaults[name], self.overrides.get(name, {}) or {})

    def with_overrides(self, overrides: Mapping[str, Any]) -> Config:
        """A copy with ``overrides`` ({section: {key: value}}) applied on top, as command-line flags are."""
        return Config(_merge(dict(self.overrides), overrides), self.source)

    @property
    def lake(self) -> LakeSettings:
        return typed_section(LakeSettings, self, "lake")

    @property
    def spark(self) -> SparkSettings:
        return typed_section(SparkSettings, self, "spark")


def load_config(path: str | os.PathLike[str] | None = None, *, environ: Mapping[str, str] | None = None) -> Config:
    """Read the user's config file (``path`` or ``$SEQREC_CONFIG``) and ``SEQREC__*`` variables.

    Args:
        path: a YAML file of sections to override; ``None`` uses ``$SEQREC_CONFIG`` if set.
        environ: the environment to read (``os.environ`` by default).
    """
    environ = os.environ if environ is None else environ
    path = path or environ.get("SEQREC_CONFIG") or None
    overrides: dict[str, Any] = _read_yaml(Path(path)) if path else {}
    overrides = _merge(overrides, _env_overrides(environ))
    return Config(overrides, str(path) if path else "defaults")


def _coerce(value: Any, hint: Any, where: str) -> Any:
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if value is None:
            return None
        return _coerce(value, args[0], where)
    if origin is typing.Literal:
        if value not in typing.get_args(hint):
            raise ConfigError(f"{where} must be one of {list(typing.get_args(hint))}, got {value!r}")
        return value
    if origin in (list, tuple):
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{where} must be a list, got {value!r}")
        (item,) = typing.get_args(hint)[:1] or (Any,)
        return origin(_coerce(v, item, f"{where}[]") for v in value)
    if origin is dict or hint is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(f"{where} must be a mapping, got {value!r}")
        return dict(value)
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where} must be true or false, got {value!r}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where} must be an integer, got {value!r}")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{where} must be a number, got {value!r}")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where} must be a string, got {value!r}")
        return value
    return value


def typed_section(cls: type[T], config: Config, name: str, defaults_file: Path = LAKE_DEFAULTS) -> T:
    """Build dataclass ``cls`` from section ``name``; unknown or mistyped keys raise ConfigError."""
    values = config.section(name, defaults_file)
    hints = typing.get_type_hints(cls)
    fields = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(values) - fields)
    if unknown:
        raise ConfigError(f"unknown key(s) {unknown} in section '{name}'; known: {sorted(fields)}")
    missing = sorted(fields - set(values))
    if missing:
        raise ConfigError(f"section '{name}' lacks {missing} (add them to {defaults_file})")
    return cls(**{k: _coerce(v, hints[k], f"{name}.{k}") for k, v in values.items()})


@dataclass(frozen=True)
class LakeSettings:
    root: str
    spark_backend: typing.Literal["auto", "delta-rs", "delta-spark"]
    storage_options: dict
    timezone: str
    mlflow_tracking_uri: str
    mlflow_artifact_root: str
    reports_dir: str


@dataclass(frozen=True)
class SparkSettings:
    master: str
    app_name: str
    jars_dir: str
    class_archive: str
    conf: dict

    def jars(self) -> list[str]:
        """The jars of ``jars_dir``, sorted; none when it is empty or missing."""
        if not self.jars_dir:
            return []
        folder = Path(os.path.expanduser(self.jars_dir))
        return sorted(str(jar) for jar in folder.glob("*.jar")) if folder.is_dir() else []
