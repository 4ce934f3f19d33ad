"""``supportbot worker`` serves ``/healthz`` and ``/metrics`` on ``WORKER_HTTP_PORT``: a real worker
process on Redis answers a customer's FAQ question, and its ``/metrics`` counts the task it ran
(``supportbot_tasks_total``, ``supportbot_task_seconds``) next to the answer; a port that is taken
stops the worker with one line naming the setting; a malformed port is refused by the settings."""

from __future__ import annotations

import socket
import subprocess
import sys

import aiohttp
import pytest
from asgiref.sync import sync_to_async

from supportbot.support.models import FaqEntry

from ..ops.processes import free_port, wait_healthy
from .helpers import REDIS_URL, PollingIntake, WorkerProcess, flush_redis, settings_env, worker_env

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

CUSTOMER = 7301


@pytest.fixture
def redis_broker():
    flush_redis()
    with settings_env(CELERY_BROKER_URL=REDIS_URL):
        yield REDIS_URL
    flush_redis()


def _samples(text: str, name: str) -> dict[str, float]:
    """``{label set: value}`` of one metric in Prometheus's text format."""
    out = {}
    for line in text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            key, _, value = line.rpartition(" ")
            out[key[len(name):]] = float(value)
    return out


async def test_the_worker_serves_health_and_counts_its_tasks(redis_broker, sandbox, customer_api, tmp_path):
    from supportbot.support.faq_io import import_faq

    from ..conftest import SAMPLE_FAQ

    await sync_to_async(import_faq)(SAMPLE_FAQ)  # the reindex task waits on Redis for the worker
    port = free_port()
    worker = WorkerProcess(worker_env(sandbox_port=sandbox.port, broker=redis_broker, data_dir=tmp_path / "w",
                                      WORKER_HTTP_PORT=str(port)), tmp_path / "worker.log")
    try:
        await worker.ready()
        health = await wait_healthy(f"http://127.0.0.1:{port}/healthz", timeout=30)
        assert health["checks"]["broker"] == {**health["checks"]["broker"], "ok": True, "configured": True}
        assert health["checks"]["database"]["ok"] is True
        async with PollingIntake(sandbox.url).running():
            entry = await FaqEntry.objects.aget(key="order-tracking-en")
            sent = await customer_api.send_text(CUSTOMER, "How can I track my parcel?", language_code="en")
            reply = await customer_api.wait_for_bot_message(CUSTOMER, after=sent["message"]["message_id"],
                                                            timeout=30)
            assert reply["plain_text"] == entry.answer, worker.log()[-2000:]
        async with aiohttp.ClientSession() as http, http.get(f"http://127.0.0.1:{port}/metrics") as response:
            assert response.status == 200
            text = await response.text()
        tasks = _samples(text, "supportbot_tasks_total")
        assert tasks['{outcome="ok",task="supportbot.handle_update"}'] == 1.0, text
        assert tasks.get('{outcome="ok",task="supportbot.reindex"}', 0) >= 1.0  # the sample FAQ, embedded there
        assert not any('outcome="error"' in key for key in tasks)
        seconds = _samples(text, "supportbot_task_seconds_count")
        assert seconds['{task="supportbot.handle_update"}'] == 1.0
        assert _samples(text, "supportbot_tasks_running") == {"": 0.0}
        assert _samples(text, "supportbot_answers_total")['{source="faq"}'] == 1.0  # the answer, counted there
    finally:
        worker.stop()
    assert worker.process.returncode == 0, worker.log()[-2000:]


async def test_a_taken_port_stops_the_worker_with_one_line(redis_broker, sandbox, tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        worker = WorkerProcess(worker_env(sandbox_port=sandbox.port, broker=redis_broker, data_dir=tmp_path / "w",
                                          WORKER_HTTP_PORT=str(port)), tmp_path / "worker.log")
        try:
            code = await sync_to_async(worker.process.wait)(180)
        finally:
            worker.stop()
    assert code == 2, worker.log()[-2000:]
    assert (f"supportbot worker: cannot serve /healthz and /metrics on 127.0.0.1:{port} "
            "(WORKER_HTTP_HOST, WORKER_HTTP_PORT): ") in worker.log()
    assert "Traceback" not in worker.log()


def test_a_malformed_port_is_refused_by_name(tmp_path):
    env = worker_env(sandbox_port=1, broker=REDIS_URL, data_dir=tmp_path / "w", WORKER_HTTP_PORT="eighty")
    done = subprocess.run([sys.executable, "-m", "supportbot.cli", "worker"], env=env, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode != 0
    assert "WORKER_HTTP_PORT: Input should be a valid integer" in done.stderr, done.stderr
