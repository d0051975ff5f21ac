"""evs: Extended Virtual Synchrony group messaging on a Totem single ring.

Nodes on a LAN form a ring; applications hold :class:`Handle` s on a node, join groups,
multicast, and receive messages in one agreed total order (or safe order on request), their
own messages included, together with configuration changes placed by the rules of extended
virtual synchrony. The core is Rust (``evs._evs``); its threads never call into Python.

>>> import evs
>>> with evs.Handle(groups="locks") as h:          # the process's default node
...     h.mcast_joined(b"acquire printer")
...     for ev in h.events(timeout=5):
...         print(ev)
"""

from __future__ import annotations

import os

from ._evs import (
    DEFAULT_QUEUE_CAPACITY,
    MAX_GROUP_LEN,
    MAX_GROUPS,
    ConfigChange,
    ConfigKind,
    GroupChange,
    Guarantee,
    Message,
    RingId,
    __version__,
    check_config,
)
from ._evs import keygen as _native_keygen
from ._node import (
    DISPATCH_ALL,
    DISPATCH_BLOCKING,
    DISPATCH_ONE,
    DISPATCH_ONE_NONBLOCKING,
    DispatchFlags,
    GroupName,
    Groups,
    Handle,
    Membership,
    Node,
    default_node,
)
from ._types import Event
from .errors import (
    ConfigError,
    EvsError,
    EvsOSError,
    HandleClosedError,
    InvalidGroupError,
    MessageTooLargeError,
    NodeStoppedError,
    NotJoinedError,
    OverflowedError,
    TryAgainError,
)
from .errors import TimeoutError as TimeoutError  # evs.TimeoutError; not in __all__

AGREED = Guarantee.AGREED
SAFE = Guarantee.SAFE
TRANSITIONAL = ConfigKind.TRANSITIONAL
REGULAR = ConfigKind.REGULAR


def keygen(path: str | os.PathLike[str], *, force: bool = False, length: int = 32) -> None:
    """Writes a new random authkey of ``length`` bytes (32..4096) to ``path`` with mode 0600.
    Refuses to overwrite an existing file unless ``force``.

    Raises TypeError or ValueError for a bad ``length``, and EvsOSError (an ``OSError`` whose
    ``errno`` is set, e.g. ``errno.EEXIST`` for an existing file) when the file cannot be
    written."""
    if not isinstance(length, int) or isinstance(length, bool):
        raise TypeError(f"length must be an int, not {type(length).__name__}")
    if not 32 <= length <= 4096:
        raise ValueError(f"length must be 32..=4096 bytes, got {length}")
    _native_keygen(os.fspath(path), force, length)


# evs.TimeoutError (a builtins.TimeoutError too) is left out of __all__: `from evs import *`
# must not rebind the builtin name.
__all__ = [
    "AGREED",
    "DEFAULT_QUEUE_CAPACITY",
    "DISPATCH_ALL",
    "DISPATCH_BLOCKING",
    "DISPATCH_ONE",
    "DISPATCH_ONE_NONBLOCKING",
    "MAX_GROUPS",
    "MAX_GROUP_LEN",
    "REGULAR",
    "SAFE",
    "TRANSITIONAL",
    "ConfigChange",
    "ConfigError",
    "ConfigKind",
    "DispatchFlags",
    "Event",
    "EvsError",
    "EvsOSError",
    "GroupChange",
    "GroupName",
    "Groups",
    "Guarantee",
    "Handle",
    "HandleClosedError",
    "InvalidGroupError",
    "Membership",
    "Message",
    "MessageTooLargeError",
    "Node",
    "NodeStoppedError",
    "NotJoinedError",
    "OverflowedError",
    "RingId",
    "TryAgainError",
    "__version__",
    "check_config",
    "default_node",
    "keygen",
]
