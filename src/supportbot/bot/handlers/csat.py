"""After the operator: the rating buttons (1-5) and "Ask the bot instead" (``support.aftercare``).

Both are checked against the database, never trusted: the rating question or the waiting
ticket must be the clicking customer's, and a rating is given once. Malformed data falls
through to the feedback router's catch-all ("no longer active").
"""

from aiogram import Bot, Router
from aiogram.types import CallbackQuery

from supportbot.bot.callbacks import BackToBotCallback, RatingCallback
from supportbot.bot.delivery import Delivery
from supportbot.conversation import ConversationService
from supportbot.support.aftercare import BackToBotOutcome, RatingOutcome


async def _remove_buttons(query: CallbackQuery, bot: Bot, delivery: Delivery) -> None:
    """So the click cannot be repeated (an edit: under the send limits, like a message)."""
    if query.message is not None:
        async with delivery.limiter.slot(query.message.chat.id):
            await bot.edit_message_reply_markup(chat_id=query.message.chat.id,
                                                message_id=query.message.message_id, reply_markup=None)


async def on_rating(query: CallbackQuery, callback_data: RatingCallback, bot: Bot,
                    conversation: ConversationService, delivery: Delivery, customer, _) -> None:
    result = await conversation.rate(customer, message_id=callback_data.message_id, score=callback_data.score)
    if result is RatingOutcome.NOT_YOURS:
        await query.answer(_("This button is not for you."), show_alert=True)
        return
    if result is RatingOutcome.UNKNOWN:
        await query.answer(_("This button is no longer active."), show_alert=True)
        return
    if result is RatingOutcome.ALREADY_RATED:
        await query.answer(_("You have already rated this conversation. Thank you!"), show_alert=True)
        return
    await query.answer(_("Thank you for your rating!"))
    await _remove_buttons(query, bot, delivery)


async def on_back_to_bot(query: CallbackQuery, callback_data: BackToBotCallback, bot: Bot,
                         conversation: ConversationService, delivery: Delivery, customer, language, _) -> None:
    result, outcome = await conversation.back_to_bot(customer, ticket_id=callback_data.ticket_id,
                                                     language=language)
    if result is BackToBotOutcome.NOT_YOURS or result is BackToBotOutcome.UNKNOWN:
        await query.answer(_("This button is not for you."), show_alert=True)
        return
    if result is BackToBotOutcome.STALE:
        await query.answer(_("This button is no longer active."), show_alert=True)
        return
    await query.answer()
    await _remove_buttons(query, bot, delivery)
    if outcome is not None:
        await delivery.deliver(outcome)


def build_router() -> Router:
    router = Router(name="aftercare")
    router.callback_query.register(on_rating, RatingCallback.filter())
    router.callback_query.register(on_back_to_bot, BackToBotCallback.filter())
    return router
