"""The jobs: the functions the task queue runs, in a worker or in the process that submitted them.

Each :class:`Job` names one function. In-process mode calls it directly; a Celery worker's
task (``tasks.app``) is a thin wrapper that calls the same function with the worker
process's parts. So there is one implementation of each, whichever mode runs it.

- ``handle_update``: one claimed Telegram update, the whole way: the dispatcher's handlers,
  the conversation service, speech (a voice message is transcribed here) and the answer
  pipeline (FAQ, then the LLM steps), and the first delivery attempt of what it recorded.
- ``reindex``: embed the changed FAQ rows and tell every process (``knowledge.receivers``);
  each process's ``IndexRefresher`` then loads them within ``FAQ_REFRESH_SECONDS``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Protocol

from django.utils import timezone

from supportbot.background import in_worker_thread

if TYPE_CHECKING:  # the admin web imports this module for re-indexing: no aiogram there
    from aiogram import Bot, Dispatcher
    from aiogram.types import Update

log = logging.getLogger(__name__)


class UpdateParts(Protocol):
    """What handling an update needs: the dispatcher (handlers and their services) and the bot.
    The webhook's intake and a worker process's parts both have them."""

    dp: Dispatcher
    bot: Bot


@dataclass(frozen=True)
class Job:
    #: The Celery task's name (what a message on the broker carries).
    name: str
    #: The function that does the work (the same in both modes).
    run: Callable[..., Any]
    #: An ``async def`` that takes the process's :class:`UpdateParts` first and a keyword
    #: ``repeatable`` (True on a worker: the broker may deliver the task again); else a plain
    #: function that runs in a thread (a worker's task thread, or the caller's).
    on_loop: bool


#: A database that does not answer mid-update: seconds before each new try (about a minute in
#: all, longer than a database server's restart), then the update fails as any other error.
DATABASE_RETRY_SECONDS = (0.5, 1, 2, 4, 8, 15, 30)


def redelivery_window() -> timedelta:
    """How far back a repeated run looks for its first run's work when the update's claim is
    gone (``services.handled_before``): the broker hands a task on after its visibility
    timeout; twice that, and at least an hour, covers a queue that was slow to reach it again."""
    from supportbot.assembly import process

    return timedelta(seconds=max(3600.0, 2 * process().cfg.tasks.visibility_timeout))


async def handle_update(parts: UpdateParts, update: Update | dict, *, repeatable: bool = False) -> None:
    """Handle a claimed update: once, even when its task is delivered again.

    The intake claimed it (``bot.intake``); this runs the handlers without claiming again.
    On a worker (``repeatable``) the task runs again when its worker died before
    acknowledging it; if the first run already recorded a reply, the outbox delivers that
    reply (exactly once: the rows are claimed) and this run does nothing
    (``services.handled_before``). In process the update runs once, so nothing is looked up.
    """
    from aiogram.types import Update

    from supportbot.background import database_unavailable
    from supportbot.bot.intake import process_claimed
    from supportbot.support import services

    if not isinstance(update, Update):
        update = Update.model_validate(update, context={"bot": parts.bot})
    message = update.message
    waits = iter(DATABASE_RETRY_SECONDS)
    while True:
        try:
            if repeatable and message is not None and message.from_user is not None and await in_worker_thread(
                    services.handled_before)(customer_id=message.from_user.id, telegram_message_id=message.message_id,
                                             bot_id=parts.bot.id, update_id=update.update_id,
                                             since=timezone.now() - redelivery_window()):
                log.info("update %s: already answered by an earlier run; not again", update.update_id)
                return
            await process_claimed(parts.dp, parts.bot, update)
            return
        except Exception as exc:
            # The database went away mid-update (a restart, a failover): the update was claimed,
            # so nobody else will handle it; try again when it answers. What the failed run
            # recorded is found by handled_before (a reply: delivered by the outbox, not written
            # again; only the question's log row: removed and handled from the start).
            wait = next(waits, None)
            if not database_unavailable(exc) or wait is None:
                raise
            log.warning("update %s: the database is unavailable (%s); trying again in %g s",
                        update.update_id, type(exc).__name__, wait)
            await asyncio.sleep(wait)
            repeatable = True


def reindex(entry_ids: list[int]) -> None:
    """Embed what changed in these FAQ entries with this process's embedder; bump the version."""
    from supportbot import assembly

    assembly.sync_changed_entries(None, entry_ids=entry_ids)


HANDLE_UPDATE = Job("supportbot.handle_update", handle_update, on_loop=True)
REINDEX = Job("supportbot.reindex", reindex, on_loop=False)

ALL: tuple[Job, ...] = (HANDLE_UPDATE, REINDEX)
