"""Is this process ready to serve? The answer behind ``GET /healthz`` and the compose health checks.

Three checks, each cheap enough to run every few seconds:

- the database answers a trivial query;
- the broker answers a ping, when ``CELERY_BROKER_URL`` is set (Redis: ``PING``; RabbitMQ and
  other kombu transports: a connection), with a short timeout so a dead broker cannot hang
  the health check itself;
- every model this process registered is loaded. A process marks a model ``loading`` before
  it loads it and ``ready`` once it answers (:func:`mark_loading`, :func:`mark_ready`); a web
  process that loads no models has none and is ready as soon as its database is.

:func:`check_health` is synchronous (it talks to the database): async callers run it through
``supportbot.background.in_worker_thread``. Error texts pass through the log redactor, so a
database or broker URL with a password in it never reaches the response.
"""

from __future__ import annotations

import contextlib
import threading
import time
from typing import Any

#: How long the broker may take to answer before it counts as down.
BROKER_TIMEOUT_SECONDS = 2.0

LOADING, READY = "loading", "ready"

_UNSET: Any = object()


class ModelRegistry:
    """The models of this one process and their state; thread-safe (models load in threads)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._states: dict[str, str] = {}

    def mark(self, name: str, state: str) -> None:
        with self._lock:
            self._states[name] = state

    def forget(self, name: str) -> None:
        with self._lock:
            self._states.pop(name, None)

    def states(self) -> dict[str, str]:
        with self._lock:
            return dict(self._states)


#: The process's one registry: the bot, the webhook and the worker mark their models here.
MODELS = ModelRegistry()


def mark_loading(name: str) -> None:
    """``name`` (e.g. "embedder", "transcriber", "llm") is being loaded: not ready yet."""
    MODELS.mark(name, LOADING)


def mark_ready(name: str) -> None:
    MODELS.mark(name, READY)


def forget(name: str) -> None:
    """``name`` is not needed to serve (it failed to load and the process goes on without it)."""
    MODELS.forget(name)


def _error(exc: BaseException) -> str:
    from supportbot.logs import redact_text

    return redact_text(f"{type(exc).__name__}: {exc}")[:300]


def check_database() -> dict[str, Any]:
    from django.db import connection

    started = time.perf_counter()
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except Exception as exc:  # noqa: BLE001 - any failure means "not reachable"; the text says which
        # A broken connection stays broken in this thread: drop it so the next check reconnects.
        with contextlib.suppress(Exception):  # closing a dead connection may fail as well
            connection.close()
        return {"ok": False, "error": _error(exc)}
    return {"ok": True, "ms": round((time.perf_counter() - started) * 1000, 1)}


def check_broker(url: str | None, *, timeout: float = BROKER_TIMEOUT_SECONDS) -> dict[str, Any]:
    if not url:
        return {"ok": True, "configured": False}
    started = time.perf_counter()
    try:
        if url.startswith(("redis://", "rediss://", "unix://")):
            import redis

            client = redis.Redis.from_url(url, socket_connect_timeout=timeout, socket_timeout=timeout)
            try:
                client.ping()
            finally:
                client.close()
        else:
            from kombu import Connection

            with Connection(url, connect_timeout=timeout) as conn:
                conn.ensure_connection(max_retries=1, timeout=timeout)
    except Exception as exc:  # noqa: BLE001 - any failure means "not reachable"
        return {"ok": False, "configured": True, "error": _error(exc)}
    return {"ok": True, "configured": True, "ms": round((time.perf_counter() - started) * 1000, 1)}


def check_models(registry: ModelRegistry | None = None) -> dict[str, Any]:
    states = (registry or MODELS).states()
    return {"ok": all(state == READY for state in states.values()), "models": states}


def configured_broker_url() -> str | None:
    """The broker this process was configured with (read once by Django's settings module)."""
    from django.conf import settings

    return getattr(settings, "SUPPORTBOT_BROKER_SECRET_URL", None)


def check_health(*, broker_url: str | None = _UNSET, registry: ModelRegistry | None = None,
                 timeout: float = BROKER_TIMEOUT_SECONDS) -> tuple[bool, dict[str, Any]]:
    """``(ok, body)``: ``body`` is JSON-able, ``{"ok": ..., "checks": {"database": ..., ...}}``."""
    url = configured_broker_url() if broker_url is _UNSET else broker_url
    checks = {
        "database": check_database(),
        "broker": check_broker(url, timeout=timeout),
        "models": check_models(registry),
    }
    ok = all(check["ok"] for check in checks.values())
    return ok, {"ok": ok, "checks": checks}
