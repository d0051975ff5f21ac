# Type stubs of the native module evs._evs (rust/evs-py). Checked by mypy.stubtest in CI.
import os
from collections.abc import Iterable, Sequence
from typing import ClassVar, Final, final

from typing_extensions import Self, disjoint_base

from evs._types import Event, SettingValue

__all__ = [
    "DEFAULT_QUEUE_CAPACITY",
    "MAX_GROUPS",
    "MAX_GROUP_LEN",
    "ConfigChange",
    "ConfigKind",
    "GroupChange",
    "Guarantee",
    "Handle",
    "Message",
    "Node",
    "RingId",
    "__version__",
    "after_fork_in_child",
    "check_config",
    "keygen",
    "set_log_level",
    "take_logs",
]

MAX_GROUP_LEN: Final[int]
MAX_GROUPS: Final[int]
DEFAULT_QUEUE_CAPACITY: Final[int]
__version__: Final[str]

@final
class Guarantee:
    AGREED: ClassVar[Guarantee]
    SAFE: ClassVar[Guarantee]
    def __int__(self) -> int: ...

@final
class ConfigKind:
    TRANSITIONAL: ClassVar[ConfigKind]
    REGULAR: ClassVar[ConfigKind]
    def __int__(self) -> int: ...

@final
class RingId:
    """Identifies a ring: its representative (lowest node id) and sequence number."""

    def __new__(cls, rep: int, seq: int) -> RingId: ...
    @property
    def rep(self) -> int:
        """Node id of the ring's representative (its lowest member)."""
    @property
    def seq(self) -> int:
        """Sequence number of the ring (rings are numbered upward; ring ids order by it
        first)."""
    def __lt__(self, other: RingId, /) -> bool: ...
    def __le__(self, other: RingId, /) -> bool: ...
    def __gt__(self, other: RingId, /) -> bool: ...
    def __ge__(self, other: RingId, /) -> bool: ...
    def __hash__(self) -> int: ...

@final
class Message:
    """A message delivered to a handle: sender, groups, payload and place in the total order."""

    def __new__(
        cls,
        sender: int,
        groups: Sequence[bytes],
        data: bytes,
        ring_id: RingId,
        seq: int,
        guarantee: Guarantee = ...,
        sender_handle: int = 0,
        index: int = 0,
    ) -> Message: ...
    @property
    def sender(self) -> int:
        """Node id of the node that multicast the message."""
    @property
    def sender_handle(self) -> int:
        """Id, on the sending node, of the handle that multicast the message."""
    @property
    def groups(self) -> tuple[bytes, ...]:
        """The groups the sender addressed, as it named them."""
    @property
    def data(self) -> bytes:
        """The payload."""
    @property
    def ring_id(self) -> RingId:
        """The ring on which the message was ordered."""
    @property
    def seq(self) -> int:
        """Sequence number, on ``ring_id``, of the packet that completed the message."""
    @property
    def index(self) -> int:
        """Position among the messages that packet completed: ``(ring_id, seq, index)`` is
        unique and ordered like the agreed order."""
    @property
    def guarantee(self) -> Guarantee:
        """``AGREED`` or ``SAFE``, as the sender asked."""
    def __len__(self) -> int: ...
    def __hash__(self) -> int: ...

@final
class ConfigChange:
    """A configuration change of the ring, delivered to every handle."""

    def __new__(
        cls,
        kind: ConfigKind,
        ring_id: RingId,
        members: Sequence[int],
        left: Sequence[int] = ...,
        joined: Sequence[int] = ...,
    ) -> ConfigChange: ...
    @property
    def kind(self) -> ConfigKind:
        """``TRANSITIONAL`` (closes the old ring) or ``REGULAR`` (opens the new one)."""
    @property
    def ring_id(self) -> RingId:
        """The ring being installed (for a transitional configuration: the ring that
        follows)."""
    @property
    def members(self) -> tuple[int, ...]:
        """Node ids of the configuration, ascending."""
    @property
    def left(self) -> tuple[int, ...]:
        """Nodes that left (transitional configurations)."""
    @property
    def joined(self) -> tuple[int, ...]:
        """Nodes that joined (regular configurations)."""
    def __hash__(self) -> int: ...

@final
class GroupChange:
    """The membership of a group this handle belongs to (or just left) changed.

    Every member sees it at the same point of the stream with the same ``members``. After a
    configuration that brought nodes from elsewhere (a merge, a start), the changes until every
    node's group state has arrived come together, one per group; ``joined`` and ``left`` are
    relative to what this node held before, so after a merge they differ by side.
    """

    def __new__(
        cls,
        group: bytes,
        members: Sequence[tuple[int, int]],
        joined: Sequence[tuple[int, int]] = ...,
        left: Sequence[tuple[int, int]] = ...,
    ) -> GroupChange: ...
    @property
    def group(self) -> bytes:
        """The group whose membership changed."""
    @property
    def members(self) -> tuple[tuple[int, int], ...]:
        """The group's members after the change, as sorted ``(node_id, handle_id)`` pairs."""
    @property
    def joined(self) -> tuple[tuple[int, int], ...]:
        """Members that joined with this change."""
    @property
    def left(self) -> tuple[tuple[int, int], ...]:
        """Members that left with this change (a leave, a closed handle or a departed
        node)."""
    def __hash__(self) -> int: ...

@final
class Node:
    def __new__(
        cls,
        config_path: str | None = None,
        settings: Sequence[tuple[str, SettingValue]] | None = None,
    ) -> Node: ...
    @property
    def node_id(self) -> int: ...
    @property
    def local_addr(self) -> tuple[str, int]: ...
    @property
    def config_toml(self) -> str: ...
    @property
    def cluster_name(self) -> str: ...
    @property
    def max_message_size(self) -> int: ...
    @property
    def is_running(self) -> bool: ...
    def membership(self) -> tuple[int, list[int]]: ...
    def ring_id(self) -> RingId: ...
    def group_view(self) -> dict[bytes, list[tuple[int, int]]]: ...
    def stats(self) -> dict[str, object]: ...
    def isolate_from(self, from_nodes: Sequence[int]) -> None: ...
    def set_receive_loss(self, percent: int) -> None: ...
    def shutdown(self) -> None: ...

_Name = str | bytes | bytearray | memoryview
_Groups = _Name | Iterable[_Name]
_Data = bytes | bytearray | memoryview

@disjoint_base
class Handle:
    def __new__(cls, node: Node, queue_capacity: int | None = None) -> Self: ...
    @property
    def id(self) -> int: ...
    @property
    def node_id(self) -> int: ...
    @property
    def joined(self) -> tuple[bytes, ...]: ...
    def join(self, groups: _Groups) -> None: ...
    def leave(self, groups: _Groups) -> None: ...
    def mcast_joined(
        self, data: _Data, guarantee: Guarantee = ..., *, timeout: float | None = None
    ) -> None: ...
    def mcast_groups(
        self,
        groups: _Groups,
        data: _Data,
        guarantee: Guarantee = ...,
        *,
        timeout: float | None = None,
    ) -> None: ...
    def _membership(self) -> tuple[int, list[int]]: ...
    def _group_membership(self, group: _Name) -> list[tuple[int, int]]: ...
    def recv(self, timeout: float | None = None) -> Event: ...
    def recv_many(
        self, max_events: int | None = None, timeout: float | None = None
    ) -> list[Event]: ...
    def try_recv(self) -> Event | None: ...
    def queue_len(self) -> int: ...
    def fileno(self) -> int: ...
    def _ended(self) -> bool: ...
    def _close(self) -> None: ...

def keygen(path: str | os.PathLike[str], force: bool = False, length: int = 32) -> None: ...
def check_config(
    config_path: str | None = None,
    settings: Sequence[tuple[str, SettingValue]] | None = None,
) -> str: ...
def set_log_level(level: int) -> None: ...
def take_logs(timeout: float) -> list[tuple[int, str, str]]: ...
def after_fork_in_child() -> None: ...
