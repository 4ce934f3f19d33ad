"""Helpful / Not helpful under automatic answers (checked against the database, never trusted)."""

from aiogram import Bot, Router
from aiogram.types import CallbackQuery

from supportbot.bot.callbacks import FeedbackCallback
from supportbot.bot.delivery import Delivery
from supportbot.conversation import ConversationService
from supportbot.support.services import FeedbackOutcome


async def on_feedback(query: CallbackQuery, callback_data: FeedbackCallback, bot: Bot,
                      conversation: ConversationService, delivery: Delivery, customer, language, _) -> None:
    result, outcome = await conversation.feedback(customer, message_id=callback_data.message_id,
                                                  helpful=callback_data.helpful, language=language)
    if result is FeedbackOutcome.NOT_YOURS or result is FeedbackOutcome.UNKNOWN:
        await query.answer(_("This button is not for you."), show_alert=True)
        return
    if result is FeedbackOutcome.STALE:
        await query.answer(_("This button is no longer active."), show_alert=True)
        return
    await query.answer(_("Thank you for your feedback!"))
    if query.message is not None:
        # Remove the buttons so the vote cannot be repeated (an edit: under the send limits).
        async with delivery.limiter.slot(query.message.chat.id):
            await bot.edit_message_reply_markup(chat_id=query.message.chat.id,
                                                message_id=query.message.message_id, reply_markup=None)
    if outcome is not None:
        await delivery.deliver(outcome)


async def on_unknown_callback(query: CallbackQuery, _) -> None:
    # Forged or outdated callback data: tell the user, change nothing.
    await query.answer(_("This button is no longer active."), show_alert=True)


def build_router() -> Router:
    router = Router(name="feedback")
    router.callback_query.register(on_feedback, FeedbackCallback.filter())
    router.callback_query.register(on_unknown_callback)
    return router
