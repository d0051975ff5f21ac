"""Exceptions of the evs package, all rooted at :class:`EvsError`.

Several also subclass the builtin a caller would naturally catch: :class:`TimeoutError` is a
``builtins.TimeoutError``, :class:`ConfigError`, :class:`InvalidGroupError` and
:class:`MessageTooLargeError` are ``ValueError`` s, :class:`EvsOSError` is an ``OSError``.
The native module raises these very classes.
"""

from __future__ import annotations

import builtins

# TimeoutError is left out: `from evs.errors import *` must not rebind the builtin name.
__all__ = [
    "ConfigError",
    "EvsError",
    "EvsOSError",
    "HandleClosedError",
    "InvalidGroupError",
    "MessageTooLargeError",
    "NodeStoppedError",
    "NotJoinedError",
    "OverflowedError",
    "TryAgainError",
]


class EvsError(Exception):
    """Base class of every error the evs package raises on purpose."""


class HandleClosedError(EvsError):
    """The handle was closed (by :meth:`evs.Handle.close`) or its node stopped."""


class OverflowedError(HandleClosedError):
    """The node closed the handle because its event queue and its delivery buffer
    (``delivery_buffer_bytes``) were full: the consumer did not keep up. Everything queued
    before the overflow was delivered first.

    ``own_messages`` is True when the handle's own undelivered messages filled them: a
    handle that multicasts to a group it joined receives its own messages too, and one that
    keeps sending without reading its events closes itself this way."""

    own_messages: bool = False


class NodeStoppedError(HandleClosedError):
    """The node was shut down (or, in the child of a ``fork()``, belongs to the parent
    process): it makes no handles and answers no queries. A ``HandleClosedError`` too, since
    every handle of a stopped node is closed."""


class NotJoinedError(EvsError):
    """``leave`` of a group that is not joined, or ``mcast_joined`` with no group joined."""


class TryAgainError(EvsError):
    """The node's send budget is used up (backpressure); retry once deliveries drain it."""


class TimeoutError(EvsError, builtins.TimeoutError):
    """A blocking call's timeout passed. Also a ``builtins.TimeoutError``."""


class ConfigError(EvsError, ValueError):
    """A configuration value (or file) was refused. ``key`` names the setting at fault
    (empty when the error is about the file as a whole)."""

    key: str = ""


class MessageTooLargeError(EvsError, ValueError):
    """The message data exceeds ``max_message_size`` (which does not count the group header
    the library adds)."""


class InvalidGroupError(EvsError, ValueError):
    """A group name is empty, longer than 32 bytes, or the list of groups is unusable."""


class EvsOSError(EvsError, OSError):
    """An operating-system error: sockets could not be bound, a key file not written, ..."""
