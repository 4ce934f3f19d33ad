"""Telegram's send limits in the delivery path (``supportbot.bot.limits``).

Three layers:

- the limiter on a virtual clock (fast): pacing per chat, per group and per bot, no
  head-of-line blocking, order within a chat, 429 pauses (one chat; several chats: the
  whole bot), slots too far away deferred;
- the budgets shared through the real Redis on 127.0.0.1:6379 (two limiters = two
  processes of one bot), and the fallback to in-process budgets when Redis is unreachable;
- the settings (broken values: a clear error);
- the real bot over HTTP against the sandbox with Telegram's limits switched on: a burst of
  answers to 60 customers plus 5 to one customer arrives complete, once each and in order,
  with no 429 when the bot keeps the sandbox's limits, with 429s absorbed when the bot's
  limits are set higher than the sandbox's, and through a storm of injected 429s.
"""

from __future__ import annotations

import asyncio
import heapq
import html
import itertools
import logging
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
from aiogram.exceptions import TelegramRetryAfter
from aiogram.methods import SendMessage
from asgiref.sync import sync_to_async

from supportbot.bot.limits import FLOOD_CHATS, LocalBudgets, RedisBudgets, SendDeferred, SendLimiter, build_limiter
from supportbot.config import SANDBOX_BOT_TOKEN, ConfigError, SendLimitSettings, load_settings

REDIS_URL = "redis://127.0.0.1:6379/0"


# -- a virtual clock -----------------------------------------------------------------------------
class VirtualClock:
    """Time that moves only when every task is waiting: each sleeper wakes at its own time."""

    def __init__(self) -> None:
        self.now = 0.0
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._seq = itertools.count()

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (self.now + max(seconds, 0.0), next(self._seq), future))
        await future

    async def run(self, *coros):
        tasks = [asyncio.ensure_future(c) for c in coros]
        for _ in range(100_000):
            for _ in range(10):  # let every runnable task run until it waits
                await asyncio.sleep(0)
            if all(t.done() for t in tasks):
                break
            while self._sleepers and self._sleepers[0][2].cancelled():
                heapq.heappop(self._sleepers)
            if self._sleepers:
                when, _, future = heapq.heappop(self._sleepers)
                self.now = max(self.now, when)
                future.set_result(None)
        return await asyncio.gather(*tasks)


def _limiter(clock: VirtualClock, **settings) -> SendLimiter:
    return SendLimiter(SendLimitSettings(**settings), clock=clock, sleep=clock.sleep)


async def _send(limiter: SendLimiter, clock: VirtualClock, chat_id: int, log: list[tuple[int, float]],
                tag: object = None) -> float:
    async with limiter.slot(chat_id):
        log.append((chat_id if tag is None else tag, clock.now))
    return clock.now


def _retry_after(seconds: int) -> TelegramRetryAfter:
    return TelegramRetryAfter(method=SendMessage(chat_id=1, text="x"), message="Too Many Requests",
                              retry_after=seconds)


# -- pacing ---------------------------------------------------------------------------------------
async def test_a_private_chat_gets_one_message_a_second():
    clock = VirtualClock()
    limiter = _limiter(clock)
    sent: list = []
    times = await clock.run(*(_send(limiter, clock, 7, sent) for _ in range(4)))
    assert times == pytest.approx([0.0, 1.0, 2.0, 3.0])
    assert limiter.waited == pytest.approx(0 + 1 + 2 + 3)


async def test_a_group_gets_twenty_a_minute():
    clock = VirtualClock()
    limiter = _limiter(clock)
    times = await clock.run(*(_send(limiter, clock, -1001234, []) for _ in range(3)))
    assert times == pytest.approx([0.0, 3.0, 6.0])


async def test_a_burst_to_many_chats_is_spread_at_the_bot_rate():
    clock = VirtualClock()
    limiter = _limiter(clock)  # 30 a second
    times = sorted(await clock.run(*(_send(limiter, clock, chat, []) for chat in range(1, 61))))
    assert times[0] == 0.0
    assert times[-1] == pytest.approx(59 / 30)
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert min(gaps) == pytest.approx(1 / 30)  # never two sends closer than the bot's interval


async def test_the_limits_are_settings():
    clock = VirtualClock()
    limiter = _limiter(clock, bot_per_second=10, chat_per_second=4, group_per_minute=6)
    assert await clock.run(*(_send(limiter, clock, 5, []) for _ in range(3))) == pytest.approx([0, 0.25, 0.5])
    clock2 = VirtualClock()
    limiter2 = _limiter(clock2, bot_per_second=10, chat_per_second=4, group_per_minute=6)
    assert await clock2.run(*(_send(limiter2, clock2, -5, []) for _ in range(2))) == pytest.approx([0, 10.0])
    clock3 = VirtualClock()
    limiter3 = _limiter(clock3, bot_per_second=10, chat_per_second=4)
    assert sorted(await clock3.run(*(_send(limiter3, clock3, c, []) for c in range(1, 4)))) == pytest.approx(
        [0, 0.1, 0.2])


async def test_a_busy_chat_holds_up_no_other_chat():
    """Five messages queued for one customer first; another customer's message still goes at once."""
    clock = VirtualClock()
    limiter = _limiter(clock)
    sent: list = []
    busy = [_send(limiter, clock, 1, sent) for _ in range(5)]
    other = _send(limiter, clock, 2, sent)
    times = await clock.run(*busy, other)
    assert times[-1] <= 1 / 30 + 1e-9  # the other customer waited for the bot's budget only
    assert times[:5] == pytest.approx([0, 1, 2, 3, 4])


async def test_a_customers_messages_keep_their_order():
    clock = VirtualClock()
    limiter = _limiter(clock, chat_per_second=1000)
    sent: list = []
    await clock.run(*(_send(limiter, clock, 9, sent, tag=n) for n in range(20)))
    assert [tag for tag, _ in sent] == list(range(20))


# -- 429 ------------------------------------------------------------------------------------------
async def test_a_429_pauses_that_chat_for_retry_after():
    clock = VirtualClock()
    limiter = _limiter(clock)

    async def refused() -> None:
        with pytest.raises(TelegramRetryAfter):
            async with limiter.slot(1):
                raise _retry_after(5)

    await clock.run(refused())
    assert limiter.rate_limited == 1
    start = clock.now
    paused, other = await clock.run(_send(limiter, clock, 1, []), _send(limiter, clock, 2, []))
    assert paused - start == pytest.approx(5.0)  # the chat waits out Telegram's retry_after
    assert other - start < 0.1  # the other chat does not


async def test_429s_on_several_chats_pause_the_whole_bot():
    clock = VirtualClock()
    limiter = _limiter(clock)

    async def refused(chat: int) -> None:
        with pytest.raises(TelegramRetryAfter):
            async with limiter.slot(chat):
                raise _retry_after(3)

    await clock.run(*(refused(chat) for chat in range(1, FLOOD_CHATS)))
    start = clock.now
    assert await clock.run(_send(limiter, clock, 100, [])) == [pytest.approx(start, abs=0.1)]  # one chat short: not yet
    await clock.run(refused(FLOOD_CHATS))
    start = clock.now
    (later,) = await clock.run(_send(limiter, clock, 101, []))
    assert later - start == pytest.approx(3.0, abs=0.05)  # a flood wait: every chat waits


async def test_a_slot_too_far_away_is_deferred_not_waited_for():
    clock = VirtualClock()
    limiter = _limiter(clock, max_wait=2.0)
    await limiter.budgets.pause(1, 30.0)

    async def deferred() -> float:
        with pytest.raises(SendDeferred) as info:
            async with limiter.slot(1):
                pass
        return info.value.retry_after

    (retry_after,) = await clock.run(deferred())
    assert retry_after == pytest.approx(30.0)
    assert clock.now == 0.0  # nothing was waited for


def test_local_budgets_forget_idle_chats():
    clock = VirtualClock()
    budgets = LocalBudgets(clock)
    for chat in range(2000):
        clock.now = chat * 0.1
        assert budgets.take_now(chat, 1.0, 0.01) == (True, 0.0)
    assert len(budgets._next) < 1100


# -- shared through Redis ----------------------------------------------------------------------
@pytest.fixture
async def two_processes():
    """Two limiters of one bot, as two processes would have them (a fresh bot id per test)."""
    bot_id = f"test-{uuid.uuid4().hex[:8]}"
    settings = SendLimitSettings(bot_per_second=2, redis_url=REDIS_URL)
    a, b = build_limiter(settings, bot_id=bot_id), build_limiter(settings, bot_id=bot_id)
    assert isinstance(a.budgets, RedisBudgets) and isinstance(b.budgets, RedisBudgets)
    try:
        yield a, b
    finally:
        await a.close()
        await b.close()


async def test_two_processes_share_one_chat_budget_through_redis(two_processes):
    a, b = two_processes
    assert await a.budgets.take(1, 1.0, 0.001) == (True, 0.0)
    booked, wait = await b.budgets.take(1, 1.0, 0.001)  # the other process: the same chat waits
    assert not booked and 0.8 < wait <= 1.0
    booked, wait = await b.budgets.take(2, 1.0, 0.001)  # another chat does not
    assert booked and wait < 0.01


async def test_two_processes_share_one_bot_budget_through_redis(two_processes):
    a, b = two_processes
    started = time.monotonic()
    times = []

    async def send(limiter: SendLimiter, chat: int) -> None:
        async with limiter.slot(chat):
            times.append(time.monotonic() - started)

    # 2 a second for the whole bot: 4 sends from two processes take 1.5 s, not 0.5 s.
    await asyncio.gather(send(a, 1), send(b, 2), send(a, 3), send(b, 4))
    times.sort()
    assert times[-1] >= 1.4
    assert all(later - earlier >= 0.45 for earlier, later in itertools.pairwise(times))


async def test_a_429_in_one_process_pauses_the_chat_and_the_bot_for_both(two_processes):
    a, b = two_processes
    await a.pause(1, 2.0)
    booked, wait = await b.budgets.take(1, 1.0, 0.001)
    assert not booked and 1.8 < wait <= 2.0
    assert (await b.budgets.take(50, 1.0, 0.001)).booked  # one chat's 429: others go on
    for chat in range(2, FLOOD_CHATS + 1):  # 429s on more chats, in either process: a flood wait
        await (a if chat % 2 else b).pause(chat, 2.0)
    booked, wait = await a.budgets.take(60, 1.0, 0.001)
    assert not booked and 1.8 < wait <= 2.0


async def test_without_redis_the_limits_stay_in_process_with_a_warning(caplog):
    limiter = build_limiter(SendLimitSettings(redis_url="redis://127.0.0.1:1/0"), bot_id="unreachable")
    with caplog.at_level(logging.WARNING, logger="supportbot.bot.limits"):
        async with limiter.slot(1) as waited:
            assert waited < 0.5  # Redis refused the connection at once: nothing waited for it
        booked, wait = await limiter.budgets.take(1, 1.0, 0.001)
        assert not booked and wait > 0.5  # still one a second, kept here
    assert "Redis unreachable" in caplog.text
    assert "127.0.0.1:1" not in caplog.text  # no URL (it may hold a password) in the log
    await limiter.close()


# -- settings -----------------------------------------------------------------------------------
@pytest.mark.parametrize(("name", "value", "says"), [
    ("TELEGRAM_BOT_PER_SECOND", "0", "TELEGRAM_BOT_PER_SECOND: Input should be greater than 0"),
    ("TELEGRAM_CHAT_PER_SECOND", "fast", "TELEGRAM_CHAT_PER_SECOND: Input should be a valid number"),
    ("TELEGRAM_GROUP_PER_MINUTE", "-3", "TELEGRAM_GROUP_PER_MINUTE: Input should be greater than 0"),
    ("TELEGRAM_BOT_PER_SECOND", "nan", "TELEGRAM_BOT_PER_SECOND"),
    ("SEND_LIMITS_MAX_WAIT_SECONDS", "600", "SEND_LIMITS_MAX_WAIT_SECONDS: Input should be less than or equal to 60"),
    ("SEND_LIMITS_REDIS_URL", "http://cache:6379", "SEND_LIMITS_REDIS_URL: Value error, must be redis://"),
])
def test_broken_limit_settings_name_the_variable(monkeypatch, name, value, says):
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError) as info:
        load_settings()
    assert says in str(info.value)


def test_limit_settings_and_where_they_are_kept(monkeypatch):
    for name in ("SEND_LIMITS_REDIS_URL", "CELERY_BROKER_URL"):
        monkeypatch.delenv(name, raising=False)
    cfg = load_settings().limits
    assert (cfg.bot_per_second, cfg.chat_per_second, cfg.group_per_minute, cfg.redis_url) == (30, 1, 20, None)
    monkeypatch.setenv("CELERY_BROKER_URL", "redis://:s3cret@127.0.0.1:6379/1")
    assert load_settings().limits.redis_url == "redis://:s3cret@127.0.0.1:6379/1"  # shared by default
    assert "s3cret" not in repr(load_settings().limits)
    monkeypatch.setenv("SEND_LIMITS_REDIS_URL", "local")
    assert load_settings().limits.redis_url is None  # kept per process on purpose
    monkeypatch.setenv("CELERY_BROKER_URL", "amqp://guest:guest@127.0.0.1:5672//")
    monkeypatch.delenv("SEND_LIMITS_REDIS_URL")
    assert load_settings().limits.redis_url is None  # RabbitMQ: nothing to share budgets in
    monkeypatch.setenv("SEND_LIMITS_REDIS_URL", "redis://127.0.0.1:6379/2")
    monkeypatch.setenv("TELEGRAM_CHAT_PER_SECOND", "0.5")
    cfg = load_settings().limits
    assert (cfg.redis_url, cfg.chat_per_second) == ("redis://127.0.0.1:6379/2", 0.5)


# -- the real bot against the sandbox with Telegram's limits on -----------------------------------
QUESTIONS = ("How much does shipping cost?", "How can I track my order?", "What payment methods do you accept?",
             "How do I return an item?", "What warranty do you offer?")
CUSTOMERS = range(30_001, 30_061)  # 60 customers, one question each
BUSY = 30_100  # one customer asking five questions at once
GENEROUS = SendLimitSettings(bot_per_second=1000, chat_per_second=100, group_per_minute=1000)


@asynccontextmanager
async def _bot(sandbox, fake, limits: SendLimitSettings) -> AsyncIterator:
    from supportbot.assembly import build_pipeline
    from supportbot.bot.runner import BotApp

    app = BotApp(token=SANDBOX_BOT_TOKEN, api_url=sandbox.url, default_language="en", refresh_seconds=1.0,
                 polling_timeout=1, outbox_interval=0.1, delivery_backoff=(0.2,) * 4,
                 pipeline=build_pipeline(fake, llm=None), limiter=SendLimiter(limits))
    await app.start()
    try:
        yield app
    finally:
        await app.stop()


async def _burst(customer_api) -> None:
    """60 customers ask at once, and one customer asks five questions in a row."""
    await asyncio.gather(*(customer_api.send_text(c, QUESTIONS[0]) for c in CUSTOMERS))
    for question in QUESTIONS:
        await customer_api.send_text(BUSY, question)


def _recorded(user_id: int) -> list[str]:
    """What the bot recorded for the customer to see, in the outbox's order."""
    from supportbot.support.models import Message

    return list(Message.objects.filter(ticket__user_id=user_id, direction=Message.Direction.OUT)
                .order_by("id").values_list("text", flat=True))


async def _all_arrived_once_in_order(customer_api, *, timeout: float) -> float:
    """Wait until every customer has their answers; then check none is missing, doubled or out
    of order (against the outbox's order). Returns when the last one arrived (loop time)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    expected = {**{c: 1 for c in CUSTOMERS}, BUSY: len(QUESTIONS)}
    while True:
        counts = {c: len(await customer_api.bot_messages(c)) for c in expected}
        if counts == expected:
            break
        assert loop.time() < deadline, {c: (counts.get(c), n) for c, n in expected.items() if counts.get(c) != n}
        await asyncio.sleep(0.3)
    arrived = loop.time()
    await asyncio.sleep(1.2)  # anything sent twice would be by now
    for customer, n in expected.items():
        texts = [html.unescape(m["text"]) for m in await customer_api.bot_messages(customer)]  # sent as HTML
        assert len(texts) == n, (customer, texts)
        recorded = await sync_to_async(_recorded)(customer)
        assert len(recorded) == n, (customer, recorded)
        assert [r[:40] for r in recorded] == [t[:40] for t in texts], customer
    return arrived


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
async def test_a_burst_within_the_sandboxs_limits_arrives_once_with_no_429(fake, sample_faq, sandbox, customer_api):
    await customer_api.set_limits(enabled=True)  # Telegram's: 30/s, 1/s per chat, 20/min per group
    async with _bot(sandbox, fake, SendLimitSettings()) as app:
        started = asyncio.get_running_loop().time()
        await _burst(customer_api)
        arrived = await _all_arrived_once_in_order(customer_api, timeout=20)
    limits = await customer_api.limits()
    assert limits["refused"] == 0, limits["refused_by_chat"]  # the sandbox never had to refuse ...
    assert app.limiter.rate_limited == 0  # ... and the bot never saw a 429
    assert limits["accepted"] == len(CUSTOMERS) + len(QUESTIONS)
    rate = (limits["accepted"] - 1) / limits["accepted_seconds"]
    print(f"\nburst of {limits['accepted']} answers: {rate:.1f} messages/s at the sandbox "
          f"(limit 30), last one {arrived - started:.1f} s after the first question")
    assert rate <= 31  # never faster than Telegram allows (the bot's own work, not the limit, sets the pace here)


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
async def test_a_bot_allowed_more_than_telegram_absorbs_the_429s(fake, sample_faq, sandbox, customer_api):
    await customer_api.set_limits(enabled=True)
    async with _bot(sandbox, fake, GENEROUS) as app:
        await _burst(customer_api)
        await _all_arrived_once_in_order(customer_api, timeout=25)
    limits = await customer_api.limits()
    assert limits["refused"] > 0 and app.limiter.rate_limited > 0  # Telegram's 429s did come ...
    assert limits["accepted"] == len(CUSTOMERS) + len(QUESTIONS)  # ... and every answer went out once


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
async def test_a_429_storm_delays_but_loses_and_doubles_nothing(fake, sample_faq, sandbox, customer_api):
    """40 sends in a row answered 429 retry_after 1 (a flood wait), whatever the chat."""
    sandbox.state.faults.add(method="sendMessage", error="429", retry_after=1, count=40)
    async with _bot(sandbox, fake, SendLimitSettings()) as app:
        await _burst(customer_api)
        await _all_arrived_once_in_order(customer_api, timeout=25)
    assert sandbox.state.faults.to_json()[0]["hits"] == 40
    assert app.limiter.rate_limited == 40
    counts = sandbox.state.requests.by_method["sendMessage"]
    assert counts == 40 + len(CUSTOMERS) + len(QUESTIONS)  # each refused send retried once it was allowed


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
async def test_a_streamed_llm_answer_edits_no_faster_than_the_chat_allows(fake, sample_faq, sandbox, customer_api):
    """The draft would be edited every 0.2 s; under the limits the edits come once a second, the
    finished answer replaces the draft, and the sandbox never has to refuse one."""
    from supportbot.assembly import build_pipeline
    from supportbot.bot.runner import BotApp
    from supportbot.llm.chain import AnswerChain, ChainStep
    from supportbot.llm.setup import LlmFallback

    from ..llm_helpers import ScriptedAnswerer

    answer = "Yes, we can wrap any order as a gift: add a note with the colour you like at checkout, please."
    llm = LlmFallback(AnswerChain([ChainStep(ScriptedAnswerer(answer, delay=0.12), 10)]), stream_edit_seconds=0.2,
                      check_facts=False)
    await customer_api.set_limits(enabled=True)
    app = BotApp(token=SANDBOX_BOT_TOKEN, api_url=sandbox.url, default_language="en", polling_timeout=1,
                 outbox_interval=0.1, pipeline=build_pipeline(fake, llm=llm), limiter=SendLimiter())
    await app.start()
    try:
        sent = await customer_api.send_text(BUSY, "Could you wrap my present in blue paper with a bow?")
        final = await customer_api.wait_for_bot_message(
            BUSY, after=sent["message"]["message_id"], timeout=15,
            predicate=lambda m: "checkout, please." in m["text"] and "▍" not in m["text"])
    finally:
        await app.stop()
    assert final["text"].startswith("🤖 AI answer")
    assert final["reply_markup"]  # the finished answer, with its buttons
    assert len(await customer_api.bot_messages(BUSY, after=sent["message"]["message_id"])) == 1
    limits = await customer_api.limits()
    assert limits["refused"] == 0 and app.limiter.rate_limited == 0
    assert final["edit_count"] >= 1  # it did stream: sent, edited, replaced
    # 12 words at 0.12 s: ~1.5 s of streaming; at one edit every 0.2 s that would be ~7 edits.
    assert final["edit_count"] <= 3
