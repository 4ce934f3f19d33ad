"""The last line: any failure while handling a customer's update.

The customer gets an apology in their language instead of silence (through the
delivery path, like every message), the ticket goes to a person (the message
itself was logged before anything could fail), and the failure goes to the log:
a domain rule the update broke (``support.errors.DomainError``) as one line, anything
else with its traceback. Never raises, but for one case: a database that does not answer
(restarted, unreachable) leaves the update unhandled, its error raised to whoever runs it
(``tasks.jobs.handle_update`` tries again when the database is back): an apology and a
hand-over would need the database too, and the question deserves its answer.
"""

from __future__ import annotations

import logging

from aiogram import Router
from aiogram.dispatcher.event.bases import UNHANDLED
from aiogram.types import ErrorEvent

from supportbot.background import database_unavailable
from supportbot.bot.delivery import Delivery
from supportbot.conversation import ConversationService
from supportbot.i18n import pick_language
from supportbot.support.errors import DomainError
from supportbot.support.services import CustomerInfo

log = logging.getLogger(__name__)



async def on_error(event: ErrorEvent, conversation: ConversationService, delivery: Delivery,
                   default_language: str = "en") -> object:
    update = event.update
    if database_unavailable(event.exception):
        # Not the customer's problem and not a bug: the work is done again once the database
        # answers (tasks.jobs.handle_update), so no apology and no hand-over now.
        log.warning("update %s: the database is unavailable (%s); it is handled again when it answers",
                    update.update_id, type(event.exception).__name__)
        return UNHANDLED
    source = update.message or update.callback_query
    user = getattr(source, "from_user", None)
    if isinstance(event.exception, DomainError):
        log.warning("update %s broke a rule: %s", update.update_id, event.exception)
    else:
        log.error("update %s failed", update.update_id, exc_info=event.exception)
    if user is None or user.is_bot:
        return True
    customer = CustomerInfo(id=user.id, username=user.username or "", first_name=user.first_name or "",
                            last_name=user.last_name or "", language_code=user.language_code or "")
    try:
        outcome = await conversation.failed(customer, language=pick_language(user.language_code, default_language),
                                            reason=f"bot error: {type(event.exception).__name__}")
        await delivery.deliver(outcome)
    except Exception:
        log.exception("could not hand over the ticket of customer %s after an error", user.id)
    return True


def build_router() -> Router:
    router = Router(name="errors")
    router.errors.register(on_error)
    return router
