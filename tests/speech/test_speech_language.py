"""Which language Whisper is told to hear: only configured ones, the app language as a prior."""

import pytest

from supportbot.speech.transcriber import choose_language, normalise_hint

ALLOWED = ("uk", "ru", "en")


def test_never_leaves_the_configured_languages():
    # Whisper's favourite on a short clip is Bulgarian: not configured, so it cannot win.
    language, probability = choose_language({"bg": 0.6, "ru": 0.3, "uk": 0.08, "en": 0.02}, ALLOWED, None)
    assert language == "ru"
    assert probability == pytest.approx(0.3 / 0.4)


def test_hint_wins_a_close_call_between_configured_languages():
    assert choose_language({"ru": 0.55, "uk": 0.45}, ALLOWED, "uk")[0] == "uk"


def test_clear_detection_beats_the_hint():
    # A customer with an English phone interface speaking Russian.
    language, probability = choose_language({"ru": 0.97, "en": 0.02, "uk": 0.01}, ALLOWED, "en")
    assert language == "ru" and probability > 0.9


def test_hint_outside_configuration_is_ignored():
    assert choose_language({"en": 0.4, "uk": 0.6}, ("uk", "en"), "de")[0] == "uk"
    assert normalise_hint("de", ALLOWED) is None


@pytest.mark.parametrize(("code", "expected"),
                         [("uk", "uk"), ("ru-RU", "ru"), ("en_GB", "en"), ("", None), (None, None)])
def test_telegram_codes_become_hints(code, expected):
    assert normalise_hint(code, ALLOWED) == expected


def test_no_probability_at_all_falls_back_evenly():
    language, probability = choose_language({}, ALLOWED, "ru")
    assert language == "ru" and probability == pytest.approx(1 / 3)
