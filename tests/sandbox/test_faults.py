"""Injected faults: the sandbox's Bot API fails the way Telegram and the network do.

A real aiogram ``Bot`` talks to the sandbox over HTTP and must see the exception it
would see in production; a faulted call stores nothing, and once a fault's count is
spent the next call goes through. No Django, no network, no real 30 s waits.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiogram import Bot
from aiogram.exceptions import (
    TelegramForbiddenError,
    TelegramNetworkError,
    TelegramRetryAfter,
    TelegramServerError,
)

from supportbot.config import SANDBOX_BOT_TOKEN
from supportbot.sandbox import SandboxClient, SandboxError, SandboxServer
from supportbot.sandbox.faults import DEFAULT_DELAY, FaultError

from .helpers import bot_for, running_sandbox

CUSTOMER = 5151
OTHER = 6262


@pytest.fixture
async def server() -> AsyncIterator[SandboxServer]:
    async with running_sandbox(SANDBOX_BOT_TOKEN) as srv:
        yield srv


@pytest.fixture
async def client(server: SandboxServer) -> AsyncIterator[SandboxClient]:
    async with SandboxClient(server.url) as sandbox:
        await sandbox.send_text(CUSTOMER, "hello", username="faulty_customer")
        await sandbox.send_text(OTHER, "hi")
        yield sandbox


@pytest.fixture
async def bot(server: SandboxServer) -> AsyncIterator[Bot]:
    async with bot_for(server, SANDBOX_BOT_TOKEN) as bot:
        yield bot


async def bot_texts(client: SandboxClient, chat_id: int = CUSTOMER) -> list[str]:
    return [m["text"] for m in await client.bot_messages(chat_id)]


def only_fault(server: SandboxServer) -> dict[str, Any]:
    faults = server.state.faults.to_json()
    assert len(faults) == 1, faults
    return faults[0]


# --- each kind, as the bot sees it ---------------------------------------------------

KINDS = [
    pytest.param("429", {"retry_after": 7}, TelegramRetryAfter, "retry after 7", id="429"),
    pytest.param("403", {}, TelegramForbiddenError, "bot was blocked by the user", id="403"),
    pytest.param("500", {}, TelegramServerError, "Internal Server Error", id="500"),
    pytest.param("502", {}, TelegramServerError, "Bad Gateway", id="502"),
    pytest.param("timeout", {}, TelegramNetworkError, "Request timeout error", id="timeout"),
    pytest.param("disconnect", {}, TelegramNetworkError, "Server disconnected", id="disconnect"),
    pytest.param("redirect", {}, TelegramNetworkError, "TooManyRedirects", id="redirect"),
]


@pytest.mark.parametrize(("error", "extra", "exception", "text"), KINDS)
async def test_a_faulted_send_fails_like_telegram_stores_nothing_and_the_next_one_goes_through(
    server: SandboxServer,
    client: SandboxClient,
    bot: Bot,
    error: str,
    extra: dict[str, Any],
    exception: type[Exception],
    text: str,
) -> None:
    fault = await client.inject_fault("sendMessage", error, **extra)
    assert (fault["count"], fault["hits"], fault["active"]) == (1, 0, True)

    with pytest.raises(exception, match=text) as caught:
        await bot.send_message(CUSTOMER, "refused", request_timeout=1)

    assert await bot_texts(client) == []  # the fault struck before the method ran
    spent = only_fault(server)
    assert (spent["hits"], spent["remaining"], spent["active"]) == (1, 0, False)
    if error == "429":
        assert isinstance(caught.value, TelegramRetryAfter) and caught.value.retry_after == 7
    if error == "redirect":
        assert f"{server.url}/bot" in str(caught.value)  # the message names the URL
        assert "/sendMessage" in str(caught.value)
    if error == "timeout":
        assert spent["delay"] == DEFAULT_DELAY and spent["then"] == "close"

    sent = await bot.send_message(CUSTOMER, "delivered")
    assert await bot_texts(client) == ["delivered"]
    assert sent.message_id == (await client.bot_messages(CUSTOMER))[0]["message_id"]


async def test_429_answers_telegrams_exact_body(
    server: SandboxServer, client: SandboxClient
) -> None:
    await client.inject_fault("sendMessage", 429, retry_after=3)
    async with aiohttp.ClientSession() as http, http.post(
        f"{server.url}/bot{SANDBOX_BOT_TOKEN}/sendMessage",
        json={"chat_id": CUSTOMER, "text": "x"},
    ) as resp:
        assert resp.status == 429
        assert await resp.json() == {
            "ok": False,
            "error_code": 429,
            "description": "Too Many Requests: retry after 3",
            "parameters": {"retry_after": 3},
        }


async def test_a_timeout_that_answers_late_stores_the_message_the_client_gave_up_on(
    client: SandboxClient, bot: Bot
) -> None:
    await client.inject_fault("sendMessage", "timeout", delay=1.3, then="answer")
    with pytest.raises(TelegramNetworkError, match="timeout"):
        await bot.send_message(CUSTOMER, "sent after all", request_timeout=1)
    assert await bot_texts(client) == []
    # Telegram did send it; only the answer was lost (a retry would now duplicate it).
    message = await client.wait_for_bot_message(CUSTOMER, timeout=3)
    assert message["text"] == "sent after all"


async def test_closing_the_sandbox_releases_a_held_request_at_once(
    server: SandboxServer, client: SandboxClient, bot: Bot
) -> None:
    await client.inject_fault("sendMessage", "timeout", delay=60, then="answer")
    send = asyncio.create_task(bot.send_message(CUSTOMER, "held"))
    while only_fault(server)["hits"] == 0:
        await asyncio.sleep(0.01)
    started = time.monotonic()
    await server.close()
    with pytest.raises(TelegramNetworkError):
        await asyncio.wait_for(send, 5)
    assert time.monotonic() - started < 2
    assert [m.sender for m in server.state.chats[CUSTOMER].messages.values()] == ["user"]


# --- which requests a fault hits ------------------------------------------------------


async def test_count_hits_that_many_requests_then_stops(
    server: SandboxServer, client: SandboxClient, bot: Bot
) -> None:
    await client.inject_fault("sendMessage", 500, count=2)
    for _ in range(2):
        with pytest.raises(TelegramServerError):
            await bot.send_message(CUSTOMER, "refused")
    await bot.send_message(CUSTOMER, "third")
    assert await bot_texts(client) == ["third"]
    assert only_fault(server)["hits"] == 2


async def test_count_none_fails_until_the_faults_are_cleared(
    server: SandboxServer, client: SandboxClient, bot: Bot
) -> None:
    fault = await client.inject_fault("sendMessage", 403, count=None)
    assert (fault["count"], fault["remaining"]) == (None, None)
    for _ in range(3):
        with pytest.raises(TelegramForbiddenError):
            await bot.send_message(CUSTOMER, "refused")
    listed = await client.faults()
    assert [(f["hits"], f["active"]) for f in listed] == [(3, True)]

    assert await client.clear_faults() == 1
    assert await client.faults() == []
    await bot.send_message(CUSTOMER, "unblocked")
    assert await bot_texts(client) == ["unblocked"]


async def test_a_chat_fault_hits_only_that_chat(client: SandboxClient, bot: Bot) -> None:
    await client.inject_fault("sendMessage", 429, chat_id=CUSTOMER, count=None)
    await bot.send_message(OTHER, "other chat is fine")
    with pytest.raises(TelegramRetryAfter):
        await bot.send_message(CUSTOMER, "refused")
    with pytest.raises(TelegramRetryAfter):  # the chat named by @username is the same chat
        await bot.send_message("@faulty_customer", "refused")
    assert await bot_texts(client, OTHER) == ["other chat is fine"]
    assert await bot_texts(client) == []
    assert (await client.faults())[0]["hits"] == 2


async def test_a_method_fault_leaves_other_methods_alone_and_ignores_case(
    server: SandboxServer, client: SandboxClient, bot: Bot
) -> None:
    await client.inject_fault("SENDMESSAGE", 502)
    assert await bot.send_chat_action(CUSTOMER, "typing") is True
    assert (await bot.get_me()).username == "sandbox_support_bot"
    with pytest.raises(TelegramServerError, match="Bad Gateway"):
        await bot.send_message(CUSTOMER, "refused")
    assert only_fault(server)["hits"] == 1


async def test_star_hits_every_method(
    server: SandboxServer, client: SandboxClient, bot: Bot
) -> None:
    await client.inject_fault("*", 500, count=3)
    with pytest.raises(TelegramServerError):
        await bot.get_me()
    with pytest.raises(TelegramServerError):
        await bot.send_chat_action(CUSTOMER, "typing")
    with pytest.raises(TelegramServerError):
        await bot.send_message(CUSTOMER, "refused")
    await bot.send_message(CUSTOMER, "spent")
    assert await bot_texts(client) == ["spent"]
    assert await client.actions(CUSTOMER) == []
    assert only_fault(server)["hits"] == 3


async def test_faults_are_checked_in_the_order_they_were_added(
    server: SandboxServer, client: SandboxClient, bot: Bot
) -> None:
    server.state.faults.add(method="sendMessage", error="403")
    await client.inject_fault("*", 429, retry_after=2)
    with pytest.raises(TelegramForbiddenError):
        await bot.send_message(CUSTOMER, "first")
    with pytest.raises(TelegramRetryAfter):
        await bot.send_message(CUSTOMER, "second")
    listed = await client.faults()
    assert [(f["id"], f["error"], f["hits"]) for f in listed] == [(1, "403", 1), (2, "429", 1)]


# --- the in-process API ---------------------------------------------------------------


async def test_faults_can_be_injected_in_process_and_read_back(
    server: SandboxServer, client: SandboxClient, bot: Bot
) -> None:
    fault = server.state.faults.add(method="sendMessage", error=429, retry_after=4, count=2)
    assert fault.error == "429" and fault.count == 2
    for _ in range(2):
        with pytest.raises(TelegramRetryAfter):
            await bot.send_message(CUSTOMER, "refused")
    assert [(f.hits, f.active) for f in server.state.faults] == [(2, False)]
    assert (await client.faults())[0]["retry_after"] == 4
    assert server.state.faults.clear() == 1
    assert len(server.state.faults) == 0


def test_in_process_add_refuses_what_it_cannot_inject() -> None:
    from supportbot.sandbox import SandboxState

    faults = SandboxState().faults  # no app: any well-formed method name is accepted
    assert faults.add(method="sendPhoto", error="timeout").delay == DEFAULT_DELAY
    with pytest.raises(FaultError, match="'count' must be a positive integer"):
        faults.add(method="sendMessage", error="500", count=-1)
    with pytest.raises(FaultError, match="'error' must be one of"):
        faults.add(method="sendMessage", error="418")
    assert len(faults) == 1


# --- request counts ---------------------------------------------------------------------


async def test_requests_are_counted_per_method_and_chat_faulted_ones_too(
    server: SandboxServer, client: SandboxClient, bot: Bot
) -> None:
    await client.inject_fault("sendMessage", 429, chat_id=OTHER)
    await bot.get_me()
    await bot.send_message(CUSTOMER, "one")
    await bot.send_message(CUSTOMER, "two")
    with pytest.raises(TelegramRetryAfter):
        await bot.send_message(OTHER, "refused")
    assert await client.request_counts() == {
        "methods": {"getMe": 1, "sendMessage": 3},
        "chats": {str(CUSTOMER): {"sendMessage": 2}, str(OTHER): {"sendMessage": 1}},
    }
    assert server.state.requests.by_method["sendMessage"] == 3
    await client.clear_request_counts()
    assert await client.request_counts() == {"methods": {}, "chats": {}}


async def test_a_followed_redirect_counts_as_one_request_and_one_hit(
    server: SandboxServer, client: SandboxClient, bot: Bot
) -> None:
    await client.inject_fault("getMe", "redirect")
    with pytest.raises(TelegramNetworkError, match="TooManyRedirects"):
        await bot.get_me()
    assert server.state.requests.by_method["getMe"] == 1
    assert only_fault(server)["hits"] == 1
    assert (await bot.get_me()).is_bot is True


# --- the control endpoint refuses broken input -----------------------------------------

BROKEN = [
    pytest.param(b"{not json", "must be valid JSON", id="bad-json"),
    pytest.param([], "must be a JSON object", id="not-an-object"),
    pytest.param({"method": "sendMessage", "error": "429", "colour": "red"},
                 "unknown field(s): colour", id="unknown-field"),
    pytest.param({"error": "429"}, "needs 'method'", id="no-method"),
    pytest.param({"method": "sendMessage"}, "needs 'method'", id="no-error"),
    pytest.param({"method": 42, "error": "429"}, "'method' must be a string", id="method-int"),
    pytest.param({"method": "send message", "error": "429"}, "Bot API method name",
                 id="method-malformed"),
    pytest.param({"method": "sendMesage", "error": "429"}, "does not implement",
                 id="method-unknown"),
    pytest.param({"method": "*", "error": "418"}, "'error' must be one of", id="error-unknown"),
    pytest.param({"method": "*", "error": None}, "'error' must be one of", id="error-null"),
    pytest.param({"method": "*", "error": "429", "count": -1}, "'count' must be a positive",
                 id="count-negative"),
    pytest.param({"method": "*", "error": "429", "count": 0}, "null: until cleared",
                 id="count-zero"),
    pytest.param({"method": "*", "error": "429", "count": 1.5}, "'count'", id="count-float"),
    pytest.param({"method": "*", "error": "429", "count": True}, "'count'", id="count-bool"),
    pytest.param({"method": "*", "error": "429", "chat_id": "5"}, "'chat_id' must be an integer",
                 id="chat-id-string"),
    pytest.param({"method": "*", "error": "429", "retry_after": 0}, "from 1 to 86400",
                 id="retry-after-zero"),
    pytest.param({"method": "*", "error": "429", "retry_after": 86401}, "from 1 to 86400",
                 id="retry-after-huge"),
    pytest.param({"method": "*", "error": "429", "retry_after": "5"}, "'retry_after'",
                 id="retry-after-string"),
    pytest.param({"method": "*", "error": "403", "retry_after": 5}, "only to error '429'",
                 id="retry-after-not-429"),
    pytest.param({"method": "*", "error": "timeout", "delay": 0}, "'delay' must be seconds",
                 id="delay-zero"),
    pytest.param({"method": "*", "error": "timeout", "delay": 3601}, "at most 3600",
                 id="delay-huge"),
    pytest.param({"method": "*", "error": "timeout", "then": "explode"}, "'then' must be one of",
                 id="then-unknown"),
    pytest.param({"method": "*", "error": "500", "delay": 1}, "only to error 'timeout'",
                 id="delay-not-timeout"),
]


@pytest.mark.parametrize(("body", "message"), BROKEN)
async def test_the_control_api_refuses_a_broken_fault_and_says_why(
    server: SandboxServer, client: SandboxClient, body: Any, message: str
) -> None:
    kwargs: dict[str, Any] = {"data": body} if isinstance(body, bytes) else {"json": body}
    async with aiohttp.ClientSession() as http, http.post(
        f"{server.url}/sandbox/api/faults", **kwargs
    ) as resp:
        assert resp.status == 400
        assert message in (await resp.json())["error"]
    assert await client.faults() == []


async def test_the_client_raises_the_control_apis_refusal(client: SandboxClient) -> None:
    with pytest.raises(SandboxError, match="'error' must be one of") as caught:
        await client.inject_fault("sendMessage", "teapot")
    assert caught.value.status == 400
