"""The task queue's settings: a broken broker URL is a clear error, the visibility timeout
outlasts the slowest task, and the Celery app acknowledges late and speaks JSON only."""

from __future__ import annotations

import pytest

from supportbot.config import ConfigError, TaskSettings, load_settings
from supportbot.tasks.app import make_app
from supportbot.tasks.queue import safe_url


@pytest.mark.parametrize("url", ["http://127.0.0.1:6379/0", "127.0.0.1:6379", "sqs://user:s3cret-pw@queue"])
def test_a_broker_url_of_another_kind_is_refused_clearly(monkeypatch, url):
    monkeypatch.setenv("CELERY_BROKER_URL", url)
    with pytest.raises(ConfigError) as error:
        load_settings()
    message = str(error.value)
    assert "CELERY_BROKER_URL" in message and "redis://" in message and "amqp://" in message
    assert "s3cret-pw" not in message and url not in message  # may hold a password: never echoed


def test_no_broker_means_in_process(monkeypatch):
    monkeypatch.setenv("CELERY_BROKER_URL", "  ")
    assert load_settings().tasks.broker_url is None


def test_the_visibility_timeout_outlasts_the_slowest_task(monkeypatch):
    for key in ("VOICE_MAX_SECONDS", "LOCAL_LLM_TIMEOUT", "API_LLM_TIMEOUT", "API_LLM_RETRIES",
                "CELERY_VISIBILITY_MARGIN_SECONDS"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("LOCAL_LLM_ENABLED", "true")
    monkeypatch.setenv("API_LLM_ENABLED", "true")
    # The longest voice message (120 s), the local model (45 s), the API with its retries
    # (3 x 30 s), and the margin for sends and the FAQ match (120 s).
    assert load_settings().tasks.visibility_timeout == 120 + 45 + 3 * 30 + 120
    monkeypatch.setenv("LOCAL_LLM_TIMEOUT", "200")
    monkeypatch.setenv("API_LLM_RETRIES", "0")
    assert load_settings().tasks.visibility_timeout == 120 + 200 + 30 + 120
    monkeypatch.setenv("API_LLM_ENABLED", "false")
    assert load_settings().tasks.visibility_timeout == 120 + 200 + 120


def test_the_celery_app_acknowledges_late_and_accepts_json_only():
    app = make_app(TaskSettings("redis://127.0.0.1:6379/5", 3, 375.0))
    conf = app.conf
    assert conf.task_acks_late and conf.task_reject_on_worker_lost
    assert conf.worker_prefetch_multiplier == 1 and conf.worker_concurrency == 3
    assert conf.accept_content == ["json"] and conf.task_serializer == "json"  # never pickle
    assert conf.broker_transport_options["visibility_timeout"] == 375.0
    for name in ("supportbot.handle_update", "supportbot.reindex"):
        task = app.tasks[name]
        assert task.acks_late and task.reject_on_worker_lost


def test_the_broker_url_is_shown_without_its_password():
    assert safe_url("redis://:pa55@10.0.0.5:6380/2") == "redis://10.0.0.5:6380/2"
    assert safe_url("amqp://bot:pa55@rabbit:5672//") == "amqp://bot@rabbit:5672//"
