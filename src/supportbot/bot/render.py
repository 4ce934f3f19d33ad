"""Turning text into Telegram messages that always send.

Texts go out as HTML with everything escaped, so ``<``, ``&`` and Markdown
characters arrive intact; long texts are split under Telegram's 4096-character
limit (counted after entity parsing, i.e. on the unescaped text).
"""

from __future__ import annotations

import html

from aiogram.types import InlineKeyboardButton, InlineKeyboardMarkup

from supportbot.bot.callbacks import FeedbackCallback

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
