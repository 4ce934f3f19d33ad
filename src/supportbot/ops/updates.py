"""The ``total`` stage of ``supportbot_stage_seconds``: from the dispatcher taking an update to the
end of its handlers (the answer recorded and delivered), whichever process runs it (polling,
webhook in process, or a task worker)."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiogram import BaseMiddleware
from aiogram.types import TelegramObject

from supportbot.ops import metrics


class UpdateTimer(BaseMiddleware):
    """An outer middleware on the dispatcher's ``update`` observer, after the claim: updates
    skipped as duplicates are not timed."""

    async def __call__(self, handler: Callable[[TelegramObject, dict[str, Any]], Awaitable[Any]],
                       event: TelegramObject, data: dict[str, Any]) -> Any:
        started = time.perf_counter()
        try:
            return await handler(event, data)
        finally:
            metrics.observe_stage("total", time.perf_counter() - started)
