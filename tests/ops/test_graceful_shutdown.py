"""SIGTERM to a real ``supportbot bot`` while it answers: it takes no new update, the answer in
flight still reaches the customer, and the process exits 0. Its logs (``LOG_FORMAT=json``) are
one JSON object per line and never carry the customer's words."""

from __future__ import annotations

import asyncio
import json
import signal

import pytest

from supportbot.config import SANDBOX_BOT_TOKEN
from supportbot.sandbox import start_server
from supportbot.sandbox.client import SandboxClient

from .processes import SAMPLE_FAQ, SUPPORTBOT, environment, free_port, run, wait_healthy

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]  # a bot process on a busy 2-core machine

CUSTOMER = 4242
QUESTION = "How long does delivery take?"
HELD_SECONDS = 4.0  # the sandbox holds the answer's sendMessage this long, then delivers it


async def _sends(client: SandboxClient) -> int:
    return (await client.request_counts())["chats"].get(str(CUSTOMER), {}).get("sendMessage", 0)


async def test_sigterm_finishes_the_answer_in_flight_then_exits_0(tmp_path):
    sandbox = await start_server(port=0, token=SANDBOX_BOT_TOKEN)
    health_port = free_port()
    env = environment(tmp_path / "data", SANDBOX_PORT=str(sandbox.port), BOT_HTTP_PORT=str(health_port),
                      LOG_FORMAT="json", SHUTDOWN_GRACE_SECONDS="20", SPEECH_LANGUAGES="en")
    stderr = (tmp_path / "bot.stderr").open("w+")
    proc = None
    try:
        await run(SUPPORTBOT, "migrate", env=env)
        await run(SUPPORTBOT, "import-faq", "-q", str(SAMPLE_FAQ), env=env)
        proc = await asyncio.create_subprocess_exec(SUPPORTBOT, "--verbose", "bot", "--sandbox", env=env,
                                                    stdout=asyncio.subprocess.DEVNULL, stderr=stderr)
        await wait_healthy(f"http://127.0.0.1:{health_port}/healthz", procs=(proc,), timeout=400)
        async with SandboxClient(sandbox.url) as client:
            await client.inject_fault("sendMessage", "timeout", chat_id=CUSTOMER, delay=HELD_SECONDS, then="answer")
            await client.send_text(CUSTOMER, QUESTION)
            for _ in range(1200):  # the answer is on its way: its sendMessage is being held
                if await _sends(client):
                    break
                await asyncio.sleep(0.05)
            else:
                pytest.fail("the bot never sent the answer")
            assert not await client.bot_messages(CUSTOMER)
            proc.send_signal(signal.SIGTERM)
            for _ in range(600):  # the bot has taken the signal (a busy machine may take a while)
                if "SIGTERM: finishing the work in flight" in (tmp_path / "bot.stderr").read_text():
                    break
                await asyncio.sleep(0.05)
            await client.send_text(CUSTOMER, "And one more question after the shutdown began")

            returncode = await asyncio.wait_for(proc.wait(), timeout=60)
            assert returncode == 0
            answers = [m["plain_text"] for m in await client.bot_messages(CUSTOMER)]
            assert len(answers) == 1, answers  # the answer in flight; nothing for the later message
            assert answers[0].startswith("Orders placed before 2 pm ship the same day."), answers
    finally:
        if proc is not None and proc.returncode is None:
            proc.kill()
            await proc.wait()
        await sandbox.close()

    stderr.seek(0)
    lines = [line for line in stderr.read().splitlines() if line.strip()]
    records = [json.loads(line) for line in lines]  # every line is one JSON object
    messages = [r["message"] for r in records]
    assert any("SIGTERM: finishing the work in flight" in m for m in messages), messages
    assert any("waiting for 1 update(s) in flight" in m for m in messages), messages
    assert not any(r["level"] in ("ERROR", "CRITICAL") for r in records), records
    assert any(r.get("ticket_id") for r in records)  # the debug line about the customer's message, with its ids
    assert QUESTION not in "\n".join(lines)  # the customer's words are not logged (LOG_MESSAGE_TEXT is off)
