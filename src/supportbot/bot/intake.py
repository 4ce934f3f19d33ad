"""Where Telegram updates enter the bot: each one is claimed once, then handed to the work.

Telegram redelivers an update it got no 2xx for, for up to 24 h; with webhooks it may reach two
workers at once; updates arrive out of order. So every update is claimed by ``(bot id,
update_id)`` with one INSERT under a unique constraint (``support.services.claim_update``)
before any work, and only the process whose insert won does the work.

Two front doors, one claim:

- webhook (``bot/webhook.py``): the request handler claims the update (then answers Telegram
  200) and passes it to :meth:`UpdateIntake.hand_off`, which runs it with
  :data:`CLAIMED` set, so the dispatcher does not claim it a second time;
- polling: :class:`ClaimMiddleware`, an outer middleware on the dispatcher's ``update``
  observer, claims every update that arrives without :data:`CLAIMED`.

Whoever does the work later (this process, or a task worker) runs :func:`process_claimed`,
which never rejects the update as "already claimed": it holds the claim.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiogram import BaseMiddleware, Bot, Dispatcher
from aiogram.types import TelegramObject, Update
from django.db import Error as DatabaseError

from supportbot.background import in_worker_thread
from supportbot.ops import metrics
from supportbot.support import services

log = logging.getLogger(__name__)

#: Keyword given to ``Dispatcher.feed_update`` for an update this process already claimed.
CLAIMED = "update_claimed"

#: Polling: seconds to wait before claim attempt 2, 3, ... while the database does not answer.
#: Polling has already confirmed the update to Telegram (aiogram advances the offset as it
#: reads), so giving up loses it; the waits are bounded so a dead database still shows.
POLLING_CLAIM_RETRIES = (0.5, 1.0, 2.0, 4.0, 8.0)


async def claim(bot_id: int, update_id: int) -> bool:
    """True when this process claimed the update; False when someone already had it.
    A database failure is raised (the caller must not do the work)."""
    return await in_worker_thread(services.claim_update)(bot_id=bot_id, update_id=update_id)


def count(outcome: str, kind: str = "unknown") -> None:
    """Count an update's intake outcome (``supportbot_updates{kind, outcome}``): accepted
    (claimed, work started), duplicate (claimed before), unauthorized, bad_request, claim_failed."""
    metrics.UPDATES.labels(kind, outcome).inc()


def update_kind(update: Update) -> str:
    """The update's type (``message``, ``callback_query``, ...), as Telegram names it."""
    try:
        return update.event_type
    except Exception:  # noqa: BLE001 (aiogram raises for a type it does not know)
        return "unknown"


class ClaimMiddleware(BaseMiddleware):
    """Polling's claim: an update that arrives without :data:`CLAIMED` is claimed here, first.

    An update someone else claimed (a second bot process on the same database, an update
    the webhook took before a switch to polling) is dropped without any work.
    """

    def __init__(self, retries: tuple[float, ...] = POLLING_CLAIM_RETRIES) -> None:
        self.retries = retries

    async def __call__(self, handler: Callable[[TelegramObject, dict[str, Any]], Awaitable[Any]],
                       event: TelegramObject, data: dict[str, Any]) -> Any:
        if data.get(CLAIMED) or not isinstance(event, Update):
            return await handler(event, data)
        bot: Bot = data["bot"]
        kind = update_kind(event)
        for wait in (*self.retries, None):
            try:
                claimed = await claim(bot.id, event.update_id)
                break
            except DatabaseError as exc:
                if wait is None:
                    count("claim_failed", kind)
                    raise
                log.warning("update %s: the claim store failed (%s); trying again in %g s",
                            event.update_id, type(exc).__name__, wait)
                await asyncio.sleep(wait)
        if not claimed:
            log.info("update %s was already claimed: skipped", event.update_id)
            count("duplicate", kind)
            return None
        count("accepted", kind)
        return await handler(event, data)


async def process_claimed(dp: Dispatcher, bot: Bot, update: Update, **data: Any) -> Any:
    """Run the handlers for an update this process (or the one that queued it) claimed."""
    return await dp.feed_update(bot, update, **{**data, CLAIMED: True})


class UpdateIntake:
    """What happens to a claimed update: :meth:`hand_off` is the one place it leaves the
    request that claimed it. In process: a tracked task, so a graceful shutdown can wait
    for the updates in flight (:meth:`drain`)."""

    def __init__(self, dp: Dispatcher, bot: Bot) -> None:
        self.dp = dp
        self.bot = bot
        self._in_flight: set[asyncio.Task] = set()

    @property
    def in_flight(self) -> int:
        return len(self._in_flight)

    def hand_off(self, update: Update) -> None:
        """Start the work on a claimed update; returns at once (the webhook answers 200 next)."""
        task = asyncio.create_task(self._process(update), name=f"update-{update.update_id}")
        self._in_flight.add(task)
        task.add_done_callback(self._in_flight.discard)

    async def _process(self, update: Update) -> None:
        # The task queue decides where the work runs: on a Celery worker when CELERY_BROKER_URL
        # is set (this returns once the broker has it), else here; the same job either way
        # (supportbot.tasks.jobs.handle_update -> process_claimed).
        from supportbot.tasks import jobs, queue

        try:
            await queue.submit(jobs.HANDLE_UPDATE, update, parts=self)
        except Exception:  # the errors router handled what it could; this is the last word
            log.exception("update %s failed", update.update_id)

    async def drain(self, timeout: float) -> int:
        """Wait up to ``timeout`` s for the updates in flight; the number still running then."""
        if self._in_flight:
            log.info("waiting for %d update(s) in flight", len(self._in_flight))
            await asyncio.wait(list(self._in_flight), timeout=timeout)
        return len(self._in_flight)

    async def cancel(self) -> None:
        for task in list(self._in_flight):
            task.cancel()
        for task in list(self._in_flight):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task


class ClaimPruner:
    """Deletes claims older than Telegram's 24 h redelivery window, in bounded batches.

    Every intake process runs one; the work is idempotent, so several never conflict.
    """

    def __init__(self, interval: float = 600.0, batch: int = 1000, pause: float = 0.1) -> None:
        self.interval = interval
        self.batch = batch
        self.pause = pause

    async def prune_once(self) -> int:
        total = 0
        while True:
            deleted = await in_worker_thread(services.prune_update_claims)(batch=self.batch)
            total += deleted
            if deleted < self.batch:
                return total
            await asyncio.sleep(self.pause)  # let the claims in between through

    async def run(self) -> None:
        while True:
            try:
                deleted = await self.prune_once()
                if deleted:
                    log.info("pruned %d update claims older than 24 h", deleted)
            except DatabaseError as exc:
                log.warning("could not prune update claims: %s", exc)
            await asyncio.sleep(self.interval)
