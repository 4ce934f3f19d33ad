"""``check_health``: the database, the broker (real Redis and RabbitMQ on 127.0.0.1) and the models."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import pytest

from supportbot.ops.health import ModelRegistry, check_broker, check_health

REDIS_URL = "redis://127.0.0.1:6379/15"
AMQP_URL = "amqp://guest:guest@127.0.0.1:5672//"


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.django_db
def test_all_checks_pass_and_the_body_is_json():
    registry = ModelRegistry()
    registry.mark("embedder", "ready")
    ok, body = check_health(broker_url=REDIS_URL, registry=registry)
    assert ok, body
    assert json.loads(json.dumps(body)) == body
    assert body["checks"]["database"]["ok"] is True
    assert body["checks"]["broker"] == {"ok": True, "configured": True, "ms": body["checks"]["broker"]["ms"]}
    assert body["checks"]["models"] == {"ok": True, "models": {"embedder": "ready"}}


@pytest.mark.django_db
def test_no_broker_configured_is_healthy():
    ok, body = check_health(broker_url=None, registry=ModelRegistry())
    assert ok
    assert body["checks"]["broker"] == {"ok": True, "configured": False}


@pytest.mark.django_db
def test_a_model_still_loading_is_not_ready():
    registry = ModelRegistry()
    registry.mark("embedder", "ready")
    registry.mark("transcriber", "loading")
    ok, body = check_health(broker_url=None, registry=registry)
    assert not ok
    assert body["ok"] is False
    assert body["checks"]["models"] == {"ok": False, "models": {"embedder": "ready", "transcriber": "loading"}}
    registry.mark("transcriber", "ready")
    assert check_health(broker_url=None, registry=registry)[0]


def test_an_unreachable_redis_fails_fast_and_hides_its_password():
    url = f"redis://:s3cret-password-x@127.0.0.1:{_closed_port()}/0"
    result = check_broker(url, timeout=0.5)
    assert result["ok"] is False and result["configured"] is True
    assert "ConnectionError" in result["error"]
    assert "s3cret-password-x" not in json.dumps(result)


def test_rabbitmq_through_kombu():
    assert check_broker(AMQP_URL)["ok"] is True
    down = check_broker(f"amqp://guest:guest@127.0.0.1:{_closed_port()}//", timeout=0.5)
    assert down["ok"] is False and down["error"]


def test_an_unreachable_database_is_reported_without_its_password(tmp_path):
    """A real process whose DATABASE_URL points at a PostgreSQL port where nothing listens."""
    script = ("import django, json; django.setup(); from supportbot.ops.health import check_health; "
              "print(json.dumps(check_health(broker_url=None)[1]))")
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "supportbot.web.settings", "SUPPORTBOT_DATA_DIR": str(tmp_path),
           "DATABASE_URL": f"postgres://supportbot:pw-s3cret-123@127.0.0.1:{_closed_port()}/supportbot"}
    result = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    body = json.loads(result.stdout.strip().splitlines()[-1])
    assert body["ok"] is False
    assert body["checks"]["database"]["ok"] is False
    assert body["checks"]["database"]["error"].startswith("OperationalError: ")
    assert "pw-s3cret-123" not in result.stdout
