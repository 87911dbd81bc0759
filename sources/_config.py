"""The configuration an adapter writes beside its events: the user's overrides with the adapter's settings on top."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["beneath"]


def beneath(adapter_settings: Mapping[str, Mapping[str, Any]], base: Mapping[str, Any] | None) -> dict[str, Any]:
    """``base`` (lake root, ...) with each section of ``adapter_settings`` merged over it, key by key."""
    merged = dict(base or {})
    for section, values in adapter_settings.items():
        merged[section] = {**(merged.get(section) or {}), **values}
    return merged
