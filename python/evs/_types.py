"""Type aliases shared by the facade and the native module's stub."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Union

from ._evs import ConfigChange, GroupChange, Message

Event = Union[Message, ConfigChange, GroupChange]
"""What a handle receives."""

SettingValue = Union[bool, int, float, str, Sequence["SettingValue"], dict[str, "SettingValue"]]
"""A configuration value as the native builder takes it."""
