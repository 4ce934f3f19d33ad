"""Delivers operators' replies from the database to Telegram.

The admin only writes an outbound Message with delivery status "pending"; this
loop, in the bot process, claims each row once (a conditional UPDATE) and sends
it, so a reply goes out exactly once even with several bot workers, and the Bot
API token stays in the bot process.

A row is claimed immediately before it is sent (one at a time, never a batch held
while earlier rows wait out a rate limit), so a healthy worker finishes well within
its lease (``OUTBOX_LEASE_SECONDS``). A row whose worker died mid-send is recovered by
``services.claim_outbox`` after the lease: re-sent once and marked in the ticket
thread as possibly delivered twice (see ``support.services``).
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
    def __init__(self, bot: Bot, *, interval: float = 0.5, batch: int = 20) -> None:
        self.bot = bot
        self.interval = interval
        self.batch = batch

    async def deliver_pending(self) -> int:
        delivered = 0
        for n in range(self.batch):
            claimed = await sync_to_async(services.claim_outbox)(limit=1, recover=n == 0)
            if not claimed:
                break
            await self._deliver(claimed[0])
            delivered += 1
        return delivered

    async def _deliver(self, message) -> None:
        chat_id = message.ticket.user_id
        claim = message.delivery_claimed_at

        async def failed(error: str, *, final: bool) -> None:
            await sync_to_async(services.delivery_failed)(
                message_id=message.pk, error=error, final=final, claimed_at=claim)

        try:
            tg_id = await send_text(self.bot, chat_id, message.text)
        except TelegramRetryAfter as exc:
            await failed(f"rate limited, retry after {exc.retry_after}s", final=False)
            await asyncio.sleep(exc.retry_after)
            return
        except TelegramForbiddenError as exc:
            # The customer blocked the bot: final, never retried.
            await sync_to_async(services.mark_customer_blocked)(user_id=chat_id)
            await failed(exc.message, final=True)
            return
        except TelegramBadRequest as exc:
            await failed(exc.message, final=True)
            return
        except (TelegramNetworkError, OSError, asyncio.TimeoutError) as exc:
            await failed(str(exc), final=False)
            return
        except Exception as exc:  # e.g. a 5xx: retried like a network error, never left "sending"
            log.exception("sending operator reply %s failed", message.pk)
            await failed(f"{type(exc).__name__}: {exc}", final=False)
            return
        await sync_to_async(services.mark_sent)(message_id=message.pk, telegram_message_id=tg_id)
        log.info("delivered operator reply %s to ticket %s", message.pk, message.ticket_id)

    async def run(self) -> None:
        while True:
            try:
                await self.deliver_pending()
            except Exception:
                log.exception("outbox delivery round failed; retrying")
            await asyncio.sleep(self.interval)
