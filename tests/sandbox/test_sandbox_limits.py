"""The sandbox enforcing Telegram's send limits (``supportbot.sandbox.limits``).

Off by default; switched on by the control API (``PUT /sandbox/api/limits``),
``SANDBOX_ENFORCE_LIMITS=1`` or ``supportbot sandbox --limits``. Over a limit a sending
method is answered with Telegram's exact 429 and delivers nothing. A real aiogram ``Bot``
talks to the sandbox over HTTP; the sandbox's clock is replaced so no test waits.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiogram import Bot
from aiogram.exceptions import TelegramRetryAfter

from supportbot.config import SANDBOX_BOT_TOKEN
from supportbot.sandbox import SandboxClient, SandboxError, SandboxServer
from supportbot.sandbox.limits import SendLimits

from .helpers import bot_for, running_sandbox

CUSTOMERS = (7101, 7102, 7103, 7104)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def server() -> AsyncIterator[SandboxServer]:
    async with running_sandbox(SANDBOX_BOT_TOKEN) as srv:
        yield srv


@pytest.fixture
def clock(server: SandboxServer) -> Clock:
    clock = Clock()
    server.state.limits.clock = clock
    return clock


@pytest.fixture
async def client(server: SandboxServer) -> AsyncIterator[SandboxClient]:
    async with SandboxClient(server.url) as sandbox:
        for customer in CUSTOMERS:
            await sandbox.send_text(customer, "hello")
        yield sandbox


@pytest.fixture
async def bot(server: SandboxServer) -> AsyncIterator[Bot]:
    async with bot_for(server, SANDBOX_BOT_TOKEN) as bot:
        yield bot


async def _texts(client: SandboxClient, chat_id: int) -> list[str]:
    return [m["text"] for m in await client.bot_messages(chat_id)]


async def test_limits_are_off_by_default(client: SandboxClient, bot: Bot, clock: Clock) -> None:
    for n in range(5):
        await bot.send_message(CUSTOMERS[0], f"quick {n}")
    assert len(await _texts(client, CUSTOMERS[0])) == 5
    assert (await client.limits())["enabled"] is False


async def test_a_second_message_to_a_chat_within_a_second_gets_telegrams_429_and_is_not_delivered(
    server: SandboxServer, client: SandboxClient, bot: Bot, clock: Clock
) -> None:
    await client.set_limits(enabled=True)
    await bot.send_message(CUSTOMERS[0], "first")
    clock.now += 0.2
    with pytest.raises(TelegramRetryAfter) as info:
        await bot.send_message(CUSTOMERS[0], "too soon")
    assert info.value.retry_after == 1
    assert await _texts(client, CUSTOMERS[0]) == ["first"]  # refused: nothing delivered
    await bot.send_message(CUSTOMERS[1], "another chat is not affected")
    clock.now += 0.7  # 0.9 s after the first: a second, less the sandbox's 0.2 s jitter allowance
    await bot.send_message(CUSTOMERS[0], "second")
    assert await _texts(client, CUSTOMERS[0]) == ["first", "second"]
    counts = await client.limits()
    assert (counts["accepted"], counts["refused"], counts["refused_by_chat"]) == (3, 1, {str(CUSTOMERS[0]): 1})


async def test_the_429_body_is_telegrams_exactly(server: SandboxServer, client: SandboxClient, clock: Clock) -> None:
    await client.set_limits(enabled=True)
    url = f"{server.url}/bot{SANDBOX_BOT_TOKEN}/sendMessage"
    async with aiohttp.ClientSession() as http:
        async with http.post(url, json={"chat_id": CUSTOMERS[0], "text": "one"}) as response:
            assert response.status == 200
        async with http.post(url, json={"chat_id": CUSTOMERS[0], "text": "two"}) as response:
            assert response.status == 429
            assert await response.json() == {
                "ok": False, "error_code": 429, "description": "Too Many Requests: retry after 1",
                "parameters": {"retry_after": 1},
            }


async def test_the_bot_wide_limit_counts_every_chat(client: SandboxClient, bot: Bot, clock: Clock) -> None:
    await client.set_limits(enabled=True, bot_per_second=3)
    for customer in CUSTOMERS[:3]:
        await bot.send_message(customer, "burst")
    with pytest.raises(TelegramRetryAfter):
        await bot.send_message(CUSTOMERS[3], "the fourth in one second")
    clock.now += 0.95
    await bot.send_message(CUSTOMERS[3], "a second later")
    assert await _texts(client, CUSTOMERS[3]) == ["a second later"]


async def test_edits_count_and_chat_actions_do_not(client: SandboxClient, bot: Bot, clock: Clock) -> None:
    await client.set_limits(enabled=True)
    sent = await bot.send_message(CUSTOMERS[0], "draft")
    await bot.send_chat_action(CUSTOMERS[0], "typing")  # not a message: never limited
    with pytest.raises(TelegramRetryAfter):
        await bot.edit_message_text("draft, edited", chat_id=CUSTOMERS[0], message_id=sent.message_id)
    clock.now += 1.0
    await bot.edit_message_text("draft, edited", chat_id=CUSTOMERS[0], message_id=sent.message_id)
    assert await _texts(client, CUSTOMERS[0]) == ["draft, edited"]


def test_a_group_gets_twenty_a_minute_at_once_then_one_every_three_seconds() -> None:
    clock = Clock()
    limits = SendLimits(enabled=True, bot_per_second=1000, clock=clock)
    for _ in range(20):
        assert limits.check("sendMessage", -100123) is None
    assert limits.check("sendMessage", -100123) == 3  # the bucket refills one send every 3 s
    assert limits.check("sendMessage", -100456) is None  # another group is not affected
    assert limits.check("getUpdates", None) is None  # only sending methods count
    clock.now += 2.9
    assert limits.check("SENDMESSAGE", -100123) is None  # Telegram ignores the method name's case
    assert limits.check("sendMessage", -100123) == 3


def test_the_bot_may_burst_to_its_limit_then_averages_it() -> None:
    clock = Clock()
    limits = SendLimits(enabled=True, clock=clock)
    burst = [limits.check("sendMessage", chat) for chat in range(1, 61)]
    # 30 at once, and the 0.2 s jitter allowance's worth (6 more at 30 a second); the rest: 429
    assert burst.count(None) in (35, 36) and set(burst[36:]) == {1}
    clock.now += 1.0
    for chat in range(100, 160):  # then a little under 30 a second, evenly: all pass
        clock.now += 1 / 29
        assert limits.check("sendMessage", chat) is None
    assert [limits.check("sendMessage", chat) for chat in range(200, 240)].count(None) < 40  # a burst again: no


async def test_the_control_api_changes_reads_and_resets_the_limits(
    server: SandboxServer, client: SandboxClient, bot: Bot, clock: Clock
) -> None:
    state = await client.set_limits(enabled=True, chat_per_second=2, group_per_minute=30)
    assert (state["enabled"], state["bot_per_second"], state["chat_per_second"], state["group_per_minute"]) == (
        True, 30.0, 2.0, 30.0)
    await bot.send_message(CUSTOMERS[0], "one")
    clock.now += 0.35
    await bot.send_message(CUSTOMERS[0], "two")  # 2 a second: fine
    with pytest.raises(TelegramRetryAfter):
        await bot.send_message(CUSTOMERS[0], "three")
    await client.clear_limits()
    state = await client.limits()
    assert (state["enabled"], state["accepted"], state["refused"]) == (False, 0, 0)
    await bot.send_message(CUSTOMERS[0], "three")  # off again


@pytest.mark.parametrize(("body", "says"), [
    ({"chat_per_second": 0}, "'chat_per_second' must be a number above 0 and at most 1000, got 0"),
    ({"bot_per_second": "fast"}, "'bot_per_second' must be a number above 0"),
    ({"group_per_minute": True}, "'group_per_minute' must be a number above 0"),
    ({"bot_per_second": 1e9}, "at most 10000"),
    ({"enabled": "yes"}, "'enabled' must be true or false, got 'yes'"),
    ({"enabled": True, "per_hour": 5}, "unknown field(s): per_hour; limits have: enabled, bot_per_second"),
    ([1, 2], "request body must be a JSON object"),
])
async def test_broken_limits_are_refused_with_the_reason_and_change_nothing(
    client: SandboxClient, body, says: str
) -> None:
    with pytest.raises(SandboxError) as info:
        await client._request("PUT", "limits", json=body)
    assert info.value.status == 400
    assert says in str(info.value)
    assert (await client.limits())["enabled"] is False


async def test_a_body_that_is_not_json_is_refused(server: SandboxServer) -> None:
    async with aiohttp.ClientSession() as http, http.put(f"{server.url}/sandbox/api/limits", data=b"{nope") as response:
        assert response.status == 400
        assert (await response.json()) == {"error": "request body must be valid JSON"}


async def test_the_setting_and_the_command_switch_the_limits_on(monkeypatch) -> None:
    from supportbot import cli
    from supportbot.config import load_settings

    assert cli.build_parser().parse_args(["sandbox", "--limits"]).limits is True
    assert cli.build_parser().parse_args(["sandbox"]).limits is False
    monkeypatch.setenv("SANDBOX_ENFORCE_LIMITS", "1")
    server = await cli._serve_sandbox(load_settings(), port=0)  # the sandbox `make run` starts
    try:
        assert server.state.limits.enabled
    finally:
        await server.close()
    monkeypatch.delenv("SANDBOX_ENFORCE_LIMITS")
    server = await cli._serve_sandbox(load_settings(), port=0)
    try:
        assert not server.state.limits.enabled
    finally:
        await server.close()
