"""End-to-end voice: a customer sends audio through the sandbox Bot API (getFile and the
download go over real HTTP); the unmodified bot transcribes it with the real model and
answers from the FAQ like text. Every bad-input case gets a clear reply and a log row."""

from __future__ import annotations

import logging
import threading

import pytest
from asgiref.sync import sync_to_async

from supportbot.config import SANDBOX_BOT_TOKEN
from supportbot.speech import Transcript, TranscriptionQueue
from supportbot.speech.audio import decode
from supportbot.support.models import FaqEntry, Message, Ticket
from supportbot.support.voice import AudioStore

from ..conftest import wait_until
from ..voice_samples import encode, silence, tone

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

EN_USER, RU_USER, UK_USER = 6001, 6002, 6003


def _buttons(msg: dict) -> list[dict]:
    return [b for row in (msg.get("reply_markup") or {}).get("inline_keyboard", []) for b in row]


async def _send(api, user_id, data: bytes, *, kind="voice", duration=3, language="en", mime="audio/ogg"):
    sent = await api.send_file(user_id, kind, data, duration=duration, mime_type=mime, language_code=language)
    return sent["message"]["message_id"]


async def _reply(api, user_id, after: int, timeout: float = 30) -> dict:
    return await api.wait_for_bot_message(user_id, after=after, timeout=timeout)


async def _voice_row(user_id: int) -> Message:
    return await Message.objects.aget(direction="in", kind="voice", ticket__user_id=user_id)


# -- the happy path, real model -------------------------------------------------------------
async def test_english_voice_is_echoed_and_answered_from_the_faq(sample_faq, bot_app, customer_api, spoken, caplog):
    data, seconds = spoken("How can I track my order?", "en")
    entry = await FaqEntry.objects.aget(key="order-tracking-en")
    caplog.set_level(logging.DEBUG, logger="supportbot.sandbox.server.access")
    voice_id = await _send(customer_api, EN_USER, data, duration=round(seconds))

    heard = await _reply(customer_api, EN_USER, voice_id)
    assert heard["plain_text"].startswith("I heard: ")
    assert "track my order" in heard["plain_text"].lower()
    assert heard["reply_to_message_id"] == voice_id and not _buttons(heard)
    answer = await _reply(customer_api, EN_USER, heard["message_id"])
    assert answer["plain_text"] == entry.answer
    assert len(_buttons(answer)) == 2

    row = await _voice_row(EN_USER)
    assert "track my order" in row.text.lower()
    assert row.transcript_language == "en" and row.transcript_probability > 0.9
    assert abs(row.audio_seconds - seconds) < 0.3 and row.transcription_ms > 0
    assert row.audio_file == ""  # privacy default: audio is not kept
    out = await Message.objects.select_related("faq_entry").aget(source="faq", ticket__user_id=EN_USER)
    assert out.in_reply_to_id == row.pk and out.faq_entry.key == "order-tracking-en"
    assert any(a["action"] == "typing" for a in await customer_api.actions(EN_USER))
    assert any("/getFile" in r.getMessage() for r in caplog.records)  # fetched over the Bot API
    assert not (bot_app.audio_store.root).exists() or not any(bot_app.audio_store.root.rglob("*.*"))


async def test_russian_video_note_is_answered_in_russian(sample_faq, bot_app, customer_api, spoken):
    ogg, seconds = spoken("Сколько стоит доставка?", "ru")
    # The same speech as a round video note: MP4 with H.264 video and AAC audio.
    samples = decode(ogg, max_seconds=60).samples
    mp4 = encode(samples, 16_000, container="mp4", codec="aac", out_rate=44_100, video=True)
    note_id = await _send(customer_api, RU_USER, mp4, kind="video_note", duration=round(seconds),
                          language="ru", mime="video/mp4")
    heard = await _reply(customer_api, RU_USER, note_id)
    assert heard["plain_text"].startswith("Я услышал: ") and "стоит доставка" in heard["plain_text"].lower()
    answer = await _reply(customer_api, RU_USER, heard["message_id"])
    entry = await FaqEntry.objects.aget(key="delivery-cost-ru")
    assert answer["plain_text"] == entry.answer
    assert _buttons(answer)[0]["text"].endswith("Полезно")
    assert (await _voice_row(RU_USER)).transcript_language == "ru"


# -- bad input, each with a clear reply ------------------------------------------------------
async def test_too_big_is_refused_without_downloading(transactional_db, bot_app, customer_api, caplog):
    caplog.set_level(logging.DEBUG, logger="supportbot.sandbox.server.access")
    voice_id = await _send(customer_api, UK_USER, b"OggS" + bytes(21 * 1024 * 1024), duration=30, language="uk")
    reply = await _reply(customer_api, UK_USER, voice_id)
    assert "20 МБ" in reply["plain_text"] and "завеликий" in reply["plain_text"]
    assert not any("/getFile" in r.getMessage() for r in caplog.records)
    row = await _voice_row(UK_USER)
    assert row.text == "" and await Message.objects.filter(in_reply_to=row, source="system").aexists()


async def test_declared_too_long_is_refused_before_download(transactional_db, bot_app, customer_api):
    voice_id = await _send(customer_api, EN_USER, encode(tone(1.0), 16_000), duration=600)
    reply = await _reply(customer_api, EN_USER, voice_id)
    assert "600 s" in reply["plain_text"] and "120 s" in reply["plain_text"]
    assert (await _voice_row(EN_USER)).audio_seconds == 600


async def test_longer_than_declared_is_refused_after_decoding(transactional_db, bot_app, customer_api):
    voice_id = await _send(customer_api, RU_USER, encode(tone(125.0), 16_000), duration=5, language="ru")
    reply = await _reply(customer_api, RU_USER, voice_id)
    assert "120 с" in reply["plain_text"] and "покороче" in reply["plain_text"]


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("garbage", "damaged"),
        ("truncated", "damaged"),
        ("text", "does not look like audio"),
        ("silence", "could not hear anything"),
    ],
)
async def test_bad_audio_gets_a_clear_reply(transactional_db, bot_app, customer_api, case, expected):
    kind, mime, duration = "voice", "audio/ogg", 3
    if case == "garbage":
        data = b"OggS" + bytes(range(256)) * 20
    elif case == "truncated":
        full = encode(tone(8.0), 16_000)
        data, duration = full[: len(full) // 5], 8
    elif case == "text":
        data, kind, mime = b"this is not a song, it is a text file\n" * 50, "audio", "audio/mpeg"
    else:
        data = encode(silence(2.5), 16_000)
    sent_id = await _send(customer_api, EN_USER, data, kind=kind, duration=duration, mime=mime)
    reply = await _reply(customer_api, EN_USER, sent_id)
    assert expected in reply["plain_text"] and not _buttons(reply)
    row = await _voice_row(EN_USER)
    assert row.text == ""
    ticket = await Ticket.objects.aget(user_id=EN_USER)
    assert ticket.status == Ticket.Status.OPEN  # nothing stuck: the next question is answered normally


async def test_audio_document_is_treated_as_voice(transactional_db, bot_app, customer_api):
    sent_id = await _send(customer_api, EN_USER, encode(silence(1.0), 16_000, container="mp3", codec="libmp3lame"),
                          kind="document", mime="audio/mpeg")
    assert "could not hear anything" in (await _reply(customer_api, EN_USER, sent_id))["plain_text"]


# -- concurrency, failures, privacy: a scripted transcriber keeps these fast -------------------
class ScriptedTranscriber:
    name = "fake/scripted"

    def __init__(self, text: str = "How long does delivery take?", *, error: Exception | None = None) -> None:
        self.text = text
        self.error = error
        self.gate = threading.Event()
        self.gate.set()
        self.started = threading.Event()
        self.thread_names: list[str] = []

    def transcribe(self, audio, *, language_hint=None, declared_seconds=None) -> Transcript:
        self.thread_names.append(threading.current_thread().name)
        self.started.set()
        self.gate.wait(20)
        if self.error is not None:
            raise self.error
        return Transcript(self.text, "en", 0.98, 2.5, 42)


@pytest.fixture
async def start_bot(sandbox, transactional_db, tmp_path):
    from supportbot.bot.runner import BotApp

    apps = []

    async def start(transcriber, *, max_waiting=0, keep_audio=False):
        speech = TranscriptionQueue(transcriber, concurrency=1, max_waiting=max_waiting, max_seconds=120)
        store = AudioStore(tmp_path / "audio", keep=keep_audio, retention_days=30)
        app = BotApp(token=SANDBOX_BOT_TOKEN, api_url=sandbox.url, polling_timeout=1, outbox_interval=0.2,
                     speech=speech, audio_store=store)
        await app.start()
        apps.append(app)
        return app

    yield start
    for app in apps:
        await app.stop()


async def test_full_queue_asks_to_wait_and_nothing_is_lost(sample_faq, start_bot, customer_api):
    transcriber = ScriptedTranscriber()
    transcriber.gate.clear()
    await start_bot(transcriber, max_waiting=0)
    first = await _send(customer_api, EN_USER, encode(tone(1.0), 16_000))
    await sync_to_async(transcriber.started.wait)(10)
    second = await _send(customer_api, UK_USER, encode(tone(1.0), 16_000), language="uk")
    busy = await _reply(customer_api, UK_USER, second)
    assert "Зачекайте хвилинку" in busy["plain_text"]
    assert (await _voice_row(UK_USER)).text == ""

    transcriber.gate.set()  # the first one was only waiting: it is answered in full
    heard = await _reply(customer_api, EN_USER, first)
    assert heard["plain_text"] == "I heard: How long does delivery take?"
    answer = await _reply(customer_api, EN_USER, heard["message_id"])
    assert len(_buttons(answer)) == 2
    assert transcriber.thread_names == ["transcribe_0"]  # in the worker pool, not on the event loop


async def test_an_unexpected_failure_hands_over_to_a_person(transactional_db, start_bot, customer_api, caplog):
    await start_bot(ScriptedTranscriber(error=RuntimeError("model file vanished")))
    voice_id = await _send(customer_api, EN_USER, encode(tone(1.0), 16_000))
    reply = await _reply(customer_api, EN_USER, voice_id)
    assert "something went wrong" in reply["plain_text"]
    ticket = await Ticket.objects.aget(user_id=EN_USER)
    assert ticket.status == Ticket.Status.WITH_OPERATOR
    assert "model file vanished" in caplog.text


async def test_transcript_markup_is_escaped_and_kept_audio_expires(transactional_db, start_bot, customer_api):
    app = await start_bot(ScriptedTranscriber("Is <b>5 & 6</b> in stock?"), keep_audio=True)
    data = encode(tone(1.0), 16_000)
    voice_id = await _send(customer_api, EN_USER, data)
    heard = await _reply(customer_api, EN_USER, voice_id)
    assert heard["plain_text"] == "I heard: Is <b>5 & 6</b> in stock?" and not heard["entities"]
    await _reply(customer_api, EN_USER, heard["message_id"])  # empty FAQ: handed over

    row = await _voice_row(EN_USER)
    assert row.text == "Is <b>5 & 6</b> in stock?" and row.audio_file.endswith(".oga")  # Telegram's name
    path = app.audio_store.path_of(row.audio_file)
    assert path is not None and path.read_bytes() == data

    from datetime import timedelta

    from django.utils import timezone

    assert await sync_to_async(app.audio_store.purge_expired)() == 0
    later = timezone.now() + timedelta(days=31)
    assert await sync_to_async(app.audio_store.purge_expired)(now=later) == 1
    assert not path.exists()
    await row.arefresh_from_db()
    assert row.audio_file == ""


async def test_voice_during_hand_over_is_transcribed_for_the_operator(transactional_db, start_bot, customer_api):
    await start_bot(ScriptedTranscriber("Any news about my refund?"))
    first = await customer_api.send_text(EN_USER, "/operator")
    await _reply(customer_api, EN_USER, first["message"]["message_id"])
    voice_id = await _send(customer_api, EN_USER, encode(tone(1.0), 16_000))
    heard = await _reply(customer_api, EN_USER, voice_id)
    assert heard["plain_text"] == "I heard: Any news about my refund?"
    with pytest.raises(TimeoutError):  # told once already that a person will reply: no more
        await _reply(customer_api, EN_USER, heard["message_id"], timeout=1.0)
    await wait_until(lambda: Message.objects.filter(kind="voice", text="Any news about my refund?").exists())
    assert not await Message.objects.filter(source="faq").aexists()
    ticket = await Ticket.objects.aget(user_id=EN_USER)
    assert ticket.status == Ticket.Status.WITH_OPERATOR
