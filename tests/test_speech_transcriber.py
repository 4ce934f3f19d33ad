"""The real model (Whisper base, int8) on real synthetic speech."""

from __future__ import annotations

import re

import pytest

from supportbot.speech import default_transcriber

from .voice_samples import encode, silence, spoken, tone  # noqa: F401 (fixture)

pytestmark = pytest.mark.slow


def _words(text: str) -> set[str]:
    return set(re.findall(r"\w+", text.lower().replace("ё", "е")))


def test_english_speech_word_for_word(spoken):
    data, seconds = spoken("How can I track my order?", "en")
    transcript = default_transcriber().transcribe(data, language_hint="en", declared_seconds=round(seconds))
    assert {"how", "can", "track", "my", "order"} <= _words(transcript.text)
    assert transcript.language == "en" and transcript.language_probability > 0.9
    assert abs(transcript.duration - seconds) < 0.2
    assert transcript.elapsed_ms > 0


def test_russian_speech_detected_despite_a_ukrainian_hint(spoken):
    data, _ = spoken("Как вернуть товар, который не подошёл?", "ru")
    transcript = default_transcriber().transcribe(data, language_hint="uk")
    assert {"как", "вернуть", "товар"} <= _words(transcript.text)
    assert transcript.language == "ru"


def test_silence_and_noise_give_an_empty_transcript():
    transcriber = default_transcriber()
    assert transcriber.transcribe(encode(silence(2.0), 16_000)).empty
    assert transcriber.transcribe(encode(tone(2.0), 16_000), language_hint="en").empty
