from aiogram import Bot, Router
from aiogram.types import CallbackQuery
from asgiref.sync import sync_to_async

from supportbot.bot.callbacks import FeedbackCallback
from supportbot.bot.replies import send_logged
from supportbot.support import services
from supportbot.support.models import Message


async def on_feedback(query: CallbackQuery, callback_data: FeedbackCallback, bot: Bot, customer, _) -> None:
    outcome = await sync_to_async(services.record_feedback)(
        message_id=callback_data.message_id, customer_id=customer.id, helpful=callback_data.helpful
    )
    if outcome is services.FeedbackOutcome.NOT_YOURS or outcome is services.FeedbackOutcome.UNKNOWN:
        await query.answer(_("This button is not for you."), show_alert=True)
        return
    if outcome is services.FeedbackOutcome.STALE:
        await query.answer(_("This button is no longer active."), show_alert=True)
        return
    await query.answer(_("Thank you for your feedback!"))
    if query.message is not None:
        # Remove the buttons so the vote cannot be repeated.
        await bot.edit_message_reply_markup(chat_id=query.message.chat.id,
                                            message_id=query.message.message_id, reply_markup=None)
    if not callback_data.helpful:
        ticket_id = await sync_to_async(
            lambda: Message.objects.values_list("ticket_id", flat=True).get(pk=callback_data.message_id)
        )()
        await send_logged(bot, customer.id, ticket_id=ticket_id, source=Message.Source.SYSTEM,
                          text=_("Sorry it did not help. I have passed your question to an operator."))


async def on_unknown_callback(query: CallbackQuery, _) -> None:
    # Forged or outdated callback data: tell the user, change nothing.
    await query.answer(_("This button is no longer active."), show_alert=True)


def build_router() -> Router:
    router = Router(name="feedback")
    router.callback_query.register(on_feedback, FeedbackCallback.filter())
    router.callback_query.register(on_unknown_callback)
    return router
