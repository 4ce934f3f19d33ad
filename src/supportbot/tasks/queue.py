"""The dispatcher: ``submit(job, ...)`` runs a job on Celery when a broker is configured, and
in this process otherwise. The job is the same function either way (``tasks.jobs``).

A broker that does not answer is not a lost update: the update was already claimed (a
redelivery from Telegram would be dropped as a duplicate), so the job runs here instead,
and the warning says so. The same holds for re-indexing (the admin embeds in-request, as
without a broker).
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import urlsplit

from pydantic import BaseModel

from supportbot.background import in_worker_thread
from supportbot.tasks.jobs import REINDEX, Job, UpdateParts

log = logging.getLogger(__name__)


def broker_url() -> str | None:
    from supportbot.assembly import process

    return process().cfg.tasks.broker_url


def safe_url(url: str) -> str:
    """The broker URL without its password (for messages and logs)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    user = f"{parts.username}@" if parts.username else ""
    return f"{parts.scheme}://{user}{host}{parts.path}"


def _as_message(arg: Any) -> Any:
    """What goes on the broker: JSON data (an aiogram update as Telegram sent it)."""
    if isinstance(arg, BaseModel):
        return arg.model_dump(mode="json", exclude_unset=True)
    return arg


def publish(job: Job, args: tuple) -> bool:
    """Put the job on the broker; False (logged) when the broker cannot take it. Blocking."""
    from kombu.exceptions import OperationalError

    from supportbot.assembly import process
    from supportbot.tasks.app import PUBLISH_RETRY, publisher

    tasks = process().cfg.tasks
    assert tasks.broker_url is not None
    try:
        publisher(tasks).tasks[job.name].apply_async(
            args=[_as_message(a) for a in args], retry=True, retry_policy=PUBLISH_RETRY)
    except (OperationalError, OSError) as exc:
        log.warning("the task queue at %s did not take %s (%s): running it in this process",
                    safe_url(tasks.broker_url), job.name, type(exc).__name__)
        return False
    return True


async def submit(job: Job, *args: Any, parts: UpdateParts | None = None) -> None:
    """Run ``job(*args)``: on a Celery worker when ``CELERY_BROKER_URL`` is set (returns once
    the broker has it), else here, awaited (``parts``: this process's, for jobs that need them)."""
    if broker_url() is not None and await in_worker_thread(publish)(job, args):
        return
    if job.on_loop:
        assert parts is not None, f"{job.name} runs with the process's bot parts"
        await job.run(parts, *args)
    else:
        await in_worker_thread(job.run)(*args)


def submit_now(job: Job, *args: Any) -> None:
    """``submit`` for sync callers and thread-run jobs (signal receivers): publishes, or runs it
    in the calling thread."""
    assert not job.on_loop, f"{job.name} runs on an event loop: use submit()"
    if broker_url() is not None and publish(job, args):
        return
    job.run(*args)


def faq_changed(sender, *, entry_ids, **kwargs) -> None:
    """``support.signals.faq_changed`` (after commit): re-index on a worker when there is a
    broker, so the admin's request does not embed; in this process otherwise."""
    submit_now(REINDEX, sorted(entry_ids))
