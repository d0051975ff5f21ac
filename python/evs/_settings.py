"""Turning Python keyword settings into the native configuration's ``(key, value)`` pairs."""

from __future__ import annotations

import datetime
import os
from collections.abc import Mapping, Sequence
from typing import Any

from ._types import SettingValue
from .errors import ConfigError


def convert(key: str, value: Any) -> SettingValue:
    """A value the native builder accepts: durations as ``"<n>us"``, paths as strings,
    mappings and sequences converted recursively. Anything else is a ConfigError naming
    ``key``."""
    if isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, datetime.timedelta):
        micros = (value.days * 86_400 + value.seconds) * 1_000_000 + value.microseconds
        if micros < 0:
            err = ConfigError(f"'{key}': a duration must not be negative, got {value}")
            err.key = key
            raise err
        return f"{micros}us"
    if isinstance(value, os.PathLike):
        return os.fspath(value)  # type: ignore[no-any-return]
    if isinstance(value, Mapping):
        return {str(k): convert(f"{key}.{k}", v) for k, v in value.items()}
    if isinstance(value, Sequence) and not isinstance(value, (bytes, bytearray)):
        return [convert(key, v) for v in value]
    err = ConfigError(f"'{key}': unsupported value type {type(value).__name__}")
    err.key = key
    raise err


def to_pairs(settings: Mapping[str, Any]) -> list[tuple[str, SettingValue]]:
    """``settings`` as ordered ``(key, value)`` pairs; ``None`` values are left out (so that
    callers can pass optional settings through)."""
    return [(k, convert(k, v)) for k, v in settings.items() if v is not None]
