"""Shared fixtures: a real SQLite file database (pytest-django), the sandbox Bot API
over real HTTP on an ephemeral port, and the unmodified bot polling it."""

from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path

import pytest
from asgiref.sync import sync_to_async

from supportbot.config import SANDBOX_BOT_TOKEN, get_settings

# LLM steps only where a test builds its own chain: with the defaults every bot test
# would load the 1.1 GB local model, and no test may reach a real API with a developer's key.
os.environ["LOCAL_LLM_ENABLED"] = "false"
os.environ["API_LLM_ENABLED"] = "false"
get_settings.cache_clear()

SAMPLE_FAQ = Path(__file__).resolve().parents[1] / "src" / "supportbot" / "data" / "sample_faq.json"


@pytest.fixture(autouse=True)
def _logging_as_found():
    """Tests that run the CLI in-process set up logging (supportbot.logs): take its handler,
    levels and record factory away again, so no test's logging set-up outlives it."""
    from supportbot.logs import QUIET_LOGGERS, StderrHandler

    root = logging.getLogger()
    names = ["", "supportbot", *QUIET_LOGGERS]
    levels = {name: logging.getLogger(name).level for name in names}
    handlers, factory = list(root.handlers), logging.getLogRecordFactory()
    yield
    for handler in root.handlers[:]:
        if isinstance(handler, StderrHandler) and handler not in handlers:
            root.removeHandler(handler)
    for name, level in levels.items():
        logging.getLogger(name).setLevel(level)
    logging.setLogRecordFactory(factory)


@pytest.fixture
def sample_faq(transactional_db):
    """The shipped sample FAQ, imported through the product's import path (embeds it)."""
    from supportbot.support.faq_io import import_faq

    import_faq(SAMPLE_FAQ)
    return SAMPLE_FAQ


@pytest.fixture(scope="session", autouse=True)
def _postgres_sessions_closed_at_the_end(request):
    """PostgreSQL refuses to drop the test database while worker threads (``sync_to_async``)
    still hold connections to it; end them so pytest-django's teardown can drop it."""
    if not os.environ.get("DATABASE_URL", "").startswith("postgres"):
        yield
        return
    request.getfixturevalue("django_db_setup")
    yield
    from django.db import connection

    with request.getfixturevalue("django_db_blocker").unblock(), connection.cursor() as cursor:
        cursor.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                       "WHERE datname = current_database() AND pid <> pg_backend_pid()")


@pytest.fixture
def fake(monkeypatch):
    """The bag-of-words fake model (unit tests), also for the after-commit sync that FAQ saves trigger."""
    from .fakes import BagOfWordsEmbedder

    fake = BagOfWordsEmbedder(dim=1024)
    monkeypatch.setattr("supportbot.assembly.default_embedder", lambda: fake)
    return fake


@pytest.fixture
async def sandbox():
    from supportbot.sandbox.server import start_server

    server = await start_server("127.0.0.1", 0, token=SANDBOX_BOT_TOKEN)
    try:
        yield server
    finally:
        await server.close()


@pytest.fixture
async def customer_api(sandbox):
    from supportbot.sandbox.client import SandboxClient

    async with SandboxClient(sandbox.url) as client:
        yield client


@pytest.fixture
async def bot_app(sandbox, transactional_db):
    """The real bot process parts, polling the sandbox over HTTP."""
    from supportbot.bot.runner import BotApp

    app = BotApp(token=SANDBOX_BOT_TOKEN, api_url=sandbox.url, default_language="en",
                 refresh_seconds=1.0, polling_timeout=1, outbox_interval=0.2)
    await app.start()
    try:
        yield app
    finally:
        await app.stop()


async def wait_until(predicate, *, timeout: float = 5.0, interval: float = 0.05):
    """Poll a sync predicate (run in a thread: it may use the ORM) until it is truthy."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        value = await sync_to_async(predicate)()
        if value:
            return value
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        await asyncio.sleep(interval)
