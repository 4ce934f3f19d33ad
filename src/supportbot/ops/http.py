"""``GET /healthz`` and ``GET /metrics`` for the aiohttp processes (the polling bot's small
server, ``BOT_HTTP_PORT``), the same bodies as the web's Django views (``web/views_ops.py``)."""

from __future__ import annotations

import logging

from aiohttp import web

from supportbot.background import in_worker_thread
from supportbot.ops import health, metrics

log = logging.getLogger(__name__)


async def healthz(request: web.Request) -> web.Response:
    ok, body = await in_worker_thread(health.check_health)()
    return web.json_response(body, status=200 if ok else 503, headers={"Cache-Control": "no-store"})


def _render(accept: str) -> tuple[bytes, str]:
    return metrics.render(broker_url=health.configured_broker_url(), accept=accept)


async def prometheus_metrics(request: web.Request) -> web.Response:
    body, content_type = await in_worker_thread(_render)(request.headers.get("Accept", ""))
    response = web.Response(body=body)
    response.headers["Content-Type"] = content_type
    return response


def add_routes(app: web.Application) -> None:
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", prometheus_metrics)


async def start_server(host: str, port: int) -> web.AppRunner:
    """Serve the two routes on ``host:port`` (0: any free port; ``runner.addresses`` says which)."""
    app = web.Application()
    add_routes(app)
    runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=2.0)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
    except OSError:
        await runner.cleanup()
        raise
    log.info("health and metrics: http://%s:%s/healthz, /metrics", host, runner.addresses[0][1])
    return runner
