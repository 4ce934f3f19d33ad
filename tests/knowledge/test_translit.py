"""Latin-letter Ukrainian and Russian: told from English, written back in Cyrillic."""

from __future__ import annotations

import pytest

from supportbot.translit import LATIN_RU, LATIN_UK, detect, for_matching, to_cyrillic


@pytest.mark.parametrize(("text", "language"), [
    ("skilky koshtuye dostavka do lvova", LATIN_UK),
    ("shcho z garantiyeyu", LATIN_UK),
    ("chi mozhna povernuty tovar", LATIN_UK),
    ("yak zrobyty povernennia", LATIN_UK),
    ("rozstrochka bez pereplaty", LATIN_UK),
    ("kogda privezut zakaz", LATIN_RU),
    ("kak oplatit zakaz kartoy", LATIN_RU),
    ("mozhno li vernut televizor esli on rabotaet", LATIN_RU),
    ("privet, skolko stoit dostavka?", LATIN_RU),
    ("How much is delivery to Lviv?", "en"),
    ("can I return a phone I bought online", "en"),
    ("hello", "en"),
    ("Скільки коштує доставка?", "uk"),
    ("Чи є у вас розстрочка", "uk"),
    ("Сколько стоит доставка", "ru"),
    ("Можно ли вернуть товар", "ru"),
])
def test_detects_the_language_and_script(text, language):
    assert detect(text) == language


@pytest.mark.parametrize(("text", "language", "cyrillic"), [
    ("skilky koshtuye dostavka", LATIN_UK, "скілки коштує доставка"),
    ("chi mozhna povernuty", LATIN_UK, "чи можна повернути"),
    ("shcho z garantiyeyu", LATIN_UK, "що з гарантією"),
    ("kogda privezut zakaz", LATIN_RU, "когда привезут заказ"),
    ("kak oplatit zakaz kartoy", LATIN_RU, "как оплатит заказ картой"),
])
def test_writes_latin_letter_words_in_cyrillic(text, language, cyrillic):
    assert to_cyrillic(text, language) == cyrillic


def test_keeps_numbers_brands_codes_and_cyrillic_as_they_are():
    assert to_cyrillic("dostavka 299 grn na USB i iPhone 15", LATIN_UK).startswith("доставка 299 грн на USB")
    assert to_cyrillic("вже є dostavka", LATIN_UK) == "вже є доставка"


def test_only_latin_letter_uk_or_ru_is_rewritten_for_matching():
    assert for_matching("kogda privezut zakaz") == "когда привезут заказ"
    assert for_matching("When will my order arrive?") is None
    assert for_matching("Коли привезуть замовлення?") is None


@pytest.mark.parametrize("text", ["", "   ", "123 456", "🙂🙂🙂", "?!", "\x00\x07", "a" * 10_000, "ok"])
def test_broken_or_empty_input_never_fails(text):
    language = detect(text)
    assert language in ("", "en", "uk", "ru", LATIN_UK, LATIN_RU)
    assert isinstance(to_cyrillic(text, LATIN_UK), str)
    for_matching(text)
