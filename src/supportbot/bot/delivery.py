"""The one path every outgoing message takes: record, claim, send, confirm.

FAQ and LLM answers, notices, hand-over texts and operators' replies are all rows in
the message log before they go out (the conversation service and the admin record
them "pending"). This module sends them:

- **claim**: a conditional UPDATE moves the row from pending to sending with a claim
  time (``support.services``), so of several bot workers exactly one sends it, and a
  worker that dies mid-send is recovered after the lease;
- **send**: the text is rendered the way the customer must see it (escaped HTML, split
  under 4,096 characters, the "AI answer" mark on LLM answers, Helpful / Not helpful
  under automatic answers, the quote of a voice message), part after part;
- **confirm**: sent, with its Telegram message id; or, by what Telegram answered:

  ========================  ==========================================================
  429 Too Many Requests      back to pending, not before ``retry_after`` (not counted
                             as a failed attempt); the ticket's later messages wait too
  403 Forbidden              the customer blocked the bot: marked blocked, failed for good
  400 Bad Request            failed for good (the message cannot be sent as it is)
  5xx, network, timeouts     back to pending after a back-off (``DELIVERY_RETRY_SECONDS``),
                             failed for good (visibly, in the ticket) after
                             ``MAX_DELIVERY_ATTEMPTS``
  ========================  ==========================================================

Nothing stays "sending": a result is always recorded, and a crash is recovered by the
lease. The handler that recorded messages sends them at once (:meth:`Delivery.deliver`:
the conversation service wrote them already claimed by this worker, one write each);
everything else (retries, operators' replies, messages of a worker that died) goes out
through the loop (:meth:`Delivery.run`).

Telegram's send limits (``bot.limits``): every send takes a slot from the limiter first, so
messages over a limit wait for their chat's turn instead of collecting 429s; a 429 pauses the
chat (the limiter honours ``retry_after`` for every message to it), and a slot further away
than the limiter's ``max_wait`` puts the message back to pending until then (not a failed
attempt). The loop sends each message it claimed in a task of its own, so a chat waiting for
its slot holds up no other chat.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING

from aiogram import Bot
from aiogram.exceptions import (
    TelegramAPIError,
    TelegramBadRequest,
    TelegramForbiddenError,
    TelegramRetryAfter,
)
from aiogram.types import InlineKeyboardMarkup
from django.utils import timezone

from supportbot.background import in_worker_thread
from supportbot.bot.group_desk import DeskUnavailable, GroupDesk
from supportbot.bot.limits import SendDeferred, SendLimiter
from supportbot.bot.render import escape, keyboard_for, shows_back_to_bot, split_text
from supportbot.bot.streaming import TelegramDraft, labelled
from supportbot.i18n import gettext_for, pick_language
from supportbot.support import aftercare, services
from supportbot.support.models import Message, Ticket

if TYPE_CHECKING:
    from supportbot.conversation import Outcome

log = logging.getLogger(__name__)

#: Seconds to wait before retry 1, 2, ... after a 5xx or network error.
DEFAULT_BACKOFF: tuple[float, ...] = (1.0, 5.0, 30.0, 120.0)



@dataclass(frozen=True)
class Recipient:
    """Where a message goes and how it is rendered: the chat, the customer's language (the
    buttons, the "AI answer" mark) and the Telegram message it quotes, if any."""

    chat_id: int
    language: str
    reply_to: int | None = None


class Delivery:
    def __init__(self, bot: Bot, *, default_language: str = "en", interval: float = 0.5, batch: int = 20,
                 backoff: Sequence[float] = DEFAULT_BACKOFF, limiter: SendLimiter | None = None,
                 concurrency: int = 100, desk: GroupDesk | None = None) -> None:
        """``limiter``: Telegram's send limits (default: Telegram's own, kept in this process);
        ``concurrency``: messages the loop sends (or holds, waiting for their slot) at once;
        ``desk``: the operators' group (``OPERATOR_CHAT_ID``), where DESK messages go."""
        self.bot = bot
        self.limiter = limiter or SendLimiter()
        self.default_language = default_language
        self.interval = interval
        self.batch = batch
        self.concurrency = concurrency
        self.backoff = tuple(backoff) or DEFAULT_BACKOFF
        self.desk = desk
        self._wake = asyncio.Event()
        self._in_flight: set[asyncio.Task] = set()

    # -- the two ways in --------------------------------------------------------------------
    async def deliver(self, outcome: Outcome, *, draft: TelegramDraft | None = None) -> bool:
        """Send what the conversation service just recorded, now and in order.

        Its messages were written already claimed by this worker (``outcome.claim``), or
        pending where an earlier message of the ticket has not gone out yet. ``draft``: an
        LLM answer already streaming into a Telegram message; the LLM answer replaces it.
        Returns whether all of them went out; whatever did not is left to the delivery loop
        (retries, ordering), never dropped.
        """
        to = Recipient(outcome.chat_id or 0, outcome.language, outcome.reply_to)
        for n, message in enumerate(outcome.messages):
            if message.delivery_status == Message.Delivery.SENT:
                continue  # went out with an earlier call for the same event
            mine = message.delivery_status == Message.Delivery.SENDING and message.delivery_claimed_at == outcome.claim
            llm_draft = draft if message.source in Message.LLM_SOURCES else None
            sent = mine and await self._send(message, to, draft=llm_draft)
            if sent:
                message.delivery_status = Message.Delivery.SENT
            else:
                rest = outcome.messages[n:]
                for m in rest:  # none of them is this worker's to send any more
                    m.delivery_status = Message.Delivery.PENDING
                if len(rest) > 1:  # the loop sends them, in order, after this one
                    await in_worker_thread(services.release)(
                        message_ids=[m.pk for m in rest[1:]], claimed_at=outcome.claim)
                self._wake.set()
                if draft is not None and not draft.finished:
                    await draft.discard()  # no half-written answer stays behind, nor its updater
                return False
        return True

    async def deliver_pending(self) -> int:
        """One pass of the loop: claim what is due (at most one message per ticket, ``batch`` in
        all) and send them side by side, each waiting only for its own chat's slot. Returns how
        many were sent."""
        claimed = await in_worker_thread(services.claim_outbox)(limit=self.batch)
        results = await asyncio.gather(*(self._send_claimed(message) for message in claimed), return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                log.error("delivering a claimed message failed", exc_info=result)
        return sum(1 for result in results if result is True)

    def wake(self) -> None:
        """Something was recorded for delivery (an operator's reply from the group): claim now."""
        self._wake.set()

    async def _send_claimed(self, message: Message) -> bool:
        if message.direction == Message.Direction.DESK:  # into the operators' group (bot.group_desk)
            return await self._send(message, Recipient(message.chat_id or 0, self.default_language))
        to = Recipient(message.ticket.user_id,
                       pick_language(message.ticket.user.language_code, self.default_language),
                       message.in_reply_to.telegram_message_id if message.quote_reply and message.in_reply_to
                       else None)
        return await self._send(message, to)

    async def run(self) -> None:
        """The loop: keep up to ``concurrency`` claimed messages on their way, each in its own
        task waiting only for its own chat's slot; claim more whenever one finishes (the next
        message of its ticket may be due then) and every ``interval``."""
        try:
            while True:
                self._wake.clear()
                try:
                    claimed = await self._claim_more()
                except Exception:
                    log.exception("delivery round failed; retrying")
                    claimed = 0
                if claimed and len(self._in_flight) < self.concurrency:
                    continue  # more may be due now
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self.interval)
        finally:
            # Stopping: let sends on their way finish briefly; what is cut off is recovered by the lease.
            if self._in_flight:
                _, late = await asyncio.wait(list(self._in_flight), timeout=5.0)
                for task in late:
                    task.cancel()

    async def _claim_more(self) -> int:
        free = min(self.batch, self.concurrency - len(self._in_flight))
        if free <= 0:
            return 0
        claimed = await in_worker_thread(services.claim_outbox)(limit=free)
        for message in claimed:
            task = asyncio.create_task(self._send_claimed(message), name=f"deliver-{message.pk}")
            self._in_flight.add(task)
            task.add_done_callback(self._finished)
        return len(claimed)

    def _finished(self, task: asyncio.Task) -> None:
        self._in_flight.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("delivering a claimed message failed", exc_info=task.exception())
        self._wake.set()

    # -- one claimed message --------------------------------------------------------------------
    async def _send(self, message: Message, to: Recipient, *, draft: TelegramDraft | None = None) -> bool:
        """Send a claimed message and record what happened; True when it went out."""
        claim = message.delivery_claimed_at
        chat_id = to.chat_id
        try:
            tg_id = await self._send_parts(message, to, draft)
        except SendDeferred as exc:
            # The chat's (or the bot's) next slot is too far away to hold the claim meanwhile.
            log.debug("message %s to %s waits %.1f s for its send slot", message.pk, chat_id, exc.retry_after)
            await self._failed(message, claim, str(exc), retry_in=exc.retry_after, counts=False)
            return False
        except TelegramRetryAfter as exc:
            wait = float(exc.retry_after)
            log.info("Telegram asked to wait %s s before message %s to %s", wait, message.pk, chat_id)
            await self._failed(message, claim, f"rate limited: retry after {exc.retry_after} s",
                               retry_in=wait, counts=False)
            return False
        except TelegramForbiddenError as exc:
            # The customer blocked the bot: final, never retried.
            if message.direction != Message.Direction.DESK:  # (for a group: the bot was removed)
                await in_worker_thread(services.mark_customer_blocked)(user_id=chat_id)
            await self._failed(message, claim, exc.message, final=True)
            return False
        except TelegramBadRequest as exc:
            await self._failed(message, claim, exc.message, final=True)
            return False
        except DeskUnavailable as exc:
            await self._failed(message, claim, str(exc), final=True)
            return False
        except Exception as exc:
            # 5xx, network errors, timeouts (and anything unexpected): retried after a
            # back-off, then failed visibly.
            if isinstance(exc, (TimeoutError, TelegramAPIError, OSError)):
                log.warning("sending message %s to %s failed (attempt %d): %s", message.pk, chat_id,
                            message.delivery_attempts + 1, exc)
            else:
                log.exception("sending message %s to %s failed", message.pk, chat_id)
            retry_in = self.backoff[min(message.delivery_attempts, len(self.backoff) - 1)]
            await self._failed(message, claim, f"{type(exc).__name__}: {exc}", retry_in=retry_in)
            return False
        await in_worker_thread(services.mark_sent)(message_id=message.pk, telegram_message_id=tg_id, claimed_at=claim)
        return True

    async def _failed(self, message: Message, claim, error: str, *, final: bool = False,
                      retry_in: float | None = None, counts: bool = True) -> None:
        retry_at = None if retry_in is None else timezone.now() + timedelta(seconds=retry_in)
        await in_worker_thread(services.delivery_failed)(
            message_id=message.pk, error=error, final=final, claimed_at=claim, retry_at=retry_at, counts=counts)
        if final or not counts or message.delivery_attempts + 1 < services.MAX_DELIVERY_ATTEMPTS:
            return
        log.error("message %s (ticket %s) failed for good after %d attempts: %s", message.pk,
                  message.ticket_id, services.MAX_DELIVERY_ATTEMPTS, error)

    async def _send_parts(self, message: Message, to: Recipient, draft: TelegramDraft | None) -> int:
        if message.direction == Message.Direction.DESK:
            if self.desk is None or self.desk.chat_id != to.chat_id:
                raise DeskUnavailable(f"the operators' group desk is off in this bot process "
                                      f"(OPERATOR_CHAT_ID is not {to.chat_id})")
            return await self.desk.send(message, lambda thread: self._send_text(message, to.chat_id, thread))
        _ = gettext_for(to.language)
        text = message.text
        if message.source in Message.LLM_SOURCES:
            text = labelled("🤖 " + _("AI answer"), text)
        waits = shows_back_to_bot(message) and await self._waits_for_person(message)
        keyboard = keyboard_for(message, _, waits_for_person=waits)
        reply_to = to.reply_to if message.quote_reply else None
        chat_id = to.chat_id
        if draft is not None and draft.message_id is None:
            # Never shown (its first send failed or is still on its way): stop its updater, or
            # it would send a stale copy after the answer. The answer goes out as a new message.
            await draft.discard()
        parts = split_text(text)
        start = min(message.delivery_parts_sent, len(parts) - 1)
        last_id = message.telegram_message_id or 0
        for n in range(start, len(parts)):
            last = n == len(parts) - 1
            markup = keyboard if last else None
            if n == 0 and draft is not None and draft.message_id is not None:
                last_id = await draft.replace(parts[0], markup)
            else:
                last_id = await self._send_one(chat_id, parts[n], markup, reply_to if n == 0 else None)
            if not last:
                await in_worker_thread(services.parts_delivered)(
                    message_id=message.pk, parts=n + 1, claimed_at=message.delivery_claimed_at)
        return last_id

    @staticmethod
    async def _waits_for_person(message: Message) -> bool:
        """The message's ticket is with an operator now ("Ask the bot instead" under the notice)."""
        if Message.ticket.is_cached(message):  # claimed by the loop: loaded with the message
            return message.ticket.status == Ticket.Status.WITH_OPERATOR
        return await in_worker_thread(aftercare.waits_for_person)(ticket_id=message.ticket_id)

    async def _send_one(self, chat_id: int, text: str, markup: InlineKeyboardMarkup | None,
                        reply_to: int | None, thread_id: int | None = None) -> int:
        async with self.limiter.slot(chat_id):
            sent = await self.bot.send_message(chat_id, escape(text), reply_markup=markup,
                                               reply_to_message_id=reply_to, allow_sending_without_reply=True,
                                               message_thread_id=thread_id)
        return sent.message_id

    async def _send_text(self, message: Message, chat_id: int, thread_id: int | None) -> int:
        """A plain text (no buttons, no quote) into ``chat_id`` / topic ``thread_id``, part after
        part (a retry goes on with the next part): the operators' group posts."""
        parts = split_text(message.text)
        last_id = message.telegram_message_id or 0
        for n in range(min(message.delivery_parts_sent, len(parts) - 1), len(parts)):
            last_id = await self._send_one(chat_id, parts[n], None, None, thread_id)
            if n < len(parts) - 1:
                await in_worker_thread(services.parts_delivered)(
                    message_id=message.pk, parts=n + 1, claimed_at=message.delivery_claimed_at)
        return last_id
