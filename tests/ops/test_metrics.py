"""``/metrics``' body: counters, the outbox counted from the database, the queue depth from a real
Redis, and several processes summed in prometheus-client's multiprocess mode."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import redis
from prometheus_client.parser import text_string_to_metric_families

from supportbot.ops import metrics

REDIS_URL = "redis://127.0.0.1:6379/15"


def _samples(body: bytes) -> dict[tuple[str, tuple], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(body.decode()) for s in family.samples}


def test_counters_and_histograms_are_served_in_the_text_format():
    before = _samples(metrics.render(database=False)[0])
    metrics.ANSWERS.labels("faq").inc()
    metrics.UPDATES.labels("message", "handled").inc(2)
    with metrics.timed("match"):
        pass
    body, content_type = metrics.render(database=False)
    assert content_type.startswith("text/plain; version=")
    after = _samples(body)

    def grew(name, **labels):
        key = (name, tuple(sorted(labels.items())))
        return after[key] - before.get(key, 0.0)

    assert grew("supportbot_answers_total", source="faq") == 1
    assert grew("supportbot_updates_total", kind="message", outcome="handled") == 2
    assert grew("supportbot_stage_seconds_count", stage="match") == 1
    assert ("process_cpu_seconds_total", ()) in after


@pytest.mark.django_db
def test_the_outbox_is_counted_by_delivery_status():
    from supportbot.support.models import Message, TelegramUser, Ticket

    user = TelegramUser.objects.create(id=501, first_name="Olena")
    ticket = Ticket.objects.create(user=user)
    for status in ("pending", "pending", "sent", "failed"):
        Message.objects.create(ticket=ticket, direction="out", text="x", source="faq", delivery_status=status)
    Message.objects.create(ticket=ticket, direction="in", text="q", source="user")
    samples = _samples(metrics.render()[0])
    assert samples[("supportbot_outbox_messages", (("status", "pending"),))] == 2
    assert samples[("supportbot_outbox_messages", (("status", "sending"),))] == 0
    assert samples[("supportbot_outbox_messages", (("status", "sent"),))] == 1
    assert samples[("supportbot_outbox_messages", (("status", "failed"),))] == 1


def test_the_task_queue_depth_comes_from_redis():
    client = redis.Redis.from_url(REDIS_URL)
    queue = f"supportbot-test-{os.getpid()}"
    try:
        client.rpush(queue, "a", "b", "c")
        client.rpush(f"{queue}\x06\x163", "d")  # a priority level of the same queue
        samples = _samples(metrics.render(broker_url=REDIS_URL, queues=[queue, "empty-" + queue],
                                          database=False)[0])
    finally:
        client.delete(queue, f"{queue}\x06\x163")
        client.close()
    assert samples[("supportbot_task_queue_depth", (("queue", queue),))] == 4
    assert samples[("supportbot_task_queue_depth", (("queue", "empty-" + queue),))] == 0


def test_an_unreachable_broker_leaves_the_depth_out_and_the_scrape_works():
    body, _ = metrics.render(broker_url="redis://127.0.0.1:1/0", database=False)
    assert b"supportbot_task_queue_depth" not in body
    assert b"supportbot_answers_total" in body


def test_several_processes_are_summed_in_multiprocess_mode(tmp_path):
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    count = ("from supportbot.ops import metrics; metrics.ANSWERS.labels('faq').inc(); "
             "metrics.STAGE_SECONDS.labels('total').observe(0.2)")
    for _ in range(2):
        subprocess.run([sys.executable, "-c", count], env=env, check=True, timeout=60)
    show = "import sys; from supportbot.ops import metrics; sys.stdout.buffer.write(metrics.render(database=False)[0])"
    body = subprocess.run([sys.executable, "-c", show], env=env, check=True, capture_output=True, timeout=60).stdout
    samples = _samples(body)
    assert samples[("supportbot_answers_total", (("source", "faq"),))] == 2
    assert samples[("supportbot_stage_seconds_count", (("stage", "total"),))] == 2
