"""Prometheus metrics, all named ``supportbot_*``; :func:`render` is what ``GET /metrics`` serves.

What is counted where it happens (import the objects below and ``.labels(...).inc()`` /
``.observe()``): updates by kind and outcome, answers by source, the seconds each stage of an
answer took (speech, match, llm, deliver, total), LLM steps and speech transcriptions, deliveries.

What is counted when Prometheus asks (collectors, run inside :func:`render`): messages in the
outbox by delivery status (one ``GROUP BY`` on the database), the task queue's depth (from the
broker, when ``CELERY_BROKER_URL`` is set) and the models this process has ready.

Several processes (uvicorn workers, Celery workers): prometheus-client's multiprocess mode. When
``PROMETHEUS_MULTIPROC_DIR`` is set (to an empty directory, before the processes start; it is
read when prometheus-client is imported) every process writes its counters there and
:func:`render` sums them; without it, the one process's own values are served. The metric
objects belong to no global registry: :func:`render` builds the registry it serves each time.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import Collector

log = logging.getLogger(__name__)

if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):  # the metrics below write their files there at once
    os.makedirs(os.environ["PROMETHEUS_MULTIPROC_DIR"], exist_ok=True)

#: Seconds: from a cached FAQ match (milliseconds) to a local LLM answer (tens of seconds).
STAGE_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)

#: Updates from Telegram. kind: message, voice, callback_query, command, other...; outcome: handled,
#: duplicate (claimed before), rejected (bad secret, bad body), error, ...
UPDATES = Counter("supportbot_updates", "Telegram updates received, by kind and outcome",
                  ["kind", "outcome"], registry=None)
#: Messages the bot sent on its own, by source (faq, llm, llm_local, handover, smalltalk, system...).
ANSWERS = Counter("supportbot_answers", "Automatic answers, by source", ["source"], registry=None)
#: stage: speech, match, llm, deliver, total (one update, in to out).
STAGE_SECONDS = Histogram("supportbot_stage_seconds", "Seconds each stage of answering took",
                          ["stage"], buckets=STAGE_BUCKETS, registry=None)
#: step: the LLM step (local, api); outcome: answered, refused, timeout, error, busy...
LLM_SECONDS = Histogram("supportbot_llm_seconds", "Seconds an LLM step took, by step and outcome",
                        ["step", "outcome"], buckets=STAGE_BUCKETS, registry=None)
LLM_FIRST_TOKEN_SECONDS = Histogram("supportbot_llm_first_token_seconds", "Seconds to an LLM step's first token",
                                    ["step"], buckets=STAGE_BUCKETS, registry=None)
SPEECH_SECONDS = Histogram("supportbot_speech_seconds", "Seconds a voice message took to transcribe",
                           buckets=STAGE_BUCKETS, registry=None)
SPEECH_AUDIO_SECONDS = Histogram("supportbot_speech_audio_seconds", "Length of the transcribed voice messages",
                                 buckets=(1, 2, 5, 10, 20, 30, 60, 120, 300, 600), registry=None)
#: Outgoing messages, by the outcome of one send attempt: sent, retry, failed, rate_limited...
DELIVERIES = Counter("supportbot_deliveries", "Send attempts of outgoing messages, by outcome",
                     ["outcome"], registry=None)

METRICS: tuple[Collector, ...] = (UPDATES, ANSWERS, STAGE_SECONDS, LLM_SECONDS, LLM_FIRST_TOKEN_SECONDS,
                                  SPEECH_SECONDS, SPEECH_AUDIO_SECONDS, DELIVERIES)

#: Reminders that a ticket waits for a person longer than OVERDUE_MINUTES (support.aftercare).
OVERDUE_TICKETS = Counter("supportbot_overdue_tickets", "Tickets re-notified as waiting too long for a person",
                          registry=None)
METRICS = (*METRICS, OVERDUE_TICKETS)

# Telegram's send limits (supportbot.bot.limits): time sends waited for their slot, and 429s,
# by scope: chat (one chat paused) or bot (429s on several chats: the whole bot paused).
SEND_LIMIT_WAIT_SECONDS = Histogram("supportbot_send_limit_wait_seconds",
                                    "Seconds a send waited for its slot under Telegram's limits",
                                    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0), registry=None)
TELEGRAM_RATE_LIMITED = Counter("supportbot_telegram_rate_limited", "429 answers from Telegram, by scope",
                                ["scope"], registry=None)
METRICS = (*METRICS, SEND_LIMIT_WAIT_SECONDS, TELEGRAM_RATE_LIMITED)

# The task queue's workers (``supportbot worker``, WORKER_HTTP_PORT): each task a worker ran, by the
# job's Celery name (supportbot.handle_update, supportbot.reindex) and how it ended (ok, error), and
# how long it ran (the job itself, from the thread taking it to its end).
TASKS = Counter("supportbot_tasks", "Celery tasks run by this worker, by task and outcome",
                ["task", "outcome"], registry=None)
TASK_SECONDS = Histogram("supportbot_task_seconds", "Seconds a Celery task ran on this worker",
                         ["task"], buckets=STAGE_BUCKETS, registry=None)
#: Tasks running now on this worker (its threads busy with a job).
TASKS_RUNNING = Gauge("supportbot_tasks_running", "Celery tasks running on this worker now",
                      registry=None, multiprocess_mode="livesum")
METRICS = (*METRICS, TASKS, TASK_SECONDS, TASKS_RUNNING)

#: The Celery queues whose depth is reported (``supportbot_task_queue_depth``): the one queue
#: every job goes to (``supportbot.tasks.app.QUEUE``; not imported here: that imports Celery).
DEFAULT_TASK_QUEUES = ("supportbot",)


@contextmanager
def timed(stage: str) -> Iterator[None]:
    """``with timed("match"): ...`` observes the block's seconds in ``supportbot_stage_seconds``."""
    started = time.perf_counter()
    try:
        yield
    finally:
        STAGE_SECONDS.labels(stage).observe(time.perf_counter() - started)


def observe_stage(stage: str, seconds: float) -> None:
    STAGE_SECONDS.labels(stage).observe(max(0.0, seconds))


def count_update(kind: str, outcome: str) -> None:
    """One update of ``kind`` (Telegram's name: message, callback_query...) ended in ``outcome``."""
    UPDATES.labels(kind, outcome).inc()


# -- counted when scraped ------------------------------------------------------------------
class OutboxCollector(Collector):
    """``supportbot_outbox_messages{status}``: outgoing messages by delivery status, from the database."""

    def collect(self) -> Iterable[GaugeMetricFamily]:
        family = GaugeMetricFamily("supportbot_outbox_messages", "Outgoing messages by delivery status",
                                   labels=["status"])
        try:
            from django.db.models import Count

            from supportbot.support.models import Message

            counts = dict(Message.objects.exclude(delivery_status=Message.Delivery.NOT_APPLICABLE)
                          .order_by().values_list("delivery_status").annotate(n=Count("id")))
        except Exception as exc:  # noqa: BLE001 - a scrape must not fail because the database did
            log.warning("metrics: cannot count the outbox: %s", type(exc).__name__)
            return []
        for status in Message.Delivery.values:
            if status:
                family.add_metric([status], counts.get(status, 0))
        return [family]


class TaskQueueCollector(Collector):
    """``supportbot_task_queue_depth{queue}``: tasks waiting in the broker (Redis or AMQP)."""

    def __init__(self, broker_url: str | None, queues: Iterable[str] = DEFAULT_TASK_QUEUES,
                 timeout: float = 1.0) -> None:
        self.broker_url, self.queues, self.timeout = broker_url, tuple(queues), timeout

    def collect(self) -> Iterable[GaugeMetricFamily]:
        if not self.broker_url:
            return []
        family = GaugeMetricFamily("supportbot_task_queue_depth", "Tasks waiting in the broker's queue",
                                   labels=["queue"])
        try:
            for queue, depth in queue_depths(self.broker_url, self.queues, timeout=self.timeout).items():
                family.add_metric([queue], depth)
        except Exception as exc:  # noqa: BLE001 - a scrape must not fail because the broker did
            log.warning("metrics: cannot read the task queue depth: %s", type(exc).__name__)
            return []
        return [family]


def queue_depths(broker_url: str, queues: Iterable[str], *, timeout: float = 1.0) -> dict[str, int]:
    """Tasks waiting in each queue. Redis: the list's length (Celery's Redis transport keeps a
    queue as a list, with priority levels as further lists named ``queue\\x06\\x16N``); AMQP: the
    message count of a passive declare."""
    if broker_url.startswith(("redis://", "rediss://", "unix://")):
        import redis

        client = redis.Redis.from_url(broker_url, socket_connect_timeout=timeout, socket_timeout=timeout)
        try:
            depths = {}
            for queue in queues:
                names = [queue, *(f"{queue}\x06\x16{p}" for p in range(1, 10))]
                with client.pipeline(transaction=False) as pipe:
                    for name in names:
                        pipe.llen(name)
                    depths[queue] = int(sum(pipe.execute()))
            return depths
        finally:
            client.close()
    from kombu import Connection

    depths = {}
    with Connection(broker_url, connect_timeout=timeout) as conn:
        channel = conn.default_channel
        for queue in queues:
            try:
                depths[queue] = int(channel.queue_declare(queue=queue, passive=True).message_count)
            except Exception:  # noqa: BLE001 - not declared yet: nothing waits in it
                depths[queue] = 0
                channel = conn.channel()  # a failed passive declare closes the channel
    return depths


class ModelsCollector(Collector):
    """``supportbot_model_ready{model}``: 1 when this process's model is loaded, 0 while it loads."""

    def collect(self) -> Iterable[GaugeMetricFamily]:
        from supportbot.ops.health import MODELS, READY

        family = GaugeMetricFamily("supportbot_model_ready", "Models of this process: 1 ready, 0 loading",
                                   labels=["model"])
        for name, state in sorted(MODELS.states().items()):
            family.add_metric([name], 1.0 if state == READY else 0.0)
        return [family]


def multiprocess_dir() -> str | None:
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None  # read by prometheus-client itself, too


def build_registry(*, broker_url: str | None = None, queues: Iterable[str] = DEFAULT_TASK_QUEUES,
                   database: bool = True) -> CollectorRegistry:
    """The registry one scrape reads: this process's metrics (or every process's, in multiprocess
    mode) and the collectors that count at scrape time."""
    registry = CollectorRegistry(auto_describe=True)
    if multiprocess_dir():
        from prometheus_client import multiprocess

        multiprocess.MultiProcessCollector(registry)
    else:
        from prometheus_client import GC_COLLECTOR, PLATFORM_COLLECTOR, PROCESS_COLLECTOR

        for metric in METRICS:
            registry.register(metric)
        for collector in (PROCESS_COLLECTOR, PLATFORM_COLLECTOR, GC_COLLECTOR):
            registry.register(collector)
        registry.register(ModelsCollector())
    if database:
        registry.register(OutboxCollector())
    registry.register(TaskQueueCollector(broker_url, queues))
    return registry


def render(*, broker_url: str | None = None, queues: Iterable[str] = DEFAULT_TASK_QUEUES,
           database: bool = True, accept: str = "") -> tuple[bytes, str]:
    """``(body, content type)``: Prometheus's text format (0.0.4), or OpenMetrics when the
    scraper's ``Accept`` header asks for it. Synchronous (the outbox collector queries the
    database): async callers run it in a worker thread."""
    registry = build_registry(broker_url=broker_url, queues=queues, database=database)
    encode, content_type = choose_encoder(accept or "")
    return encode(registry), content_type
