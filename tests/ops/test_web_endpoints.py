"""The web process's ``GET /healthz`` and ``GET /metrics``: no login, the right status and body."""

from __future__ import annotations

import pytest
from prometheus_client.parser import text_string_to_metric_families

from supportbot.ops import health

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def transcriber_loading():
    health.mark_loading("transcriber")
    yield
    health.forget("transcriber")


async def test_healthz_is_200_with_the_checks_and_needs_no_login(async_client):
    response = await async_client.get("/healthz")
    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    assert response["Cache-Control"] == "no-store"
    body = response.json()
    assert body["ok"] is True
    assert set(body["checks"]) == {"database", "broker", "models"}


async def test_healthz_is_503_while_a_model_loads(async_client, transcriber_loading):
    response = await async_client.get("/healthz")
    assert response.status_code == 503
    models = response.json()["checks"]["models"]
    assert models["ok"] is False and models["models"]["transcriber"] == "loading"


async def test_metrics_are_the_prometheus_text_format(async_client):
    response = await async_client.get("/metrics")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain; version=0.0.4")
    names = {family.name for family in text_string_to_metric_families(response.content.decode())}
    assert {"supportbot_outbox_messages", "supportbot_answers", "supportbot_stage_seconds"} <= names


@pytest.mark.parametrize("path", ["/healthz", "/metrics"])
async def test_only_get_and_head_are_allowed(async_client, path):
    response = await async_client.post(path, data="{}", content_type="application/json")
    assert response.status_code == 405
    assert (await async_client.head(path)).status_code in (200, 503)


async def test_openmetrics_when_the_scraper_asks_for_it(async_client):
    response = await async_client.get("/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0"})
    assert response["Content-Type"].startswith("application/openmetrics-text")
    assert response.content.rstrip().endswith(b"# EOF")
