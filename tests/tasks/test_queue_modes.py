"""One code path, two places to run it: without a broker the job runs in this process; with
one it goes to the real Redis as JSON (and nothing runs here); with a dead broker it runs here."""

from __future__ import annotations

import base64
import json
import logging

import pytest
import redis

from supportbot.support.models import FaqEmbedding, FaqEntry

from .helpers import QUEUE, REDIS_URL, flush_redis, settings_env

pytestmark = pytest.mark.django_db(transaction=True)


def _new_entry() -> FaqEntry:
    return FaqEntry.objects.create(key="gift-wrap", question="Do you offer gift wrapping?",
                                   answer="Yes: gift wrapping costs 50 UAH.")


def _queued_tasks() -> list[dict]:
    client = redis.Redis.from_url(REDIS_URL)
    try:
        return [json.loads(raw) for raw in client.lrange(QUEUE, 0, -1)]
    finally:
        client.close()


def test_without_a_broker_an_faq_change_is_embedded_in_this_process(fake):
    with settings_env(CELERY_BROKER_URL=None):
        entry = _new_entry()
    assert FaqEmbedding.objects.filter(entry=entry, model_name=fake.name).count() == 1


def test_with_a_broker_the_reindex_job_goes_to_redis_as_json(fake):
    flush_redis()
    try:
        with settings_env(CELERY_BROKER_URL=REDIS_URL):
            entry = _new_entry()
            queued = _queued_tasks()
        assert not FaqEmbedding.objects.filter(entry=entry).exists()  # the admin's request did not embed
        assert len(queued) == 1
        task = queued[0]
        assert task["content-type"] == "application/json" and task["headers"]["task"] == "supportbot.reindex"
        args, kwargs, _ = json.loads(base64.b64decode(task["body"]))
        assert args == [[entry.pk]] and kwargs == {}
    finally:
        flush_redis()


def test_a_broker_that_does_not_answer_means_the_job_runs_here(fake, caplog):
    caplog.set_level(logging.WARNING, logger="supportbot.tasks")
    with settings_env(CELERY_BROKER_URL="redis://:pa55-w0rd@127.0.0.1:1/5"):
        entry = _new_entry()
    assert FaqEmbedding.objects.filter(entry=entry, model_name=fake.name).count() == 1
    warning = caplog.text
    assert "redis://127.0.0.1:1/5 did not take supportbot.reindex" in warning and "in this process" in warning
    assert "pa55-w0rd" not in warning
