"""Carries the runtime's log records into :mod:`logging`.

The Rust runtime never calls Python: it appends records to a bounded queue inside the native
module. One daemon thread of this module takes them (waiting with the GIL released) and emits
each on ``logging.getLogger("evs.<module>")`` (``evs.driver``, ``evs.node``,
``evs.totem.processor``...). The threshold follows the effective level of the ``evs`` logger,
re-read on every batch, so ``logging.getLogger("evs").setLevel(logging.DEBUG)`` takes effect
within a fraction of a second. The library never adds handlers.
"""

from __future__ import annotations

import logging
import threading

from . import _evs

_lock = threading.Lock()
_thread: threading.Thread | None = None
_stop = threading.Event()


def _sync_level() -> None:
    _evs.set_log_level(logging.getLogger("evs").getEffectiveLevel())


def _pump() -> None:
    while not _stop.is_set():
        try:
            records = _evs.take_logs(0.2)
            for level, name, message in records:
                logging.getLogger(name).log(level, "%s", message)
            _sync_level()
        except Exception:  # pragma: no cover - a broken handler must not end the pump
            logging.getLogger("evs").exception("log pump")


def ensure_started() -> None:
    """Starts the pump thread once per process (again after :func:`stop`)."""
    global _thread
    with _lock:
        if _thread is not None and _thread.is_alive():
            return
        _sync_level()
        _stop.clear()
        _thread = threading.Thread(target=_pump, name="evs-log-pump", daemon=True)
        _thread.start()


def after_fork_in_child() -> None:
    """In the child of ``os.fork()``: the pump thread was not copied; forget it (the next
    node started in the child starts a new one)."""
    global _lock, _thread
    _lock = threading.Lock()
    _thread = None


def stop(timeout: float = 1.0) -> None:
    """Stops the pump thread, emitting what is queued first (at interpreter exit)."""
    global _thread
    with _lock:
        t, _thread = _thread, None
    if t is not None:
        _stop.set()
        t.join(timeout)
