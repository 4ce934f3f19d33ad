"""``supportbot worker`` refuses to start, clearly, without a broker or with one it cannot reach
(a refused port, RabbitMQ refusing the password), and never prints the password."""

from __future__ import annotations

import pytest

from supportbot.cli import main

from .helpers import settings_env

pytestmark = pytest.mark.django_db


def test_without_a_broker_the_worker_says_what_to_set(capsys):
    with settings_env(CELERY_BROKER_URL=None):
        assert main(["worker"]) == 2
    err = capsys.readouterr().err
    assert "CELERY_BROKER_URL is not set" in err and "redis://" in err


@pytest.mark.parametrize(("url", "shown"), [
    ("redis://:pa55-w0rd@127.0.0.1:1/5", "redis://127.0.0.1:1/5"),
    ("amqp://guest:pa55-w0rd@127.0.0.1:5672//", "amqp://guest@127.0.0.1:5672//"),  # the real RabbitMQ says no
])
def test_a_broker_that_cannot_be_reached_stops_the_worker_with_a_clear_error(capsys, url, shown):
    with settings_env(CELERY_BROKER_URL=url):
        assert main(["worker"]) == 2
    err = capsys.readouterr().err
    assert f"cannot reach the task queue at {shown} (CELERY_BROKER_URL)" in err
    assert "pa55-w0rd" not in err


def test_a_broken_broker_setting_is_a_configuration_error(capsys):
    with settings_env(CELERY_BROKER_URL="localhost:6379"):
        assert main(["worker"]) == 2
    err = capsys.readouterr().err
    assert "CELERY_BROKER_URL" in err and "redis://host:6379/0" in err


def test_concurrency_out_of_range_is_refused(capsys):
    with settings_env(CELERY_BROKER_URL="redis://127.0.0.1:6379/5"):
        assert main(["worker", "--concurrency", "0"]) == 2
    assert "--concurrency must be between 1 and 64" in capsys.readouterr().err
