"""Faults under load, each counted (questions sent, answered, lost, duplicated): a production stack
in processes (the sandbox Bot API posting to ``supportbot webhook``, a ``supportbot worker`` on
Redis, a database of its own: ``tests/ops/load_stack.py``) answers customers, one FAQ question
each, while

- the database server is restarted (``service postgresql restart``; MariaDB shut down and started; run by
  ``tests/databases.py`` on PostgreSQL and MariaDB, skipped on SQLite, which has no server);
- Redis is stopped, then started again (the webhook runs the work itself meanwhile, the worker
  reconnects; what waited on Redis is answered once it is back);
- the Bot API answers a storm of 429s (``retry_after``), as Telegram's flood control does.

Nothing may be lost or answered twice. (A worker killed with SIGKILL mid-task, one update
delivered three times and to two workers at once, and a wrong secret have their own tests:
``tests/tasks/test_worker_end_to_end.py``, ``tests/bot/test_webhook.py``.)
"""

from __future__ import annotations

import asyncio
import os
import time

import pytest

from supportbot.sandbox.client import SandboxClient

from .load_stack import (
    Customers,
    PrivateRedis,
    Stack,
    database_server,
    ensure_service_running,
    metric,
    own_database,
    restart_database_server,
)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(420)]

RATE = 8.0  # questions per second
QUESTIONS = 40


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    folder = tmp_path_factory.mktemp("faults")
    redis = PrivateRedis(folder / "redis")
    redis.start()
    try:
        with own_database(folder, f"sbfaults_{os.getpid()}") as url:
            stack = Stack(folder, url, redis.url)
            stack.redis = redis  # type: ignore[attr-defined]
            try:
                asyncio.run(stack.start())
                yield stack
            finally:
                stack.stop()
    finally:
        redis.stop()
        # This process's own connections (pytest-django's, on the server a test restarted) are
        # dead: closed here, so the session's teardown connects afresh to drop its test database.
        from django.db import connections

        connections.close_all()


@pytest.fixture
async def api(stack):
    async with SandboxClient(stack.sandbox_url) as client:
        yield client
        await client.clear_faults()


def _alive(stack: Stack) -> None:
    for name, proc in stack.processes.items():
        assert proc.poll() is None, f"{name} exited with {proc.returncode}:\n{stack.logs()}"


async def test_the_database_restarted_under_load_loses_nothing_and_doubles_nothing(stack, api):
    service = database_server()
    if service is None:
        pytest.skip("SQLite has no server to restart: tests/databases.py runs this on PostgreSQL and MariaDB")
    if service != "postgresql" and os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        # In CI, Debian's `service mariadb start` (no /etc/mysql/debian.cnf here) gave up after its
        # 30 s ping and left the server down for the run's database teardown: run by hand only.
        pytest.skip("MariaDB restart not run in CI (Debian's init script leaves the server down here)")
    customers = Customers(api, 810_000)
    restarted: dict[str, float] = {}

    async def restart() -> None:
        loop = asyncio.get_running_loop()
        began = loop.time()
        await asyncio.to_thread(restart_database_server, service)
        restarted["seconds"] = loop.time() - began

    try:
        await customers.ask(QUESTIONS, rate=RATE, during=lambda i: restart() if i == 10 else None)
        counts = await customers.wait_answered(timeout=90)
    finally:
        await asyncio.to_thread(ensure_service_running, service)
    print(f"{service} restarted ({restarted.get('seconds', 0):.1f} s) during the load: {counts.line()}")
    _alive(stack)
    assert (counts.lost, counts.duplicated) == (0, 0), f"{counts.line()}\n{stack.logs()}"


def _once_only() -> None:
    """Redis and the Bot API do not depend on the database engine: these run in the default
    (SQLite) run only, keeping the PostgreSQL and MariaDB runs of tests/databases.py short."""
    if database_server() is not None:
        pytest.skip("runs once, in the default test run: the fault is not the database's")


async def test_redis_stopped_then_started_under_load_loses_nothing_and_doubles_nothing(stack, api):
    _once_only()
    redis: PrivateRedis = stack.redis  # type: ignore[attr-defined]
    customers = Customers(api, 820_000)
    fallback_before = stack.log("webhook").count("running it in this process")

    down: dict[str, float] = {}

    def outage(i: int) -> None:
        if i == 10:
            redis.stop()
            down["at"] = time.monotonic()
        elif i == 25:
            redis.start()
            down["for"] = time.monotonic() - down["at"]

    try:
        await customers.ask(QUESTIONS, rate=RATE, during=outage)
    finally:
        if redis.process is None or redis.process.poll() is not None:
            redis.start()
    worker_restarted = stack.processes["worker"].poll() is not None
    if worker_restarted:
        # Celery/kombu's own race on a lost Redis connection (closing the channel restores the
        # unacknowledged tasks through a connection already gone: "Unrecoverable error:
        # AttributeError(... 'hostname')"; celery/kombu#582) stops the worker now and then (1 run
        # in 6 here, under load). Its supervisor starts it again (compose: restart:
        # unless-stopped); what it held comes back after the visibility timeout, once.
        assert "Unrecoverable error" in stack.log("worker"), stack.logs()
        stack.restart("worker")
    counts = await customers.wait_answered(timeout=120)
    in_process = stack.log("webhook").count("running it in this process") - fallback_before
    print(f"Redis stopped for {down['for']:.1f} s during the load ({in_process} updates the webhook handled itself "
          f"meanwhile{'; the worker stopped on a kombu error and was started again' if worker_restarted else ''}): "
          f"{counts.line()}")
    _alive(stack)
    assert (counts.lost, counts.duplicated) == (0, 0), f"{counts.line()}\n{stack.logs()}"
    assert in_process > 0, "the webhook never fell back to working in process while Redis was down"
    # The worker is connected again: a question asked now is answered by it.
    before = await metric(f"http://127.0.0.1:{stack.worker_port}/metrics", "supportbot_tasks_total")
    after_outage = Customers(api, 825_000)
    await after_outage.ask(3, rate=RATE)
    assert (await after_outage.wait_answered(timeout=60)).lost == 0
    assert await metric(f"http://127.0.0.1:{stack.worker_port}/metrics", "supportbot_tasks_total") >= before + 3


async def test_a_429_storm_from_the_bot_api_under_load_loses_nothing_and_doubles_nothing(stack, api):
    _once_only()
    customers = Customers(api, 830_000)
    storm = 30

    async def flood(i: int) -> None:
        if i == 10:  # the next 30 sendMessage calls, whoever makes them, are told to wait 1-2 s
            await api.inject_fault("sendMessage", 429, count=storm // 2, retry_after=1)
            await api.inject_fault("sendMessage", 429, count=storm // 2, retry_after=2)

    await customers.ask(QUESTIONS, rate=RATE, during=lambda i: flood(i) if i == 10 else None)
    counts = await customers.wait_answered(timeout=90)
    hits = sum(f["hits"] for f in await api.faults())
    print(f"a storm of {hits} 429 answers (retry_after 1-2 s) during the load: {counts.line()}")
    _alive(stack)
    assert hits == storm
    assert (counts.lost, counts.duplicated) == (0, 0), f"{counts.line()}\n{stack.logs()}"
