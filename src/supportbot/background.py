"""Threads for work that must stay off the event loop, and work that must not slow it.

``in_worker_thread``: a sync call (the ORM, a file) made awaitable in a worker thread.
Never asgiref's default ``thread_sensitive=True``: that runs every such call on ONE
shared thread, where a single slow call (a long query, a model loading) holds up every
customer's database work.

The rest runs work at a lower CPU priority.

Linux gives every thread its own nice value, so one thread (joining a 1.1 GB model
from its pip parts, say) can step back without slowing the threads that answer
customers. The CPU and I/O schedulers then serve the event loop, the embedding and
the database first; the background work takes what is left. Elsewhere (no per-thread
priority) the work simply runs as it is.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Awaitable, Callable
from typing import ParamSpec, TypeVar

from asgiref.sync import sync_to_async

log = logging.getLogger(__name__)

T = TypeVar("T")
P = ParamSpec("P")


def in_worker_thread(fn: Callable[P, T]) -> Callable[P, Awaitable[T]]:
    """``fn`` made awaitable, run in a worker thread of the event loop's pool."""
    return sync_to_async(fn, thread_sensitive=False)

#: How far background work steps back (nice 0 -> 10).
BACKGROUND_NICENESS = 10


def lower_this_thread(by: int = BACKGROUND_NICENESS) -> bool:
    """Lower the calling thread's CPU priority (for good: raising it again needs root)."""
    try:
        tid = threading.get_native_id()
        os.setpriority(os.PRIO_PROCESS, tid, min(19, os.getpriority(os.PRIO_PROCESS, tid) + by))
        return True
    except (AttributeError, OSError):  # not Linux, or not allowed: run as it is
        return False


def run_in_background(fn: Callable[..., T], *args, name: str = "background", **kwargs) -> T:
    """Call ``fn`` in a new low-priority thread and wait for its result (or exception).

    For a one-off job inside a thread that must keep its own priority afterwards
    (the model join runs here; the model then loads and runs at normal priority).
    """
    box: dict[str, object] = {}

    def work() -> None:
        lower_this_thread()
        try:
            box["result"] = fn(*args, **kwargs)
        except BaseException as exc:  # noqa: BLE001 - handed to the caller
            box["error"] = exc

    thread = threading.Thread(target=work, name=name, daemon=True)
    thread.start()
    thread.join()
    if "error" in box:
        raise box["error"]  # type: ignore[misc]
    return box["result"]  # type: ignore[return-value]
