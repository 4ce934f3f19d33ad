"""``supportbot webhook``: Telegram POSTs updates here instead of the bot polling for them.

One request, in order (:class:`ClaimingRequestHandler`):

1. the ``X-Telegram-Bot-Api-Secret-Token`` header must be the configured secret, else 401
   (logged with the peer's address, never the body: it may be anyone's);
2. the body must be a JSON Telegram update, else 400 with what is wrong (logged without body);
3. the update is claimed in the database (``intake.claim``, in a worker thread): a claim store
   that fails answers 503, so Telegram delivers it again later; an update claimed before (a
   redelivery, a second worker) answers 200 and does nothing;
4. the claimed update goes to ``UpdateIntake.hand_off`` (the work runs in a tracked task, or
   wherever hand-off sends it) and Telegram gets its 200 at once.

The process runs the same parts as the polling bot (``runner.BotApp``: FAQ index refresher,
delivery loop, claim pruner...), serves ``GET /healthz`` and ``GET /metrics`` on the same port,
and on SIGTERM stops accepting, lets the updates in flight finish, then exits. Several
processes share one port (``SO_REUSEPORT``: ``supportbot webhook --workers N``); the claim makes
them safe side by side.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import os
from typing import Any

from aiogram import Bot, Dispatcher
from aiogram.types import Update
from aiogram.webhook.aiohttp_server import SimpleRequestHandler
from aiohttp import web
from django.db import Error as DatabaseError
from pydantic import ValidationError

from supportbot.bot.intake import UpdateIntake, claim, count, update_kind

log = logging.getLogger(__name__)

SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"
#: Telegram's updates are small; a text message is at most 4,096 characters.
MAX_BODY = 1024 * 1024


def _error(status: int, description: str) -> web.Response:
    return web.json_response({"ok": False, "error_code": status, "description": description}, status=status)


class ClaimingRequestHandler(SimpleRequestHandler):
    """aiogram's handler for one bot, made to claim each update before it answers Telegram."""

    def __init__(self, dispatcher: Dispatcher, bot: Bot, *, secret_token: str, intake: UpdateIntake) -> None:
        if not secret_token:
            raise ValueError("a webhook needs its secret token")
        super().__init__(dispatcher, bot, handle_in_background=True, secret_token=secret_token)
        self.intake = intake

    def verify_secret(self, telegram_secret_token: str, bot: Bot) -> bool:
        # As bytes: compare_digest refuses str with non-ASCII characters (a 500, not a 401).
        given = telegram_secret_token.encode("utf-8", "surrogateescape")
        return bool(self.secret_token) and hmac.compare_digest(given, (self.secret_token or "").encode())

    async def close(self) -> None:
        """The bot's session belongs to the process (``BotApp.stop`` closes it)."""

    async def handle(self, request: web.Request) -> web.Response:
        bot = await self.resolve_bot(request)
        if not self.verify_secret(request.headers.get(SECRET_HEADER, ""), bot):
            log.warning("webhook: refused a request from %s without the right secret token (%s)",
                        request.remote, "wrong" if SECRET_HEADER in request.headers else "missing")
            count("unauthorized")
            return _error(401, "Unauthorized")
        try:
            update = self._parse(await request.read(), bot)
        except ValueError as exc:
            log.warning("webhook: refused a request from %s: %s", request.remote, exc)
            count("bad_request")
            return _error(400, f"Bad Request: {exc}")
        kind = update_kind(update)
        try:
            claimed = await claim(bot.id, update.update_id)
        except DatabaseError as exc:
            log.error("webhook: update %s not claimed, the claim store failed (%s: %s); answered 503 "
                      "so Telegram delivers it again", update.update_id, type(exc).__name__, exc)
            count("claim_failed", kind)
            return _error(503, "Service Unavailable: the update could not be claimed, retry later")
        if not claimed:
            log.info("webhook: update %s was already claimed (process %s): answered, not handled again",
                     update.update_id, os.getpid())
            count("duplicate", kind)
            return web.json_response({})
        log.debug("webhook: update %s claimed by process %s", update.update_id, os.getpid())
        count("accepted", kind)
        self.intake.hand_off(update)
        return web.json_response({})

    @staticmethod
    def _parse(body: bytes, bot: Bot) -> Update:
        """The update in ``body``; ValueError saying what is wrong with it (never quoting it)."""
        try:
            data = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            raise ValueError("the body is not JSON") from None
        if not isinstance(data, dict):
            raise ValueError("the body is not a Telegram update (a JSON object is expected)")
        update_id = data.get("update_id")
        if not isinstance(update_id, int) or isinstance(update_id, bool) or not 0 <= update_id < 2**63:
            raise ValueError("the body is not a Telegram update (no integer update_id)")
        try:
            return Update.model_validate(data, context={"bot": bot})
        except ValidationError as exc:
            fields = sorted({".".join(str(p) for p in e["loc"]) for e in exc.errors()})[:5]
            raise ValueError(f"the body is not a valid Telegram update (bad fields: {', '.join(fields)})") from None


def build_web_app(handler: ClaimingRequestHandler, path: str) -> web.Application:
    from supportbot.ops import http as ops_http

    app = web.Application(client_max_size=MAX_BODY)
    handler.register(app, path=path)
    ops_http.add_routes(app)  # GET /healthz and /metrics, as on every listening process
    return app


class WebhookServer:
    """The bot's parts (``BotApp``, started without polling) behind an aiohttp server."""

    def __init__(self, app: Any, *, host: str, port: int, path: str, secret: str,
                 reuse_port: bool = True, drain_seconds: float = 30.0) -> None:
        """``app``: a ``runner.BotApp``; ``drain_seconds``: how long a shutdown waits for updates."""
        self.app = app
        self.host, self.port, self.path = host, port, path
        self.reuse_port = reuse_port
        self.drain_seconds = drain_seconds
        self.handler = ClaimingRequestHandler(app.dp, app.bot, secret_token=secret, intake=app.intake)
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}{self.path}"

    async def start(self) -> None:
        await self.app.start(polling=False)
        runner = web.AppRunner(build_web_app(self.handler, self.path), access_log=None,
                               handle_signals=False, shutdown_timeout=5.0)
        await runner.setup()
        site = web.TCPSite(runner, self.host, self.port, reuse_port=self.reuse_port)
        try:
            await site.start()
        except OSError:
            await runner.cleanup()
            await self.app.stop(drain_seconds=0)
            raise
        self._runner = runner
        self.port = int(runner.addresses[0][1])  # the real one when 0 asked for any
        log.info("webhook: listening on http://%s:%s%s (process %s)", self.host, self.port, self.path, os.getpid())

    async def stop(self) -> None:
        """Stop accepting (requests being answered finish), let the updates in flight finish, stop."""
        if self._runner is None:
            return
        runner, self._runner = self._runner, None
        await runner.cleanup()
        await self.app.stop(drain_seconds=self.drain_seconds)

    async def run_until(self, stop: asyncio.Event) -> None:
        await self.start()
        try:
            await stop.wait()
            log.info("webhook: stopping (%d update(s) in flight)", self.app.intake.in_flight)
        finally:
            await self.stop()
