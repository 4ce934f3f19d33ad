"""The Celery app, configured from the settings (``cfg.tasks``).

``celery -A supportbot.tasks.app worker`` finds :data:`app` here; ``supportbot worker``
(the command the containers run) builds the same app and also starts the worker
process's parts first (``tasks.worker``).

What the configuration guarantees:

- **late acknowledgement** (``task_acks_late``, ``task_reject_on_worker_lost``): a task is
  acknowledged when it finished, so a worker that dies (SIGKILL, OOM, a lost host) leaves
  it on the broker and another worker runs it; the jobs are idempotent for that reason;
- **visibility timeout** longer than the slowest task (``cfg.tasks.visibility_timeout``:
  the longest voice message, both LLM steps with their retries, plus a margin): Redis
  gives an unacknowledged task to another worker after that long, so a shorter one would
  run a slow task twice while the first run is still going;
- **one task reserved per thread** (``worker_prefetch_multiplier=1``): a worker busy with
  an LLM answer does not sit on updates another worker could answer now;
- **JSON only**, never pickle: a message on the broker is data, not code.
"""

from __future__ import annotations

import functools
from typing import Any

from celery import Celery

from supportbot.config import TaskSettings
from supportbot.tasks import jobs

#: The queue every job goes to (one queue: an update's work is one task).
QUEUE = "supportbot"

#: Publishing: one quick retry, then the caller runs the job itself (``queue.submit``).
PUBLISH_RETRY = {"max_retries": 1, "interval_start": 0.1, "interval_step": 0.2, "interval_max": 0.3}


def celery_config(tasks: TaskSettings) -> dict[str, Any]:
    return {
        "broker_url": tasks.broker_url,
        "broker_connection_retry_on_startup": True,
        "broker_connection_timeout": 3,
        "broker_transport_options": {
            "visibility_timeout": tasks.visibility_timeout,
            "socket_connect_timeout": 3,  # Redis: a dead broker is reported, not waited on
            # Redis: look for tasks of dead workers every 5 s (default: about every 100 s), so a
            # task comes back soon after its visibility timeout ran out.
            "unacked_restore_interval": 5,
            "unacked_restore_throttle": 1,
        },
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "worker_prefetch_multiplier": 1,
        "worker_concurrency": tasks.concurrency,
        "task_serializer": "json",
        "result_serializer": "json",
        "event_serializer": "json",
        "accept_content": ["json"],
        "task_ignore_result": True,
        "task_default_queue": QUEUE,
        "worker_hijack_root_logger": False,  # supportbot.logs owns logging (redaction, JSON)
        "worker_redirect_stdouts": False,
        "worker_send_task_events": False,
    }


def _settings_tasks() -> TaskSettings:
    from supportbot.assembly import process

    return process().cfg.tasks


def _task(job: jobs.Job):
    def run(*args: Any) -> None:
        from supportbot.tasks.worker import current

        current().run(job, args)

    run.__name__ = run.__qualname__ = job.name.rsplit(".", 1)[-1]
    run.__doc__ = job.run.__doc__
    return run


def make_app(tasks: TaskSettings | None = None) -> Celery:
    """A Celery app with every job registered; ``tasks``: its settings (default: read from the
    environment when the app is first used)."""
    celery = Celery("supportbot", set_as_current=False)
    celery.add_defaults(lambda: celery_config(tasks or _settings_tasks()))
    for job in jobs.ALL:
        celery.task(name=job.name, shared=False, acks_late=True, reject_on_worker_lost=True)(_task(job))
    return celery


@functools.lru_cache(maxsize=4)
def publisher(tasks: TaskSettings) -> Celery:
    """The app a process publishes with (one per broker setting; its connections are pooled)."""
    return make_app(tasks)


#: For ``celery -A supportbot.tasks.app``; configured from the settings when first used.
app = make_app()
