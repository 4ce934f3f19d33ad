"""Telegram's send limits: how fast a burst of outgoing messages reaches the sandbox Bot API
with Telegram's limits switched on, and whether any is lost, doubled or out of order.

    .venv/bin/python bench/send_limits.py [--customers 120] [--busy 10] [--redis redis://127.0.0.1:6379/0]

The burst: ``--customers`` customers with one outgoing message each (an operator's reply)
and one customer with ``--busy`` of them, all recorded pending at once (SQLite), then
sent by the delivery loop (the path of operators' replies and retries) through a real
aiogram Bot over HTTP to the sandbox, which answers 429 over 30 messages/s, 1/s per chat.
Three set-ups, one run each:

1. the bot keeps Telegram's limits, budgets in this process (``make run``);
2. the same, budgets in Redis, two delivery loops (two processes' worth: each its own
   limiter, Bot session and loop) sharing one budget;
3. the bot allowed 10x Telegram's limits: only the sandbox's 429s slow it down.

4. no limits anywhere: the delivery loop's own pace on this machine, for comparison.

Reported: messages/s at the sandbox while the one-message customers' messages go out (the busy
customer's go one a second whatever the rest do), the most that arrived within any one second,
429s the sandbox answered, seconds until the last message arrived, lost/doubled
messages and customers whose messages arrived out of order.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import fresh_django, save, table

FIRST_CUSTOMER = 900_000


def record_burst(customers: int, busy: int, run: int) -> dict[int, list[str]]:
    """Pending outgoing messages: one for each customer, ``busy`` for the last one."""
    from supportbot.support import services
    from supportbot.support.models import Message, TelegramUser, Ticket

    expected: dict[int, list[str]] = {}
    base = FIRST_CUSTOMER + run * 10_000
    for n in range(customers + 1):
        user = TelegramUser.objects.create(id=base + n, first_name=f"Customer {n}", language_code="en")
        ticket = Ticket.objects.create(user=user)
        texts = [f"run {run}, reply {k} to customer {n}" for k in range(busy if n == customers else 1)]
        for text in texts:
            services.record_outgoing(ticket_id=ticket.pk, text=text, source=Message.Source.OPERATOR)
        expected[user.id] = texts
    return expected


async def deliver_burst(server, expected: dict[int, list[str]], limits, loops: int, *, enforce: bool) -> dict:
    from supportbot.bot.delivery import Delivery
    from supportbot.bot.limits import build_limiter
    from supportbot.bot.runner import build_bot
    from supportbot.config import SANDBOX_BOT_TOKEN

    state = server.state
    for user_id in expected:
        state.upsert_user(user_id, {"first_name": "Customer"})
    state.limits.reset()
    state.limits.enabled = enforce
    state.stamps.clear()
    bot_id = f"bench-{uuid.uuid4().hex[:8]}"  # fresh Redis keys for each run
    deliveries = [Delivery(build_bot(SANDBOX_BOT_TOKEN, server.url), interval=0.1,
                           limiter=build_limiter(limits, bot_id=bot_id)) for _ in range(loops)]
    total = sum(len(texts) for texts in expected.values())
    started = time.perf_counter()
    tasks = [asyncio.create_task(d.run()) for d in deliveries]
    try:
        while sum(len(state.chats[c].messages) for c in expected) < total and time.perf_counter() - started < 120:
            await asyncio.sleep(0.05)
        finished = time.perf_counter() - started
        await asyncio.sleep(1.0)  # a doubled message would arrive by now
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for d in deliveries:
            await d.bot.session.close()
            await d.limiter.close()
    lost = doubled = out_of_order = 0
    for user_id, texts in expected.items():
        got = [m.text for m in state.chats[user_id].messages.values() if m.sender == "bot"]
        lost += len(set(texts) - set(got))
        doubled += len(got) - len(set(got))
        out_of_order += got != texts and sorted(got) == sorted(texts)
    stamps = sorted(state.stamps)
    # The busy customer's messages go one a second whatever the rest do: the rate that
    # matters is the bot-wide one while the other customers' messages go out.
    many = stamps[:len(expected) - 1]
    rate = (len(many) - 1) / (many[-1] - many[0]) if len(many) > 1 and many[-1] > many[0] else 0.0
    peak = max(sum(1 for t in stamps if s <= t < s + 1.0) for s in stamps) if stamps else 0
    return {"messages": total, "rate": rate, "peak_per_second": peak, "refused_429": state.limits.refused,
            "seconds": finished, "lost": lost, "doubled": doubled, "out_of_order": out_of_order}


async def main_async(args) -> dict:
    from asgiref.sync import sync_to_async

    from supportbot.config import SANDBOX_BOT_TOKEN, SendLimitSettings
    from supportbot.sandbox.server import SandboxState, start_server

    class StampedState(SandboxState):
        """Stamps (``time.perf_counter``) every message the bot sends, as it arrives."""

        def __init__(self) -> None:
            super().__init__()
            self.stamps: list[float] = []

        def add_message(self, chat, **fields):
            if fields.get("sender") == "bot":
                self.stamps.append(time.perf_counter())
            return super().add_message(chat, **fields)

    telegram = SendLimitSettings()
    setups = [
        ("Telegram's limits, in-process", telegram, 1),
        ("Telegram's limits, Redis, 2 loops", SendLimitSettings(redis_url=args.redis), 2),
        ("10x Telegram's limits (429s only)", SendLimitSettings(bot_per_second=300, chat_per_second=10), 1),
        ("no limits anywhere (the loop's own pace)", SendLimitSettings(bot_per_second=10_000, chat_per_second=1000), 1),
    ]
    results = []
    server = await start_server("127.0.0.1", 0, token=SANDBOX_BOT_TOKEN, state=StampedState())
    try:
        for run, (name, limits, loops) in enumerate(setups):
            expected = await sync_to_async(record_burst)(args.customers, args.busy, run)
            result = await deliver_burst(server, expected, limits, loops, enforce=run < 3)
            results.append({"setup": name, **result})
            print(f"{name}: {result}", flush=True)
    finally:
        await server.close()
    return {"customers": args.customers, "busy": args.busy, "results": results}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--customers", type=int, default=120)
    parser.add_argument("--busy", type=int, default=10, help="messages to the one busy customer")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    args = parser.parse_args()
    fresh_django("send-limits")
    payload = asyncio.run(main_async(args))
    print(table(["set-up", "messages", "msg/s at sandbox", "peak in 1 s", "429s", "s to last", "lost", "doubled",
                 "out of order"],
                [[r["setup"], r["messages"], r["rate"], r["peak_per_second"], r["refused_429"], r["seconds"], r["lost"],
                  r["doubled"], r["out_of_order"]] for r in payload["results"]]))
    print(f"results: {save('send_limits', payload)}")


if __name__ == "__main__":
    main()
