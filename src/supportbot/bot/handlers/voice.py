"""Voice messages, audio files and round video notes: transcribed locally, then
answered exactly like text (``ConversationService.heard``), with the transcript echoed first.

Every way it can go wrong ends in a clear reply and a log line, never silence:
too big to download, too long, busy, not audio, damaged, nothing heard.
"""

from __future__ import annotations

import io
import logging
import posixpath
from dataclasses import dataclass

from aiogram import Bot, F, Router
from aiogram.exceptions import TelegramBadRequest
from aiogram.types import Audio, VideoNote, Voice
from aiogram.types import Message as TgMessage
from aiogram.utils.chat_action import ChatActionSender

from supportbot.background import in_worker_thread
from supportbot.bot.delivery import Delivery
from supportbot.bot.handlers.messages import answer_and_deliver
from supportbot.conversation import ConversationService, Heard
from supportbot.speech.audio import AudioError, CorruptAudio, NotAudio, TooLong
from supportbot.speech.queue import QueueFull, TranscriptionQueue
from supportbot.support.voice import AudioStore

log = logging.getLogger(__name__)

#: Telegram's getFile refuses bigger files for bots on the cloud Bot API.
MAX_DOWNLOAD_BYTES = 20 * 1024 * 1024

@dataclass(frozen=True)
class AudioRef:
    kind: str  # voice / audio / video_note / document
    file_id: str
    file_size: int | None
    duration: int | None


def audio_of(message: TgMessage) -> AudioRef | None:
    m: Voice | Audio | VideoNote
    if message.voice:
        m = message.voice
        return AudioRef("voice", m.file_id, m.file_size, m.duration)
    if message.audio:
        m = message.audio
        return AudioRef("audio", m.file_id, m.file_size, m.duration)
    if message.video_note:
        m = message.video_note
        return AudioRef("video_note", m.file_id, m.file_size, m.duration)
    doc = message.document
    if doc and (doc.mime_type or "").startswith("audio/"):
        return AudioRef("document", doc.file_id, doc.file_size, None)
    return None


async def on_voice(message: TgMessage, bot: Bot, conversation: ConversationService, delivery: Delivery,
                   speech: TranscriptionQueue, audio_store: AudioStore, customer, language, _) -> None:
    ref = audio_of(message)
    assert ref is not None  # the router's filter

    async def refuse(reason: str, text: str, *, hand_over: bool = False, **details) -> None:
        log.info("voice message %s from %s not transcribed: %s", message.message_id, customer.id, reason)
        outcome = await conversation.not_heard(customer, notice=text, telegram_message_id=message.message_id,
                                               language=language, hand_over=hand_over, **details)
        await delivery.deliver(outcome)

    limit = int(speech.max_seconds)
    if ref.file_size and ref.file_size > MAX_DOWNLOAD_BYTES:
        await refuse(f"file of {ref.file_size} bytes is over the 20 MB download limit", _(
            "This file is too big for me to download (the limit is 20 MB). "
            "Please send a shorter voice message or write your question."))
        return
    if ref.duration and ref.duration > limit:
        await refuse(f"declared {ref.duration} s, limit {limit} s", _(
            "Your voice message is {seconds} s long; I can listen to {limit} s at most. "
            "Please send a shorter one or write your question.").format(seconds=ref.duration, limit=limit),
            audio_seconds=float(ref.duration))
        return

    data = b""
    suffix = ".ogg"
    try:
        with speech.admission():
            async with ChatActionSender.typing(bot=bot, chat_id=message.chat.id):
                try:
                    file = await bot.get_file(ref.file_id)
                except TelegramBadRequest as exc:
                    if "too big" not in exc.message.lower():
                        raise
                    raise _TooBig(exc.message) from None
                if file.file_size and file.file_size > MAX_DOWNLOAD_BYTES:
                    raise _TooBig(f"{file.file_size} bytes")
                assert file.file_path is not None  # getFile gives a path for every file it serves
                buffer = io.BytesIO()  # in memory: audio touches disk only with KEEP_AUDIO
                await bot.download_file(file.file_path, destination=buffer, timeout=60)
                data = buffer.getvalue()
                suffix = posixpath.splitext(file.file_path or "")[1] or suffix
                transcript = await speech.transcribe(
                    data, language_hint=customer.language_code, declared_seconds=ref.duration or None)
    except QueueFull as exc:
        await refuse(f"queue full ({exc})", _(
            "I am listening to many voice messages right now. Please wait a minute and send it "
            "again, or write your question as text."))
        return
    except _TooBig as exc:
        await refuse(f"download refused: {exc}", _(
            "This file is too big for me to download (the limit is 20 MB). "
            "Please send a shorter voice message or write your question."))
        return
    except TooLong as exc:
        await refuse(str(exc), _(
            "Your voice message is {seconds} s long; I can listen to {limit} s at most. "
            "Please send a shorter one or write your question.").format(seconds=round(exc.seconds), limit=limit),
            audio_seconds=round(exc.seconds, 2), audio_file=await _keep(audio_store, data, suffix))
        return
    except NotAudio as exc:
        await refuse(f"not audio: {exc}", _(
            "This file does not look like audio. Please send a voice message or write your question."),
            audio_file=await _keep(audio_store, data, suffix))
        return
    except (CorruptAudio, AudioError) as exc:
        await refuse(f"damaged audio: {exc}", _(
            "I could not play your voice message: the recording seems damaged. "
            "Please record it again or write your question."),
            audio_file=await _keep(audio_store, data, suffix))
        return
    except Exception:
        # The model failed to load, the download broke...: a person takes over.
        log.exception("voice message %s from %s failed", message.message_id, customer.id)
        await refuse("error", _(
            "Sorry, something went wrong on our side. Your message is saved and an operator will see it."),
            hand_over=True, audio_file=await _keep(audio_store, data, suffix))
        return

    log.info("voice message %s from %s: %.1f s, %s (p=%.2f), %d ms", message.message_id, customer.id,
             transcript.duration, transcript.language or "-", transcript.language_probability,
             transcript.elapsed_ms)
    heard = Heard(
        text="" if transcript.empty else transcript.text, language=transcript.language,
        probability=transcript.language_probability, seconds=transcript.duration,
        transcription_ms=transcript.elapsed_ms, audio_file=await _keep(audio_store, data, suffix))
    await answer_and_deliver(
        bot, conversation, delivery, message.chat.id,
        lambda stream: conversation.heard(customer, heard, language=language, telegram_message_id=message.message_id,
                                          stream=stream, flush=delivery.deliver), _)


class _TooBig(Exception):
    pass


async def _keep(store: AudioStore, data: bytes, suffix: str) -> str:
    if not data or not store.keep:
        return ""
    return await in_worker_thread(store.save)(data, suffix=suffix)


def _has_audio(message: TgMessage) -> bool:
    return audio_of(message) is not None


def build_router() -> Router:
    router = Router(name="voice")
    router.message.register(on_voice, F.func(_has_audio))
    return router
