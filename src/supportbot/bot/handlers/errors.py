"""The last line: any failure while handling a customer's update.

The customer gets an apology in their language instead of silence, the ticket
goes to a person (the message itself was logged before anything could fail),
and the traceback goes to the log. Never raises.
"""

from __future__ import annotations

import logging

from aiogram import Bot, Router
from aiogram.exceptions import TelegramAPIError
from aiogram.types import ErrorEvent
from asgiref.sync import sync_to_async

from supportbot.bot.render import escape
from supportbot.i18n import gettext_for, pick_language
from supportbot.support import services

log = logging.getLogger(__name__)


async def on_error(event: ErrorEvent, bot: Bot, default_language: str = "en") -> bool:
    update = event.update
    source = update.message or update.callback_query
    user = getattr(source, "from_user", None)
    log.error("update %s failed", update.update_id, exc_info=event.exception)
    if user is None or user.is_bot:
        return True
    _ = gettext_for(pick_language(user.language_code, default_language))
    try:
        await sync_to_async(services.hand_over_customer)(
            user_id=user.id, reason=f"bot error: {type(event.exception).__name__}")
    except Exception:
        log.exception("could not hand over the ticket of customer %s", user.id)
    try:
        await bot.send_message(user.id, escape(_(
            "Sorry, something went wrong on our side. Your message is saved and an operator will see it.")))
    except TelegramAPIError:
        log.warning("could not tell customer %s about the error", user.id)
    return True


def build_router() -> Router:
    router = Router(name="errors")
    router.errors.register(on_error)
    return router
