"""The real model (Whisper base, int8) on real synthetic speech."""

from __future__ import annotations

import re

import pytest

from supportbot.assembly import default_transcriber

from ..voice_samples import encode, silence, tone

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


def test_short_window_cuts_only_the_padding():
    import numpy as np

    from supportbot.speech.transcriber import short_window

    speech = np.full((80, 501), -0.5, np.float32)  # log-Mel of real audio is never exactly 0
    padded = np.pad(speech, ((0, 0), (0, 3000 - 501)))
    cut = short_window(padded, tail=100)
    assert cut.shape == (80, 602)  # 501 frames of speech + 100 of padding, rounded up to even
    assert np.array_equal(cut[:, :501], speech)
    full = np.full((1, 80, 3000), -0.5, np.float32)
    assert short_window(full).shape == (1, 80, 3000)  # a full window is left alone
    assert short_window(np.zeros((80, 3000), np.float32)).shape == (80, 100)


def test_short_windows_transcribe_like_full_windows(spoken, tmp_path):
    """The speed-up (encoding the speech, not 30 s) changes neither words nor language."""
    from supportbot.speech.transcriber import FasterWhisperTranscriber

    shared = default_transcriber()
    full = FasterWhisperTranscriber(shared.model_ref, models_dir=shared.models_dir, short_windows=False)
    data, _ = spoken("Как вернуть товар, который не подошёл?", "ru")
    short_result = shared.transcribe(data, language_hint="uk")
    full_result = full.transcribe(data, language_hint="uk")
    assert _words(short_result.text) == _words(full_result.text)
    assert short_result.language == full_result.language == "ru"
    assert shared.load().reused_encodings > 0  # detection's encoder pass is reused for decoding
