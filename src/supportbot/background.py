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

import contextlib
import functools
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
    """``fn`` made awaitable, run in a worker thread of the event loop's pool.

    A pool thread keeps its database connection from call to call. When a call fails on the
    database and the connection turns out dead (the server restarted, the network dropped),
    the connection is closed, so the thread's next call connects afresh instead of failing on
    the dead one for good (Django only checks at request boundaries, which a bot has none of)."""
    return sync_to_async(_dropping_dead_connections(fn), thread_sensitive=False)


def _dropping_dead_connections(fn: Callable[P, T]) -> Callable[P, T]:
    @functools.wraps(fn)
    def call(*args: P.args, **kwargs: P.kwargs) -> T:
        try:
            return fn(*args, **kwargs)
        except Exception as exc:
            from django.db import DatabaseError

            if isinstance(exc, DatabaseError):
                drop_dead_connections()
            raise
    return call


def drop_dead_connections() -> None:
    """Close this thread's database connections that failed and no longer answer."""
    from django.db import connections

    for conn in connections.all(initialized_only=True):
        if conn.connection is None or not conn.errors_occurred or conn.in_atomic_block:
            continue
        with contextlib.suppress(Exception):  # closing a dead connection may fail as well
            if not conn.is_usable():
                conn.close()
            else:
                conn.errors_occurred = False


def database_unavailable(exc: BaseException) -> bool:
    """The database could not be reached or dropped the connection: worth trying again later
    (not a rule the data broke, nor a bug)."""
    from django.db import InterfaceError, OperationalError

    return isinstance(exc, OperationalError | InterfaceError)

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
