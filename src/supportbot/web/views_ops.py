"""``GET /healthz`` and ``GET /metrics``: no login (the compose health checks and Prometheus call
them; keep them off the public internet at the reverse proxy). Async views: the checks talk to
the database and the broker in a worker thread, never on the event loop."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.http import require_safe

from supportbot.background import in_worker_thread
from supportbot.ops import health, metrics


@require_safe
async def healthz(request: HttpRequest) -> HttpResponse:
    ok, body = await in_worker_thread(health.check_health)()
    response = JsonResponse(body, status=200 if ok else 503)
    response["Cache-Control"] = "no-store"
    return response


def _render(accept: str) -> tuple[bytes, str]:
    return metrics.render(broker_url=health.configured_broker_url(), accept=accept)


@require_safe
async def prometheus_metrics(request: HttpRequest) -> HttpResponse:
    body, content_type = await in_worker_thread(_render)(request.headers.get("Accept", ""))
    return HttpResponse(body, content_type=content_type)
