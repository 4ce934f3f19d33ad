"""Graceful shutdown: the first SIGTERM (or SIGINT) asks a long-running part to finish what it
has in flight and return; a second signal, or the grace period running out, cancels it.

``docker compose stop`` and systemd send SIGTERM, wait (compose: ``stop_grace_period``, 10 s
unless set; this project's compose file gives 30 s), then SIGKILL: ``SHUTDOWN_GRACE_SECONDS``
(25 s) must stay below that wait, so the process ends on its own, with status 0.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Awaitable, Callable

log = logging.getLogger(__name__)

#: Seconds past the grace period before the part is cancelled (its own cleanup: closing sessions).
CANCEL_MARGIN_SECONDS = 5.0


async def serve_until_signalled(serve: Callable[[asyncio.Event], Awaitable[None]], *, grace: float,
                                signals: tuple[signal.Signals, ...] = (signal.SIGTERM, signal.SIGINT)) -> None:
    """Run ``serve(stop)`` until it returns. ``stop`` is set by the first signal: ``serve`` then
    stops taking new work, finishes what is in flight within ``grace`` seconds and returns."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    task = asyncio.ensure_future(serve(stop))

    def on_signal(sig: signal.Signals) -> None:
        if stop.is_set():
            log.warning("%s again: stopping now", sig.name)
            task.cancel()
            return
        log.info("%s: finishing the work in flight (up to %g s), then stopping", sig.name, grace)
        stop.set()
        loop.call_later(grace + CANCEL_MARGIN_SECONDS, task.cancel)

    for sig in signals:
        loop.add_signal_handler(sig, on_signal, sig)
    try:
        await task
    except asyncio.CancelledError:
        if not stop.is_set() or asyncio.current_task().cancelling():  # type: ignore[union-attr]
            raise
        log.warning("stopped after the grace period with work still in flight")
    finally:
        for sig in signals:
            loop.remove_signal_handler(sig)


async def stop_polling_and_drain(dp, timeout: float) -> int:
    """Polling: stop asking Telegram for updates, then wait up to ``timeout`` s for the updates
    already taken (aiogram runs each in its own task); the number still running then."""
    import contextlib

    with contextlib.suppress(RuntimeError):  # polling had not started, or has stopped already
        await dp.stop_polling()
    in_flight = set(getattr(dp, "_handle_update_tasks", ()))  # aiogram 3: the polled updates' tasks
    if in_flight:
        log.info("waiting for %d update(s) in flight", len(in_flight))
        await asyncio.wait(in_flight, timeout=timeout)
    return sum(not task.done() for task in in_flight)
