"""Operators see how a voice message was heard, and can play it when audio is kept."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from supportbot.support import services
from supportbot.support.models import Message
from supportbot.support.voice import AudioStore, attach_transcript, audio_root


def _voice(text: str, *, audio: bytes | None = None) -> Message:
    incoming = services.record_incoming(
        customer=services.CustomerInfo(id=7001, first_name="Taras", language_code="uk"),
        kind=Message.Kind.VOICE, text=text, telegram_message_id=5,
    )
    kept = AudioStore(audio_root(), keep=True, retention_days=30).save(audio, suffix=".oga") if audio else ""
    attach_transcript(message_id=incoming.message_id, language="uk", probability=0.93, audio_seconds=4.2,
                      transcription_ms=812, audio_file=kept)
    return Message.objects.get(pk=incoming.message_id)


def _staff() -> Client:
    client = Client()
    client.force_login(get_user_model().objects.create_superuser("op", password="x-123456-long"))
    return client


def test_thread_shows_transcript_and_player(db):
    message = _voice("Де моя <посилка>?", audio=b"OggS fake voice bytes")
    client = _staff()
    page = client.get(f"/admin/support/ticket/{message.ticket_id}/change/").content.decode()
    assert "Де моя &lt;посилка&gt;?" in page
    assert "uk (p=0.93)" in page and "4.2 s of audio" in page and "812 ms" in page
    audio_url = f"/admin/support/message/{message.pk}/audio/"
    assert f'<audio controls preload="none" src="{audio_url}">' in page

    response = client.get(audio_url)
    assert response.status_code == 200 and response["Content-Type"] == "audio/ogg"
    assert b"".join(response.streaming_content) == b"OggS fake voice bytes"
    AudioStore(audio_root(), keep=True, retention_days=30).path_of(message.audio_file).unlink()
    assert client.get(audio_url).status_code == 404  # expired: gone


def test_no_player_without_kept_audio_and_no_audio_for_strangers(db):
    message = _voice("Скільки коштує доставка?")
    page = _staff().get(f"/admin/support/ticket/{message.ticket_id}/change/").content.decode()
    assert "Скільки коштує доставка?" in page and "<audio" not in page
    anonymous = Client().get(f"/admin/support/message/{message.pk}/audio/")
    assert anonymous.status_code == 302 and "/login/" in anonymous["Location"]


@pytest.mark.parametrize("stored", ["../../secret_key", "/etc/passwd"])
def test_stored_paths_cannot_leave_the_audio_folder(stored):
    assert AudioStore(audio_root(), keep=True, retention_days=1).path_of(stored) is None
