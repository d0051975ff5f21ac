"""What ``evs.cli`` and the subcommands it hands over to (``evs._bench``) share: the error
reported as one line, and the ``--set KEY=VALUE`` pairs read as settings.

The layer under both: it imports nothing from the rest of the package, so a subcommand never
imports ``evs.cli`` back.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

__all__ = ["CliError", "settings_from_pairs"]


class CliError(Exception):
    """A failure to report as one line."""


def settings_from_pairs(pairs: Sequence[str] | None) -> dict[str, Any]:
    """``["token=1000", ...]`` (the values of repeated ``--set``) as keyword settings."""
    out: dict[str, Any] = {}
    for p in pairs or ():
        key, sep, value = p.partition("=")
        if not sep or not key:
            raise CliError(f"--set expects KEY=VALUE, got {p!r}")
        out[key.strip()] = value.strip()
    return out
