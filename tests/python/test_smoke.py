"""The package imports and a three-node cluster delivers one message everywhere, in order."""

import evs
import evs.errors
from evs.testing import LocalCluster


def test_three_nodes_deliver_one_message_to_every_joined_handle() -> None:
    with LocalCluster(3) as cluster:
        handles = [cluster.handle(i, groups="smoke") for i in range(3)]
        # Everyone's join must be delivered before the message for all to receive it: wait
        # until each node's view holds all three handles.
        for h in handles:
            for ev in h.events(timeout=30):
                if isinstance(ev, evs.GroupChange) and len(ev.members) == 3:
                    break
        handles[0].mcast_joined(b"ping")
        for h in handles:
            msg = next(ev for ev in h.events(timeout=30) if isinstance(ev, evs.Message))
            assert (msg.sender, msg.data, msg.groups) == (1, b"ping", (b"smoke",))


def test_star_import_leaves_the_builtin_timeout_error_alone() -> None:
    ns: dict[str, object] = {}
    exec("from evs import *", ns)
    exec("from evs.errors import *", ns)
    assert "TimeoutError" not in ns  # the builtin stays what the name means
    assert "HandleClosedError" in ns and "Handle" in ns
    # evs.TimeoutError is still there, and still a builtins.TimeoutError.
    assert issubclass(evs.TimeoutError, TimeoutError) and evs.TimeoutError is not TimeoutError
    assert issubclass(evs.errors.TimeoutError, evs.EvsError)
