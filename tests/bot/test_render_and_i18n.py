import pytest

from supportbot.bot.render import escape, feedback_keyboard, split_text
from supportbot.i18n import gettext_for, pick_language


def test_split_respects_limit_and_loses_nothing():
    text = ("word " * 2000).strip()
    chunks = split_text(text)
    assert all(len(c) <= 4096 for c in chunks) and len(chunks) == 3
    assert " ".join(chunks) == text


def test_split_hard_cuts_a_single_giant_word():
    chunks = split_text("x" * 9000)
    assert [len(c) for c in chunks] == [4096, 4096, 808]


def test_escape_keeps_markup_characters_as_text():
    assert escape("a < b & c > d *e* _f_") == "a &lt; b &amp; c &gt; d *e* _f_"


@pytest.mark.parametrize(
    ("code", "expected"),
    [("uk", "uk"), ("ru-RU", "ru"), ("en-GB", "en"), ("de", "en"), (None, "en"), ("", "en")],
)
def test_pick_language(code, expected):
    assert pick_language(code, "en") == expected


def test_translations_exist_for_every_language():
    assert gettext_for("uk")("Helpful") == "Корисно"
    assert gettext_for("ru")("Helpful") == "Полезно"
    assert gettext_for("en")("Helpful") == "Helpful"


def test_every_message_is_translated():
    from importlib import resources

    from babel.messages.pofile import read_po

    for language in ("uk", "ru"):
        path = resources.files("supportbot") / "locale" / language / "LC_MESSAGES" / "supportbot.po"
        with path.open("rb") as handle:
            catalog = read_po(handle)
        missing = [m.id for m in catalog if m.id and not m.string]
        assert not missing, f"{language}: untranslated {missing}"


def test_feedback_buttons_fit_callback_limit():
    markup = feedback_keyboard(2**62, gettext_for("en"))
    for button in markup.inline_keyboard[0]:
        assert len(button.callback_data.encode()) <= 64
