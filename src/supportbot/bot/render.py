"""Turning text into Telegram messages that always send.

Texts go out as HTML with everything escaped, so ``<``, ``&`` and Markdown
characters arrive intact; long texts are split under Telegram's 4096-character
limit (counted after entity parsing, i.e. on the unescaped text).
"""

from __future__ import annotations

import html

from aiogram.types import InlineKeyboardButton, InlineKeyboardMarkup

from supportbot.bot.callbacks import BackToBotCallback, FeedbackCallback, RatingCallback
from supportbot.support.models import Message

TELEGRAM_LIMIT = 4096


def split_text(text: str, limit: int = TELEGRAM_LIMIT) -> list[str]:
    """Split at paragraph, line or word boundaries; hard-split only inside a very long word."""
    text = text.strip()
    chunks: list[str] = []
    while len(text) > limit:
        window = text[:limit]
        cut = max(window.rfind("\n\n"), window.rfind("\n"), window.rfind(" "))
        if cut < limit // 2:
            cut = limit
        chunks.append(text[:cut].rstrip())
        text = text[cut:].lstrip()
    if text:
        chunks.append(text)
    return chunks or [""]


def escape(text: str) -> str:
    return html.escape(text, quote=False)


def feedback_keyboard(message_id: int, _) -> InlineKeyboardMarkup:
    return InlineKeyboardMarkup(
        inline_keyboard=[[
            InlineKeyboardButton(
                text="👍 " + _("Helpful"),
                callback_data=FeedbackCallback(message_id=message_id, helpful=True).pack(),
            ),
            InlineKeyboardButton(
                text="👎 " + _("Not helpful"),
                callback_data=FeedbackCallback(message_id=message_id, helpful=False).pack(),
            ),
        ]]
    )


def rating_keyboard(message_id: int) -> InlineKeyboardMarkup:
    """1-5 under the rating question (``support.aftercare``)."""
    return InlineKeyboardMarkup(inline_keyboard=[[
        InlineKeyboardButton(text=f"{score} ⭐",
                             callback_data=RatingCallback(message_id=message_id, score=score).pack())
        for score in range(1, 6)
    ]])


def back_to_bot_keyboard(ticket_id: int, _) -> InlineKeyboardMarkup:
    return InlineKeyboardMarkup(inline_keyboard=[[
        InlineKeyboardButton(text="🤖 " + _("Ask the bot instead"),
                             callback_data=BackToBotCallback(ticket_id=ticket_id).pack()),
    ]])


def keyboard_for(message: Message, _, *, waits_for_person: bool = False) -> InlineKeyboardMarkup | None:
    """The buttons under an outgoing message, from the row itself: Helpful / Not helpful under an
    automatic answer, 1-5 under the rating question, and "Ask the bot instead" under the bot's own
    notices while the ticket waits for a person (``waits_for_person``; not under the echo of a
    voice message, which quotes it)."""
    if message.is_automatic_answer:
        return feedback_keyboard(message.pk, _)
    if message.source == Message.Source.CSAT:
        return rating_keyboard(message.pk)
    if waits_for_person and shows_back_to_bot(message):
        return back_to_bot_keyboard(message.ticket_id, _)
    return None


def shows_back_to_bot(message: Message) -> bool:
    """A notice that may carry "Ask the bot instead" (whether the ticket waits is asked separately)."""
    return (message.direction == Message.Direction.OUT and message.source == Message.Source.SYSTEM
            and not message.quote_reply)
