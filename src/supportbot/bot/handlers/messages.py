from aiogram import Bot, F, Router
from aiogram.types import Message as TgMessage
from asgiref.sync import sync_to_async

from supportbot.bot.replies import answer_question, send_logged
from supportbot.pipeline import AnswerPipeline
from supportbot.support import services
from supportbot.support.models import Message


async def on_text(message: TgMessage, bot: Bot, pipeline: AnswerPipeline, customer, language, _) -> None:
    await answer_question(
        bot, pipeline=pipeline, customer=customer, language=language, text=message.text,
        kind=Message.Kind.TEXT, telegram_message_id=message.message_id, _=_,
    )


def _kind_of(message: TgMessage) -> tuple[str, str]:
    if message.sticker:
        return Message.Kind.STICKER, message.sticker.emoji or ""
    if message.photo:
        return Message.Kind.PHOTO, message.caption or ""
    if message.document:
        return Message.Kind.DOCUMENT, message.document.file_name or message.caption or ""
    if message.voice or message.audio or message.video_note:
        return Message.Kind.VOICE, ""
    return Message.Kind.OTHER, message.caption or ""


async def on_other(message: TgMessage, bot: Bot, customer, _) -> None:
    """Stickers, photos, documents, locations...: logged, answered politely."""
    kind, text = _kind_of(message)
    incoming = await sync_to_async(services.record_incoming)(
        customer=customer, kind=kind, text=text, telegram_message_id=message.message_id
    )
    await send_logged(
        bot, message.chat.id, ticket_id=incoming.ticket_id, source=Message.Source.SYSTEM,
        in_reply_to_id=incoming.message_id,
        text=_("Thanks! I can only read text and voice messages. Please describe your question in words."),
    )


def build_router() -> Router:
    router = Router(name="messages")
    router.message.register(on_text, F.text)
    router.message.register(on_other)
    return router
