from aiogram import Bot, F, Router
from aiogram.filters import Command, CommandStart
from aiogram.types import Message as TgMessage
from asgiref.sync import sync_to_async

from supportbot.bot.render import escape
from supportbot.bot.replies import hand_over, send_logged
from supportbot.support import services
from supportbot.support.models import Message


async def _log_command(customer, message: TgMessage) -> services.Incoming:
    return await sync_to_async(services.record_incoming)(
        customer=customer, kind=Message.Kind.TEXT, text=message.text or "",
        telegram_message_id=message.message_id,
    )


async def start(message: TgMessage, bot: Bot, customer, _) -> None:
    incoming = await _log_command(customer, message)
    name = customer.first_name or _("there")
    await send_logged(bot, message.chat.id, ticket_id=incoming.ticket_id, source=Message.Source.SYSTEM,
                      in_reply_to_id=incoming.message_id, text=_(
        "Hello, {name}! I am the support assistant. Ask your question in your own words "
        "and I will answer from our knowledge base, or pass it to a person."
    ).format(name=name))


async def help_(message: TgMessage, bot: Bot, customer, _) -> None:
    incoming = await _log_command(customer, message)
    await send_logged(bot, message.chat.id, ticket_id=incoming.ticket_id, source=Message.Source.SYSTEM,
                      in_reply_to_id=incoming.message_id, text=_(
        "Write your question as a normal message, or send a voice message.\n"
        "/operator: talk to a person\n/help: this help"
    ))


async def operator(message: TgMessage, bot: Bot, customer, _) -> None:
    incoming = await _log_command(customer, message)
    if incoming.with_operator:
        if incoming.notify_waiting:
            await send_logged(bot, message.chat.id, ticket_id=incoming.ticket_id,
                              source=Message.Source.SYSTEM, in_reply_to_id=incoming.message_id,
                              text=_("An operator is handling your request. A person will reply here soon."))
        return
    await hand_over(bot, chat_id=message.chat.id, ticket_id=incoming.ticket_id,
                    reason="customer asked for a person (/operator)", actor="customer",
                    in_reply_to_id=incoming.message_id, _=_)


def build_router() -> Router:
    router = Router(name="commands")
    router.message.register(start, CommandStart())
    router.message.register(help_, Command("help"))
    router.message.register(operator, Command("operator"))
    # Commands are never questions: an unknown one gets the help text.
    router.message.register(help_, F.text.startswith("/"))
    return router
