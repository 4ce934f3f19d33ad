"""/start, /help, /operator; any other command gets the help text (commands are never questions)."""

from aiogram import F, Router
from aiogram.filters import Command as CommandFilter
from aiogram.filters import CommandStart
from aiogram.types import Message as TgMessage

from supportbot.bot.delivery import Delivery
from supportbot.conversation import Command, ConversationService

_COMMANDS = {"start": Command.START, "help": Command.HELP, "operator": Command.OPERATOR}


def _command_of(text: str) -> Command:
    name = text[1:].split(maxsplit=1)[0].split("@", 1)[0].lower() if text.startswith("/") and len(text) > 1 else ""
    return _COMMANDS.get(name, Command.UNKNOWN)


async def on_command(message: TgMessage, conversation: ConversationService, delivery: Delivery,
                     customer, language) -> None:
    text = message.text or ""
    outcome = await conversation.command(customer, _command_of(text), text=text, language=language,
                                         telegram_message_id=message.message_id)
    await delivery.deliver(outcome)


def build_router() -> Router:
    router = Router(name="commands")
    router.message.register(on_command, CommandStart())
    router.message.register(on_command, CommandFilter("help", "operator"))
    # Commands are never questions: an unknown one gets the help text.
    router.message.register(on_command, F.text.startswith("/"))
    return router
