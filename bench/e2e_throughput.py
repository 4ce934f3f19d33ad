"""End-to-end throughput: FAQ-answerable text messages from simulated customers
through the sandbox Bot API over real HTTP to one bot process (SQLite, real model).

    .venv/bin/python bench/e2e_throughput.py [--users 50] [--messages 20]

The bot runs unmodified in its own process (`supportbot bot --sandbox`), polling
the sandbox served by this process. Each simulated customer sends a question,
waits for the answer, then sends the next (closed loop). Latency is measured
from just before the customer's HTTP request to the moment the bot's answer
reaches the sandbox. Target: >= 100 updates/s with p99 < 250 ms on 2 cores.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import fresh_django, percentile, save, table  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "src" / "supportbot" / "data" / "sample_faq.json"


def answerable_questions() -> list[tuple[str, str]]:
    """(question, language) pairs that the shipped matcher answers from the FAQ."""
    from supportbot.bot.runner import build_pipeline, prepare_index

    pipeline = build_pipeline()
    prepare_index(pipeline)
    out = []
    for entry in json.loads(SAMPLE.read_text(encoding="utf-8")):
        for text in [entry["question"], *entry["phrasings"]]:
            if pipeline.index.search(text).confident:
                out.append((text, entry["language"]))
    return out


async def run_load(args, questions, data_dir: Path) -> dict:
    from supportbot.config import SANDBOX_BOT_TOKEN
    from supportbot.sandbox.client import SandboxClient
    from supportbot.sandbox.server import SandboxState, start_server

    arrivals: dict[int, asyncio.Future] = {}

    class TimedState(SandboxState):
        """Stamps the moment each bot message arrives, without polling."""

        def add_message(self, chat, **fields):
            message = super().add_message(chat, **fields)
            waiter = arrivals.get(chat.id)
            if fields.get("sender") == "bot" and waiter is not None and not waiter.done():
                waiter.set_result(time.perf_counter())
            return message

    server = await start_server("127.0.0.1", 0, token=SANDBOX_BOT_TOKEN, state=TimedState())
    env = {**os.environ, "SUPPORTBOT_DATA_DIR": str(data_dir), "SANDBOX_PORT": str(server.port),
           "SANDBOX_HOST": "127.0.0.1"}
    bot = subprocess.Popen([sys.executable, "-m", "supportbot.cli", "bot", "--sandbox"], env=env)
    latencies: list[float] = []
    try:
        async with SandboxClient(server.url) as client:
            loop = asyncio.get_running_loop()

            async def exchange(user_id: int, text: str, language: str) -> float:
                arrivals[user_id] = loop.create_future()
                started = time.perf_counter()
                await client.send_text(user_id, text, language_code=language)
                arrived = await asyncio.wait_for(arrivals[user_id], timeout=30)
                return (arrived - started) * 1000

            # Wait for the bot to come up (model load, index), then warm up.
            deadline = time.monotonic() + 120
            while True:
                try:
                    await exchange(1, questions[0][0], questions[0][1])
                    break
                except asyncio.TimeoutError:
                    if time.monotonic() > deadline or bot.poll() is not None:
                        raise SystemExit("the bot did not answer; is the database set up?")
            for i in range(20):
                await exchange(2 + i, *questions[i % len(questions)])

            rng = random.Random(7)

            async def customer(user_id: int) -> None:
                for _ in range(args.messages):
                    latencies.append(await exchange(user_id, *rng.choice(questions)))

            started = time.perf_counter()
            await asyncio.gather(*(customer(1000 + u) for u in range(args.users)))
            wall = time.perf_counter() - started
    finally:
        bot.terminate()
        bot.wait(timeout=20)
        await server.close()
    total = len(latencies)
    return {"users": args.users, "messages_per_user": args.messages, "updates": total,
            "seconds": wall, "updates_per_second": total / wall,
            "latency_ms_p50": percentile(latencies, 50), "latency_ms_p99": percentile(latencies, 99),
            "latency_ms_max": max(latencies)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, default=50)
    parser.add_argument("--messages", type=int, default=20, help="questions per customer")
    args = parser.parse_args()

    data_dir = fresh_django("e2e")
    from supportbot.support.faq_io import import_faq

    import_faq(SAMPLE)
    questions = answerable_questions()
    from django.db import connections

    connections.close_all()
    result = asyncio.run(run_load(args, questions, data_dir))
    print(f"{result['users']} customers x {result['messages_per_user']} FAQ questions, one bot process, SQLite, "
          f"{len(questions)} distinct answerable questions")
    print(table(["updates", "seconds", "updates/s", "p50 ms", "p99 ms", "max ms"],
                [[result["updates"], result["seconds"], result["updates_per_second"],
                  result["latency_ms_p50"], result["latency_ms_p99"], result["latency_ms_max"]]]))
    print(f"results: {save('e2e_throughput', result)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
