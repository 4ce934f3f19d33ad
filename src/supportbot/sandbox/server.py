"""A local, in-memory implementation of the Telegram Bot API (the "sandbox").

The unmodified aiogram bot talks to it through ``TelegramAPIServer.from_base(url)``
exactly as it would talk to ``api.telegram.org``; the customer side (the staff web
chat page, tests, benchmarks) drives it through a small JSON *control API* under
``/sandbox/api/``.

This module is the server's life cycle: the aiohttp application, its redacting
access log, starting and stopping.  The parts live next to it, one per concern,
each depending only on the ones below it::

    server -> botapi (Bot API methods), control (control API)
           -> params (Bot API parameters), state (what the sandbox remembers)
           -> formatting (parse_mode and entities), faults (injected failures) -> errors

The public names are re-exported here, so ``from supportbot.sandbox.server import ...``
keeps working.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import signal
from dataclasses import dataclass

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger

from supportbot.sandbox.botapi import BotApi
from supportbot.sandbox.control import ControlApi, control_errors
from supportbot.sandbox.errors import BotApiError
from supportbot.sandbox.formatting import (
    EntityParseError,
    ParsedText,
    parse_html,
    parse_markdown,
    parse_markdown_v2,
)
from supportbot.sandbox.forum import ForumControl
from supportbot.sandbox.limits import LimitsApi
from supportbot.sandbox.state import BOT_FIRST_NAME, BOT_USERNAME, SandboxState

logger = logging.getLogger(__name__)

__all__ = [
    "BOT_FIRST_NAME",
    "BOT_USERNAME",
    "STATE_KEY",
    "BotApiError",
    "EntityParseError",
    "ParsedText",
    "SandboxServer",
    "SandboxState",
    "create_app",
    "parse_html",
    "parse_markdown",
    "parse_markdown_v2",
    "run_forever",
    "start_server",
]

MAX_UPLOAD_SIZE = 64 * 1024 * 1024  # what the control API accepts from the "customer"

_TOKEN_RE = re.compile(r"^(\d+):[A-Za-z0-9_-]+$")


def _bot_id(token: str) -> int:
    match = _TOKEN_RE.match(token)
    if match is None:
        raise ValueError("token must look like '123456:ABC-DEF...' (digits, colon, secret)")
    return int(match.group(1))


STATE_KEY = web.AppKey("sandbox_state", SandboxState)


def create_app(state: SandboxState | None = None, *, token: str) -> web.Application:
    """Build the aiohttp application serving both the Bot API and the control API."""
    state = state if state is not None else SandboxState()
    state.set_bot(_bot_id(token))
    bot_api = BotApi(state, token)
    control = ControlApi(state)
    state.faults.known_methods = frozenset(name.lower() for name in bot_api.methods)
    app = web.Application(client_max_size=MAX_UPLOAD_SIZE, middlewares=[control_errors])
    app[STATE_KEY] = state
    app.router.add_route("*", "/bot{token}/{method}", bot_api.handle)
    app.router.add_get("/file/bot{token}/{path:.+}", bot_api.download)
    app.router.add_get("/sandbox/api/health", control.health)
    app.router.add_get("/sandbox/api/bot", control.bot_info)
    app.router.add_get("/sandbox/api/chats", control.list_chats)
    app.router.add_post("/sandbox/api/chats/{user_id}/messages", control.post_message)
    app.router.add_get("/sandbox/api/chats/{user_id}/messages", control.list_messages)
    app.router.add_post("/sandbox/api/chats/{user_id}/callback", control.press)
    app.router.add_get("/sandbox/api/chats/{user_id}/actions", control.list_actions)
    app.router.add_post("/sandbox/api/chats/{user_id}/block", control.block)
    app.router.add_get("/sandbox/api/callbacks/{callback_id}", control.callback_answer)
    app.router.add_get("/sandbox/api/faults", control.list_faults)
    app.router.add_post("/sandbox/api/faults", control.add_fault)
    app.router.add_delete("/sandbox/api/faults", control.clear_faults)
    app.router.add_get("/sandbox/api/requests", control.request_counts)
    app.router.add_delete("/sandbox/api/requests", control.clear_request_counts)
    # Forum supergroups (forum.py): the operators' group, its topics, members' messages.
    ForumControl(state).routes(app)
    # Polling: hand an update out again, as Telegram does when the bot's confirmation got lost.
    app.router.add_post("/sandbox/api/updates/{update_id}/requeue", control.requeue)
    # Webhook delivery (webhook.py): redeliver an update the webhook already took, as Telegram may.
    app.router.add_post("/sandbox/api/updates/{update_id}/redeliver", bot_api.webhook.redeliver)

    async def stop_webhook(_: web.Application) -> None:
        await bot_api.webhook.close()

    app.on_shutdown.append(stop_webhook)
    limits = LimitsApi(state.limits)  # Telegram's send limits (limits.py)
    app.router.add_get("/sandbox/api/limits", limits.get)
    app.router.add_put("/sandbox/api/limits", limits.put)
    app.router.add_delete("/sandbox/api/limits", limits.delete)

    async def accept_pollers(_: web.Application) -> None:
        state.reopen()

    async def release_pollers(_: web.Application) -> None:
        await state.close()

    app.on_startup.append(accept_pollers)
    app.on_shutdown.append(release_pollers)
    return app


class _RedactingAccessLogger(AbstractAccessLogger):
    """Access log at DEBUG that never prints the token embedded in Bot API paths."""

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        if not self.logger.isEnabledFor(logging.DEBUG):
            return
        path = re.sub(r"/bot[^/]+/", "/bot<token>/", request.path)
        self.logger.debug(
            "%s %s -> %s (%.1f ms)", request.method, path, response.status, time * 1000
        )


@dataclass
class SandboxServer:
    """A running sandbox; ``url`` is the base to give aiogram / TELEGRAM_API_URL."""

    url: str
    port: int
    state: SandboxState
    runner: web.AppRunner

    async def close(self) -> None:
        await self.state.close()
        await self.runner.cleanup()

    async def __aenter__(self) -> SandboxServer:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()


def _public_host(host: str) -> str:
    # A wildcard bind address is not something a client can connect to.
    if host in ("", "0.0.0.0"):
        return "127.0.0.1"
    if host == "::":
        return "[::1]"
    return f"[{host}]" if ":" in host else host


async def start_server(
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    token: str,
    state: SandboxState | None = None,
    enforce_limits: bool = False,
    forum_group: int | None = None,
) -> SandboxServer:
    """Start serving on ``host:port`` (0 = an ephemeral port) and return the handle.

    ``enforce_limits``: answer 429 over Telegram's send limits (``limits.py``);
    ``forum_group``: a forum supergroup with this id, the bot its administrator (the operators'
    group of ``OPERATOR_CHAT_ID``; members write into it through the control API)."""
    state = state if state is not None else SandboxState()
    if enforce_limits:
        state.limits.enabled = True
    if forum_group is not None and forum_group not in state.forum.groups:
        state.forum.create(title="Operators (sandbox)", chat_id=forum_group)
    app = create_app(state, token=token)
    runner = web.AppRunner(
        app,
        access_log_class=_RedactingAccessLogger,
        access_log=logging.getLogger(f"{__name__}.access"),
        shutdown_timeout=1.0,
    )
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    try:
        await site.start()
    except OSError:
        await runner.cleanup()
        raise
    real_port = int(runner.addresses[0][1])
    url = f"http://{_public_host(host)}:{real_port}"
    return SandboxServer(url=url, port=real_port, state=state, runner=runner)


async def _serve_until_stopped(host: str, port: int, token: str, enforce_limits: bool = False,
                               forum_group: int | None = None) -> None:
    server = await start_server(host, port, token=token, enforce_limits=enforce_limits, forum_group=forum_group)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):  # e.g. Windows: Ctrl-C still works
            loop.add_signal_handler(signum, stop.set)
    logger.info(
        "Telegram Bot API sandbox listening on %s (control API at %s/sandbox/api/)",
        server.url,
        server.url,
    )
    try:
        await stop.wait()
    finally:
        await server.close()
        logger.info("Telegram Bot API sandbox stopped")


def run_forever(host: str = "127.0.0.1", port: int = 8081, token: str = "", *, enforce_limits: bool = False,
                forum_group: int | None = None) -> None:
    """Serve until Ctrl-C / SIGTERM (the ``supportbot sandbox`` command)."""
    _bot_id(token)  # fail fast, before binding, on a malformed token
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve_until_stopped(host, port, token, enforce_limits, forum_group))
