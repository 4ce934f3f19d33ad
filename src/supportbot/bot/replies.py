"""What the bot does with a customer's question, between the handler and the pipeline.

Kept apart from the aiogram handlers so text and (later) voice share it.
"""

from __future__ import annotations

import logging
import time

from aiogram import Bot
from aiogram.types import InlineKeyboardMarkup
from asgiref.sync import sync_to_async

from supportbot.bot.render import escape, feedback_keyboard, split_text
from supportbot.bot.streaming import TelegramDraft
from supportbot.pipeline import AnswerPipeline, Conversation
from supportbot.support import services
from supportbot.support.models import Message

log = logging.getLogger(__name__)

_db = sync_to_async  # every ORM call leaves the event loop


async def send_text(
    bot: Bot, chat_id: int, text: str, *, reply_markup: InlineKeyboardMarkup | None = None,
    reply_to: int | None = None,
) -> int:
    """Send (possibly long) plain text safely; return the last Telegram message id."""
    chunks = split_text(text)
    last_id = 0
    for n, chunk in enumerate(chunks):
        last = n == len(chunks) - 1
        sent = await bot.send_message(
            chat_id, escape(chunk),
            reply_markup=reply_markup if last else None,
            reply_to_message_id=reply_to if n == 0 else None,
        )
        last_id = sent.message_id
    return last_id


async def send_logged(
    bot: Bot, chat_id: int, *, ticket_id: int, text: str, source: str,
    in_reply_to_id: int | None = None,
) -> None:
    """Send a bot notice (system text) and log it."""
    row = await _db(services.record_outgoing)(
        ticket_id=ticket_id, text=text, source=source, in_reply_to_id=in_reply_to_id
    )
    tg_id = await send_text(bot, chat_id, text)
    await _db(services.mark_sent)(message_id=row.pk, telegram_message_id=tg_id)


async def answer_question(
    bot: Bot, *, pipeline: AnswerPipeline, customer: services.CustomerInfo, language: str,
    text: str, kind: str, telegram_message_id: int | None, _,
    incoming: services.Incoming | None = None,
) -> None:
    """``incoming``: the question was logged already (a voice message, logged before its transcript is echoed)."""
    started = time.perf_counter()
    if incoming is None:
        incoming = await _db(services.record_incoming)(
            customer=customer, kind=kind, text=text, telegram_message_id=telegram_message_id
        )
    chat_id = customer.id
    if incoming.with_operator:
        # A person owns this ticket: stay quiet, say so once.
        if incoming.notify_waiting:
            await send_logged(
                bot, chat_id, ticket_id=incoming.ticket_id, source=Message.Source.SYSTEM,
                text=_("An operator is handling your request. A person will reply here soon."),
                in_reply_to_id=incoming.message_id,
            )
        return

    # An LLM answer streams into one message, marked as automatic (see bot.streaming).
    draft = None
    if pipeline.llm is not None:
        draft = TelegramDraft(bot, chat_id, label="🤖 " + _("AI answer"),
                              interval=pipeline.llm.stream_edit_seconds)
    conversation = Conversation(customer_id=customer.id, ticket_id=incoming.ticket_id,
                                message_id=incoming.message_id)
    answer = await pipeline.answer(text, language=language, conversation=conversation, stream=draft)
    if answer.answered and answer.text:
        processing_ms = int((time.perf_counter() - started) * 1000)
        by_llm = answer.source in (Message.Source.LOCAL_LLM, Message.Source.API_LLM)
        row = await _db(services.record_outgoing)(
            ticket_id=incoming.ticket_id, text=answer.text, source=answer.source,
            in_reply_to_id=incoming.message_id, faq_entry_id=answer.faq_entry_id,
            score=answer.score, processing_ms=processing_ms, llm=answer.llm_fields() if by_llm else None,
        )
        keyboard = feedback_keyboard(row.pk, _)
        if by_llm and draft is not None:
            tg_id = await draft.finish(answer.text, keyboard)
        else:
            tg_id = await send_text(bot, chat_id, answer.text, reply_markup=keyboard)
        await _db(services.mark_sent)(message_id=row.pk, telegram_message_id=tg_id)
        return

    if draft is not None:
        await draft.discard()  # nothing half-shown stays behind a hand-over
    notice = None
    if answer.limited:
        notice = _("You have asked many questions in the last hour, so I have passed this one to an operator. "
                   "A person will reply here soon.")
    await hand_over(bot, chat_id=chat_id, ticket_id=incoming.ticket_id,
                    reason=answer.reason or "no answer", actor="bot",
                    in_reply_to_id=incoming.message_id, score=answer.score, notice=notice, _=_)


async def hand_over(
    bot: Bot, *, chat_id: int, ticket_id: int, reason: str, actor: str, _,
    in_reply_to_id: int | None = None, score: float | None = None, notice: str | None = None,
) -> None:
    """``notice``: what to tell the customer instead of the usual hand-over text."""
    changed = await _db(services.hand_over)(ticket_id=ticket_id, actor=actor, reason=reason)
    if changed:
        await send_logged(
            bot, chat_id, ticket_id=ticket_id, source=Message.Source.SYSTEM,
            text=notice or _("I have passed your question to an operator. A person will reply here soon."),
            in_reply_to_id=in_reply_to_id,
        )
