"""How fast a running ``supportbot webhook`` takes updates: POST to 200 (the claim included).

    TELEGRAM_WEBHOOK_SECRET=... supportbot webhook --sandbox &      # with `supportbot sandbox`
    .venv/bin/python bench/webhook_accept.py http://127.0.0.1:8443/telegram/webhook SECRET \\
        [--updates 2000] [--concurrency 10] [--first-id N]

Sends distinct ``edited_message`` updates (a kind the bot does not handle: this measures the
intake, secret check, parsing and the claim's INSERT, not the answers), ``--concurrency`` at a
time on kept-alive connections, and prints accepted updates/s and POST->200 percentiles. Run it
twice with the same ``--first-id`` to measure duplicates (each answered 200, nothing claimed).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time

import aiohttp


def _update(update_id: int, user: int) -> dict:
    person = {"id": user, "is_bot": False, "first_name": "Bench"}
    return {"update_id": update_id, "edited_message": {
        "message_id": 1, "date": 0, "edit_date": 1, "text": "edited",
        "chat": {"id": user, "type": "private"}, "from": person}}


async def run(url: str, secret: str, updates: int, concurrency: int, first_id: int) -> None:
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    waiting = list(range(updates))
    headers = {"X-Telegram-Bot-Api-Secret-Token": secret, "Content-Type": "application/json"}
    async with aiohttp.ClientSession(headers=headers) as http:
        async def sender() -> None:
            while waiting:
                i = waiting.pop()
                body = json.dumps(_update(first_id + i, 900_000 + i % 1000))
                started = time.perf_counter()
                async with http.post(url, data=body) as response:
                    await response.read()
                latencies.append(time.perf_counter() - started)
                statuses[response.status] = statuses.get(response.status, 0) + 1

        started = time.perf_counter()
        await asyncio.gather(*(sender() for _ in range(concurrency)))
        wall = time.perf_counter() - started
    latencies.sort()

    def ms(q: float) -> str:
        return f"{latencies[min(len(latencies) - 1, int(len(latencies) * q))] * 1000:.1f}"

    print(f"{updates} updates, {concurrency} at a time: {updates / wall:.0f} accepted/s; "
          f"POST->200 p50 {ms(0.5)} ms, p99 {ms(0.99)} ms, max {latencies[-1] * 1000:.1f} ms; statuses {statuses}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url")
    parser.add_argument("secret")
    parser.add_argument("--updates", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=10)
    parser.add_argument("--first-id", type=int, default=int(time.time() * 1000))
    args = parser.parse_args()
    asyncio.run(run(args.url, args.secret, args.updates, args.concurrency, args.first_id))


if __name__ == "__main__":
    main()
