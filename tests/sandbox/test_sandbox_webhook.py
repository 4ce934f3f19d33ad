"""The sandbox delivers updates to a webhook the way Telegram does.

A small aiohttp receiver on an ephemeral port plays the webhook: it records what arrives
(headers and body) and answers what the test tells it to. No Django, no bot.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
from aiogram.exceptions import TelegramBadRequest, TelegramConflictError
from aiohttp import web

from supportbot.sandbox import SandboxClient, SandboxError, SandboxServer

USER = 4343
SECRET = "s3cret_token-for-the-webhook"


@dataclass
class Receiver:
    """The webhook: answers ``statuses`` in turn (then 200), records every POST."""

    statuses: list[int] = field(default_factory=list)
    received: list[dict[str, Any]] = field(default_factory=list)
    secrets: list[str | None] = field(default_factory=list)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)
    url: str = ""

    async def handle(self, request: web.Request) -> web.Response:
        self.received.append(await request.json())
        self.secrets.append(request.headers.get("X-Telegram-Bot-Api-Secret-Token"))
        self.arrived.set()
        status = self.statuses.pop(0) if self.statuses else 200
        return web.json_response({}, status=status)

    async def wait_for(self, count: int, timeout: float = 5.0) -> list[dict[str, Any]]:
        async with asyncio.timeout(timeout):
            while len(self.received) < count:
                self.arrived.clear()
                await self.arrived.wait()
        return self.received


async def _serve(receiver: Receiver, port: int = 0) -> web.AppRunner:
    app = web.Application()
    app.router.add_post("/hook", receiver.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    receiver.url = f"http://127.0.0.1:{runner.addresses[0][1]}/hook"
    return runner


@pytest.fixture
async def customer(server: SandboxServer) -> AsyncIterator[SandboxClient]:
    async with SandboxClient(server.url) as client:
        yield client


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    receiver = Receiver()
    runner = await _serve(receiver)
    try:
        yield receiver
    finally:
        await runner.cleanup()


async def test_updates_are_posted_with_the_secret_and_polling_is_refused(bot, customer, receiver):
    assert await bot.set_webhook(receiver.url, secret_token=SECRET, allowed_updates=["message"])
    sent = await customer.send_text(USER, "Hello, webhook")
    [update] = await receiver.wait_for(1)
    assert update["update_id"] == sent["update_id"]
    assert update["message"]["text"] == "Hello, webhook"
    assert receiver.secrets == [SECRET]
    with pytest.raises(TelegramConflictError, match="webhook is active"):
        await bot.get_updates(timeout=0)
    info = await bot.get_webhook_info()
    assert info.url == receiver.url and info.pending_update_count == 0 and info.allowed_updates == ["message"]


async def test_no_secret_header_without_a_secret(bot, customer, receiver):
    await bot.set_webhook(receiver.url)
    await customer.send_text(USER, "hi")
    await receiver.wait_for(1)
    assert receiver.secrets == [None]


async def test_a_failing_webhook_gets_the_update_again_until_it_answers_2xx(bot, customer, receiver):
    receiver.statuses = [500, 503]
    await bot.set_webhook(receiver.url, secret_token=SECRET)
    sent = await customer.send_text(USER, "retry me")
    received = await receiver.wait_for(3)
    assert [u["update_id"] for u in received] == [sent["update_id"]] * 3
    await asyncio.sleep(0.8)  # longer than the back-off: nothing more arrives after the 200
    assert len(receiver.received) == 3
    info = await bot.get_webhook_info()
    assert info.pending_update_count == 0
    assert info.last_error_message == "Wrong response from the webhook: 503 Service Unavailable"


async def test_an_unreachable_webhook_gets_the_update_once_it_listens(bot, customer):
    with socket.socket() as probe:  # a free port, nobody listening
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    await bot.set_webhook(f"http://127.0.0.1:{port}/hook", secret_token=SECRET)
    sent = await customer.send_text(USER, "anyone there?")
    await asyncio.sleep(0.5)
    info = await bot.get_webhook_info()
    assert info.pending_update_count == 1 and "Connection failed" in (info.last_error_message or "")
    receiver = Receiver()
    runner = await _serve(receiver, port)
    try:
        [update] = await receiver.wait_for(1, timeout=8)
        assert update["update_id"] == sent["update_id"]
    finally:
        await runner.cleanup()


async def test_delete_webhook_leaves_the_queue_to_get_updates(bot, customer):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    await bot.set_webhook(f"http://127.0.0.1:{port}/hook")
    sent = await customer.send_text(USER, "still here")
    await bot.delete_webhook()
    updates = await bot.get_updates(timeout=0)
    assert [u.update_id for u in updates] == [sent["update_id"]]


async def test_redelivery_sends_an_update_the_webhook_already_took(bot, customer, receiver, server):
    await bot.set_webhook(receiver.url, secret_token=SECRET)
    sent = await customer.send_text(USER, "once")
    await receiver.wait_for(1)
    async with aiohttp.ClientSession() as http:
        for _ in range(2):
            async with http.post(f"{server.url}/sandbox/api/updates/{sent['update_id']}/redeliver") as response:
                assert response.status == 200
        received = await receiver.wait_for(3)
        assert [u["update_id"] for u in received] == [sent["update_id"]] * 3
        assert received[0] == received[2]

        async with http.post(f"{server.url}/sandbox/api/updates/12345/redeliver") as response:
            assert response.status == 404 and "never delivered" in (await response.json())["error"]
        async with http.post(f"{server.url}/sandbox/api/updates/x1/redeliver") as response:
            assert response.status == 400 and "positive integer" in (await response.json())["error"]
        async with http.post(f"{server.url}/sandbox/api/updates/{sent['update_id']}/redeliver?copies=0") as response:
            assert response.status == 400 and "from 1 to 100" in (await response.json())["error"]
        async with http.post(f"{server.url}/sandbox/api/updates/{sent['update_id']}/redeliver?copies=4") as response:
            assert response.status == 200 and (await response.json())["queued"] == 4
        assert len(await receiver.wait_for(7)) == 7
        await bot.delete_webhook()
        async with http.post(f"{server.url}/sandbox/api/updates/{sent['update_id']}/redeliver") as response:
            assert response.status == 409 and "no webhook" in (await response.json())["error"]


async def test_set_webhook_refuses_what_telegram_refuses(bot):
    with pytest.raises(TelegramBadRequest, match="HTTPS URL must be provided"):
        await bot.set_webhook("http://bot.example.com/hook")
    with pytest.raises(TelegramBadRequest, match="ports 80, 88, 443 or 8443"):
        await bot.set_webhook("https://bot.example.com:8000/hook")
    with pytest.raises(TelegramBadRequest, match="secret token contains unallowed characters"):
        await bot.set_webhook("https://bot.example.com/hook", secret_token="not allowed!")
    with pytest.raises(TelegramBadRequest, match="max_connections"):
        await bot.set_webhook("https://bot.example.com/hook", max_connections=101)
    assert (await bot.get_webhook_info()).url == ""
    # Plain http is accepted for this machine only (the sandbox's own tests, `make run`).
    assert await bot.set_webhook("http://localhost:8443/telegram/webhook")


async def test_updates_the_webhook_did_not_ask_for_are_not_sent(bot, customer, receiver):
    await bot.set_webhook(receiver.url, allowed_updates=["callback_query"])
    await customer.send_text(USER, "a message nobody asked for")
    await asyncio.sleep(0.3)
    assert receiver.received == []
    with pytest.raises(SandboxError):  # nothing was delivered, so there is nothing to redeliver
        await customer._request("POST", "updates/1/redeliver")
