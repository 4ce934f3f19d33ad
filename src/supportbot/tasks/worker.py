"""A Celery worker process's long-lived parts, and ``supportbot worker``.

A worker holds what the bot process holds (``bot.runner.BotApp``: the aiogram bot and
dispatcher, the answer pipeline with its FAQ index and models, speech, delivery) and one
asyncio event loop in its own thread, where all of it lives. Each task (a thread of
Celery's ``threads`` pool) runs its coroutine on that loop and waits for it: the models
load once per process, the aiohttp session and the index are shared, and the loop also
runs this process's ``IndexRefresher`` (an FAQ change is served within
``FAQ_REFRESH_SECONDS``) and delivery loop (retries, operators' replies: rows are
claimed, so several deliverers are safe).

Why threads rather than prefork: the work is I/O and model calls that release the GIL
(ONNX, CTranslate2, llama.cpp run in their own pools); prefork would load every model
once per child. Start more worker processes (or hosts) to use more cores.

The parts are per process, hence a process-wide holder (:func:`current`): Celery calls
tasks as plain functions.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import threading
import time
from collections.abc import Coroutine
from typing import Any

from supportbot.config import SANDBOX_BOT_TOKEN, Settings
from supportbot.tasks.jobs import Job

log = logging.getLogger(__name__)


class CannotStart(Exception):
    """``supportbot worker`` cannot start (the message says why, for one line on stderr)."""


class BrokerUnreachable(CannotStart):
    """No broker configured, or it does not answer."""


class WorkerParts:
    """The bot's parts on an event loop of their own (one per worker process)."""

    def __init__(self, cfg: Settings, *, warm_up: bool = False) -> None:
        """``warm_up``: load the speech model and the local LLM now (as the bot process does),
        not on the first voice message or LLM question."""
        self.cfg = cfg
        self.warm_up = warm_up
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="supportbot-tasks-loop", daemon=True)
        self._thread.start()
        self._background: list[asyncio.Task] = []
        self._http: Any = None  # the /healthz + /metrics server (aiohttp AppRunner), WORKER_HTTP_PORT
        self.app = self._call(self._start())

    def _call(self, coro: Coroutine[Any, Any, Any]) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result()

    async def _start(self):
        from supportbot.assembly import prepare_index
        from supportbot.background import in_worker_thread
        from supportbot.bot.runner import BotApp
        from supportbot.pipeline import IndexRefresher

        cfg = self.cfg
        if cfg.sandbox_mode:
            token, api_url = SANDBOX_BOT_TOKEN, f"http://{cfg.sandbox_host}:{cfg.sandbox_port}"
        else:
            assert cfg.telegram_bot_token is not None
            token, api_url = cfg.telegram_bot_token.get_secret_value(), cfg.telegram_api_url
        app = BotApp(token=token, api_url=api_url, default_language=cfg.default_language,
                     refresh_seconds=cfg.faq.refresh_seconds)
        await in_worker_thread(prepare_index)(app.pipeline)
        self._background = [
            asyncio.create_task(IndexRefresher(app.pipeline.index, cfg.faq.refresh_seconds).run(), name="faq-refresh"),
            asyncio.create_task(app.delivery.run(), name="delivery"),
        ]
        if self.warm_up:
            from supportbot.bot.runner import _warm_up_local_llm

            self._background.append(asyncio.create_task(app.speech.warm_up(), name="speech-warm-up"))
            if app.pipeline.llm is not None and app.pipeline.llm.local is not None:
                self._background.append(
                    asyncio.create_task(_warm_up_local_llm(app.pipeline.llm.local), name="llm-warm-up"))
        if cfg.worker_http_port:  # /healthz and /metrics (task counts and timings) for Prometheus
            from supportbot.ops import http as ops_http

            try:
                self._http = await ops_http.start_server(cfg.worker_http_host, cfg.worker_http_port)
            except OSError as exc:
                raise CannotStart(f"cannot serve /healthz and /metrics on {cfg.worker_http_host}:"
                                  f"{cfg.worker_http_port} (WORKER_HTTP_HOST, WORKER_HTTP_PORT): "
                                  f"{exc.strerror or exc}") from None
        log.info("worker ready: FAQ index of %d texts for %d entries", app.pipeline.index.size,
                 app.pipeline.index.entry_count)
        return app

    @property
    def dp(self):
        return self.app.dp

    @property
    def bot(self):
        return self.app.bot

    def run(self, job: Job, args: tuple) -> Any:
        """Run a job for a task (called in a task thread; waits for it). Counted and timed in
        ``supportbot_tasks`` / ``supportbot_task_seconds`` (served on WORKER_HTTP_PORT)."""
        from django.db import close_old_connections

        from supportbot.ops.metrics import TASK_SECONDS, TASKS, TASKS_RUNNING

        close_old_connections()
        started, outcome = time.perf_counter(), "error"
        TASKS_RUNNING.inc()
        try:
            result = self._call(job.run(self, *args, repeatable=True)) if job.on_loop else job.run(*args)
            outcome = "ok"
            return result
        finally:
            TASKS_RUNNING.dec()
            TASKS.labels(job.name, outcome).inc()
            TASK_SECONDS.labels(job.name).observe(time.perf_counter() - started)
            close_old_connections()

    def close(self) -> None:
        async def stop() -> None:
            for task in self._background:
                task.cancel()
            for task in self._background:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
            if self._http is not None:
                await self._http.cleanup()
            self.app.speech.close()
            await self.app.bot.session.close()

        with contextlib.suppress(Exception):
            self._call(stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=5)


_current: WorkerParts | None = None
_current_lock = threading.Lock()


def current() -> WorkerParts:
    """This process's parts, started on first use (a worker started by ``celery -A``)."""
    global _current
    with _current_lock:
        if _current is None:
            from django.apps import apps

            if not apps.ready:  # `celery -A supportbot.tasks.app worker`: nobody set Django up
                import django

                os.environ.setdefault("DJANGO_SETTINGS_MODULE", "supportbot.web.settings")
                django.setup()
            from supportbot.assembly import process

            _current = WorkerParts(process().cfg)
        return _current


def check_broker(celery, url: str) -> None:
    """Connect once (a few seconds at most): a wrong or dead broker is reported, not retried."""
    from supportbot.tasks.queue import safe_url

    try:
        with celery.connection_for_write() as connection:
            connection.ensure_connection(max_retries=1, interval_start=0, interval_step=0.5, timeout=5)
    except Exception as exc:  # noqa: BLE001 - each transport raises its own errors (refused, auth, DNS)
        raise BrokerUnreachable(f"cannot reach the task queue at {safe_url(url)} (CELERY_BROKER_URL): "
                                f"{type(exc).__name__}: {exc}") from None


def run_worker(cfg: Settings, *, concurrency: int | None = None, warm_up: bool = True) -> int:
    """``supportbot worker``: check the broker, start this process's parts, run Celery's worker
    (threads pool) until SIGTERM / SIGINT (Celery's warm shutdown: running tasks finish)."""
    global _current
    from supportbot.tasks.app import make_app
    from supportbot.tasks.queue import safe_url

    url = cfg.tasks.broker_url
    if url is None:
        raise BrokerUnreachable("CELERY_BROKER_URL is not set: a worker takes its tasks from a broker, e.g. "
                                "redis://127.0.0.1:6379/0 (without one, the bot does the work itself)")
    celery = make_app(cfg.tasks)
    check_broker(celery, url)
    parts = WorkerParts(cfg, warm_up=warm_up)
    with _current_lock:
        _current = parts
    log.info("worker: tasks from %s, %d threads, visibility timeout %.0f s", safe_url(url),
             concurrency or cfg.tasks.concurrency, cfg.tasks.visibility_timeout)
    worker = celery.Worker(pool="threads", concurrency=concurrency or cfg.tasks.concurrency,
                           hostname=f"supportbot-{os.getpid()}@{socket.gethostname()}",
                           without_gossip=True, without_mingle=True, without_heartbeat=True,
                           loglevel="WARNING", quiet=True)
    try:
        worker.start()
    finally:
        parts.close()
        with _current_lock:
            _current = None
    return int(worker.exitcode or 0)
