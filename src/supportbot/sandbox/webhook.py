"""Webhook delivery, as Telegram does it: while a webhook is set, every queued update is POSTed
to it (with ``X-Telegram-Bot-Api-Secret-Token`` when a secret was given), up to
``max_connections`` at a time, and retried with a growing back-off until the webhook answers
2xx; only then is the update gone. ``getUpdates`` answers 409 meanwhile (``botapi.py``).

For tests, ``POST /sandbox/api/updates/{update_id}/redeliver?copies=N`` sends an update the
webhook already took once more (N copies at once, on as many connections), the way Telegram
redelivers one it believes was not received.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import OrderedDict
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from aiohttp import web

from supportbot.sandbox.state import SandboxState

log = logging.getLogger(__name__)

SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"
#: Seconds before retry 1, 2, 3...; the last one repeats (Telegram's own schedule is not published).
RETRY_SECONDS = (0.2, 0.5, 1.0, 2.0, 5.0)
#: Telegram gives a webhook about this long to answer before it counts as failed.
REQUEST_TIMEOUT = 60.0
#: Delivered updates kept for the redeliver control call.
KEEP_DELIVERED = 10_000


def local_http_allowed(url: str) -> bool:
    """http:// only to this machine (the sandbox's own tests and ``make run``); Telegram wants https."""
    parts = urlsplit(url)
    return parts.scheme == "http" and parts.hostname in ("127.0.0.1", "localhost", "::1")


class WebhookPusher:
    """Pushes the sandbox's queued updates to the webhook set with ``setWebhook``."""

    def __init__(self, state: SandboxState, *, retry_seconds: tuple[float, ...] = RETRY_SECONDS,
                 timeout: float = REQUEST_TIMEOUT) -> None:
        self.state = state
        self.retry_seconds = retry_seconds
        self.timeout = timeout
        self.url = ""
        self.secret: str | None = None
        self.max_connections = 40
        self.last_error: tuple[int, str] | None = None  # (unix time, message), for getWebhookInfo
        self.posts = 0  # POSTs made, answered or not
        self.delivered: OrderedDict[int, dict[str, Any]] = OrderedDict()
        self._sending: dict[int, asyncio.Task] = {}  # id(update dict) -> its delivery
        self._runner: asyncio.Task | None = None
        self._session: aiohttp.ClientSession | None = None

    # -- set / delete -----------------------------------------------------------------
    async def start(self, url: str, *, secret: str | None, max_connections: int) -> None:
        await self.stop()
        self.url, self.secret, self.max_connections = url, secret, max_connections
        self.last_error = None
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.timeout))
        self._runner = asyncio.create_task(self._run(), name="sandbox-webhook")

    async def stop(self) -> None:
        """No webhook any more: the updates not yet taken stay queued (for getUpdates)."""
        self.url = ""
        tasks = [t for t in (self._runner, *self._sending.values()) if t is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._runner = None
        self._sending.clear()
        if self._session is not None:
            await self._session.close()
            self._session = None

    close = stop

    # -- pushing ----------------------------------------------------------------------
    def _waiting(self) -> list[dict[str, Any]]:
        return [u for u in self.state._deliverable() if id(u) not in self._sending]

    def _can_send(self) -> bool:
        return len(self._sending) < self.max_connections and bool(self._waiting())

    async def _run(self) -> None:
        changed = self.state.changed
        while self.url:
            async with changed:
                await changed.wait_for(lambda: not self.url or self._can_send())
            for update in self._waiting()[: self.max_connections - len(self._sending)]:
                self._sending[id(update)] = asyncio.create_task(self._deliver(update))

    async def _deliver(self, update: dict[str, Any]) -> None:
        attempt = 0
        try:
            while self.url:
                if await self._post(update):
                    self.state.updates = [u for u in self.state.updates if u is not update]
                    self._remember(update)
                    return
                wait = self.retry_seconds[min(attempt, len(self.retry_seconds) - 1)]
                attempt += 1
                await asyncio.sleep(wait)
        finally:
            self._sending.pop(id(update), None)
            await self.state.notify()  # a free connection: the runner may send the next one

    async def _post(self, update: dict[str, Any]) -> bool:
        headers = {SECRET_HEADER: self.secret} if self.secret else {}
        assert self._session is not None
        self.posts += 1
        try:
            async with self._session.post(self.url, json=update, headers=headers) as response:
                await response.read()
                if 200 <= response.status < 300:
                    return True
                self._failed(f"Wrong response from the webhook: {response.status} {response.reason}")
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            self._failed(f"Connection failed: {type(exc).__name__}")
        return False

    def _failed(self, message: str) -> None:
        self.last_error = (int(time.time()), message)
        log.debug("sandbox webhook: %s", message)

    def _remember(self, update: dict[str, Any]) -> None:
        self.delivered[int(update["update_id"])] = update
        while len(self.delivered) > KEEP_DELIVERED:
            self.delivered.popitem(last=False)

    # -- control API --------------------------------------------------------------------
    async def redeliver(self, request: web.Request) -> web.Response:
        """``POST /sandbox/api/updates/{update_id}/redeliver[?copies=N]``: the webhook gets it
        again, N times (1-100) at once."""
        from supportbot.sandbox.control import ControlError

        raw = request.match_info["update_id"]
        if not raw.isascii() or not raw.isdigit():
            raise ControlError(f"update_id must be a positive integer, got {raw!r}")
        copies_raw = request.query.get("copies", "1")
        if not copies_raw.isascii() or not copies_raw.isdigit() or not 1 <= int(copies_raw) <= 100:
            raise ControlError(f"copies must be a number from 1 to 100, got {copies_raw!r}")
        if not self.url:
            raise ControlError("no webhook is set: nothing is redelivered", status=409)
        update = self.delivered.get(int(raw))
        if update is None:
            raise ControlError(f"update {raw} was never delivered to the webhook", status=404)
        self.state.updates.extend(dict(update) for _ in range(int(copies_raw)))
        await self.state.notify()
        return web.json_response({"update_id": int(raw), "queued": int(copies_raw)})

    def info(self) -> dict[str, Any]:
        """The getWebhookInfo fields this side knows."""
        data: dict[str, Any] = {"max_connections": self.max_connections} if self.url else {}
        if self.url and self.last_error is not None:
            data["last_error_date"], data["last_error_message"] = self.last_error
        return data
