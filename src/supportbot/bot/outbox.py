"""Delivers operators' replies from the database to Telegram.

The admin only writes an outbound Message with delivery status "pending"; this
loop, in the bot process, claims each row once (a conditional UPDATE) and sends
it, so a reply goes out exactly once even with several bot workers, and the Bot
API token stays in the bot process.
"""

from __future__ import annotations

import asyncio
import logging

from aiogram import Bot
from aiogram.exceptions import (
    TelegramBadRequest,
    TelegramForbiddenError,
    TelegramNetworkError,
    TelegramRetryAfter,
)
from asgiref.sync import sync_to_async

from supportbot.bot.replies import send_text
from supportbot.support import services

log = logging.getLogger(__name__)


class OutboxSender:
    def __init__(self, bot: Bot, *, interval: float = 0.5) -> None:
        self.bot = bot
        self.interval = interval

    async def deliver_pending(self) -> int:
        claimed = await sync_to_async(services.claim_outbox)()
        for message in claimed:
            chat_id = message.ticket.user_id
            try:
                tg_id = await send_text(self.bot, chat_id, message.text)
            except TelegramRetryAfter as exc:
                await sync_to_async(services.delivery_failed)(
                    message_id=message.pk, error=f"rate limited, retry after {exc.retry_after}s", final=False)
                await asyncio.sleep(exc.retry_after)
                continue
            except TelegramForbiddenError as exc:
                # The customer blocked the bot: final, never retried.
                await sync_to_async(services.mark_customer_blocked)(user_id=chat_id)
                await sync_to_async(services.delivery_failed)(message_id=message.pk, error=exc.message, final=True)
                continue
            except TelegramBadRequest as exc:
                await sync_to_async(services.delivery_failed)(message_id=message.pk, error=exc.message, final=True)
                continue
            except (TelegramNetworkError, OSError, asyncio.TimeoutError) as exc:
                await sync_to_async(services.delivery_failed)(message_id=message.pk, error=str(exc), final=False)
                continue
            await sync_to_async(services.mark_sent)(message_id=message.pk, telegram_message_id=tg_id)
            log.info("delivered operator reply %s to ticket %s", message.pk, message.ticket_id)
        return len(claimed)

    async def run(self) -> None:
        while True:
            try:
                await self.deliver_pending()
            except Exception:
                log.exception("outbox delivery round failed; retrying")
            await asyncio.sleep(self.interval)
