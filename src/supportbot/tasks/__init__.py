"""The task queue: updates (with their speech and LLM answers), delivery and FAQ re-indexing.

One code path, two places to run it. Each job is a plain function (``jobs``); the
dispatcher (``queue.submit``) publishes it to Celery when ``CELERY_BROKER_URL`` is set
(``app``: the Celery app; ``worker``: what a worker process holds) and otherwise runs
the very same function in the process that submitted it. See docs/task-queue.md.
"""
