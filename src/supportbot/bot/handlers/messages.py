"""Text questions and everything that is neither text nor voice."""

from aiogram import Bot, F, Router
from aiogram.types import Message as TgMessage

from supportbot.bot.delivery import Delivery
from supportbot.bot.streaming import TelegramDraft
from supportbot.conversation import ConversationService
from supportbot.support.models import Message


def draft_for(bot: Bot, conversation: ConversationService, chat_id: int, _,
              delivery: Delivery | None = None) -> TelegramDraft | None:
    """Where an LLM answer streams while it is written (one message, marked as automatic; its
    edits under the delivery path's send limits)."""
    llm = conversation.pipeline.llm
    if llm is None:
        return None
    return TelegramDraft(bot, chat_id, label="🤖 " + _("AI answer"), interval=llm.stream_edit_seconds,
                         limiter=delivery.limiter if delivery is not None else None)


async def answer_and_deliver(bot: Bot, conversation: ConversationService, delivery: Delivery, chat_id: int,
                             ask, _) -> None:
    """Run ``ask(stream)`` (a conversation call) with a draft for LLM answers, then deliver."""
    draft = draft_for(bot, conversation, chat_id, _, delivery)
    outcome = await ask(draft)
    if draft is not None and (outcome.answer is None or outcome.answer.source not in Message.LLM_SOURCES):
        await draft.discard()  # nothing half-shown stays behind a hand-over
    await delivery.deliver(outcome, draft=draft)


async def on_text(message: TgMessage, bot: Bot, conversation: ConversationService, delivery: Delivery,
                  customer, language, _) -> None:
    await answer_and_deliver(
        bot, conversation, delivery, message.chat.id,
        lambda stream: conversation.ask(customer, message.text or "", language=language,
                                        telegram_message_id=message.message_id, stream=stream,
                                        flush=delivery.deliver), _)


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


async def on_other(message: TgMessage, conversation: ConversationService, delivery: Delivery,
                   customer, language) -> None:
    """Stickers, photos, documents, locations...: logged, answered politely."""
    kind, text = _kind_of(message)
    outcome = await conversation.unsupported(customer, kind=kind, text=text, language=language,
                                             telegram_message_id=message.message_id)
    await delivery.deliver(outcome)


def build_router() -> Router:
    router = Router(name="messages")
    router.message.register(on_text, F.text)
    router.message.register(on_other)
    return router
