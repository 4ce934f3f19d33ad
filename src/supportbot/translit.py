"""Ukrainian and Russian typed in Latin letters: which language, and back to Cyrillic.

Customers on phones without a Cyrillic layout, or abroad, write "skilky koshtuye
dostavka do lvova" or "kogda privezut zakaz". Embedding models learned Cyrillic
Ukrainian and Russian; the same words in Latin letters look to them like an unknown
language, and the nearest FAQ entry is right far less often (see the README's "FAQ
matching"). This module tells such text from English and writes it back in
Cyrillic, so the matcher and the LLM see the language the customer meant.

Deterministic and dictionary-free: marker words (function words every question
has: "chi", "skilky", "kogda", "mozhno"...) decide the language, and the
transliteration follows the common informal schemes (KMU 2010 for Ukrainian, the
"translit" people type for Russian: sh, ch, zh, kh, ts, shch/sch, ya/ia, yu/iu, y).
It cannot restore the soft sign or tell "e" from "є" everywhere: "skilky" becomes
"скилки", not "скільки". The matcher tolerates that; measured in
``bench/faq_match.py`` (Latin-letter questions of the shop dev set).
"""

from __future__ import annotations

import re
from functools import lru_cache

__all__ = ["LATIN_RU", "LATIN_UK", "detect", "for_matching", "to_cyrillic"]

LATIN_UK = "uk-latin"
LATIN_RU = "ru-latin"

_WORD = re.compile(r"[^\W\d_]+(?:['’ʼ`][^\W\d_]+)*", re.UNICODE)
_CYRILLIC = re.compile(r"[\u0400-\u04FF]")
_LATIN = re.compile(r"[A-Za-z]")

# Letters only one of the two languages has.
_UK_LETTERS = set("іїєґІЇЄҐ")
_RU_LETTERS = set("ыэёъЫЭЁЪ")



def _markers(words: str) -> frozenset[str]:
    return frozenset(words.split())


# Function words and frequent support words, as people type them in Latin letters.
_UK_MARKERS = _markers("""
chy chi shcho scho sho shchob shob yak yaka yake yaki yakyi yakyy skilky skilki skilka koly kudy de dlia dlya
mozhna mozhu mozhe treba potribno chomu tomu vzhe vzhe tezh takozh ale abo yakscho yaksho yakshcho tse tsia
tsei tsey meni mene vy vam vas vash vashe vashi nas nam mii miy moie moye moya moi ye yest nemaie nemaye nema
mayu maiete mayete zamovlennia zamovlennya zamovyv zamovyla zamovlennyu dostavku dostavky koshtuie koshtuye
koshtuyut povernuty povernennia povernennya obminiaty obminyaty harantiia garantiya harantiyi garantii
dyakuyu diakuiu dyakuju pryvit vitayu dobryi dobryy den dnia dnya tyzhden tyzhnia tyzhnya hroshi groshi
hryven hryvni griven grn oplata oplatyty oplatu kartkoiu kartkoyu kartka rozstrochka rozstrochku otrymaty
otrymav otrymala prykhodyt pryide pryjde pryyde pryvezete dovho dovgo shvydko zaraz sohodni sogodni zavtra
vchora tsina tsinu cina cinu vartist vartisť nova poshta viddilennia viddilennya viddilenni kuryer kurier
""")
_RU_MARKERS = _markers("""
kak kakaya kakoi kakoy kakie chto shto chtoby shtoby skolko skolka kogda kuda gde dlya dlia mozhno mogu
mozhet nado nuzhno pochemu potomu uzhe tozhe takzhe no ili esli eto eta etot mne menya vy vam vas vash vashe
vashi nas nam moi moy moya moe moyo est net nety imeyu zakaz zakaza zakazal zakazala zakazu dostavka dostavku
dostavki stoit stoyat vernut vozvrat vozvrata obmenyat garantiya garantii spasibo spasibki privet
zdravstvuite zdravstvuyte dobryi dobryy den dnya nedelya nedeli dengi rublei griven grn oplata oplatit oplatu
kartoi kartoy karta rassrochka rassrochku poluchit poluchil poluchila pridet priedet privezete privezut dolgo
bystro seichas seychas segodnya zavtra vchera pozhaluista pozhaluysta ochen horosho khorosho tsena tsenu cena
cenu stoimost pochta otdelenie otdelenii kurer
""")
_EN_MARKERS = _markers("""
the a an is are was were be do does did have has had can could will would should i you he she it we they my
your our their me him her us them what when where why how which who whom this that these those to of in on at
for from with by about and or but not no yes if then there here please thanks thank hi hello order delivery
price cost much many long get send pay return refund warranty
""")


def _words(text: str) -> list[str]:
    return [w.lower() for w in _WORD.findall(text)]


def detect(text: str) -> str:
    """The language of ``text``: "uk", "ru", "en", "uk-latin", "ru-latin", or "" (can't tell).

    Cyrillic text is "uk" or "ru" by the letters only one of them has, then by
    marker words; Latin text is English when English function words dominate,
    else Ukrainian or Russian typed in Latin letters, by marker words.
    """
    cyrillic = len(_CYRILLIC.findall(text))
    latin = len(_LATIN.findall(text))
    if not cyrillic and not latin:
        return ""
    if cyrillic >= latin:
        uk = sum(ch in _UK_LETTERS for ch in text)
        ru = sum(ch in _RU_LETTERS for ch in text)
        if uk != ru:
            return "uk" if uk > ru else "ru"
        words = [to_latin_marker(w) for w in _words(text)]
        uk_hits = sum(w in _UK_MARKERS for w in words)
        ru_hits = sum(w in _RU_MARKERS for w in words)
        if uk_hits != ru_hits:
            return "uk" if uk_hits > ru_hits else "ru"
        return ""
    words = [w for w in _words(text) if _LATIN.match(w)]
    if not words:
        return ""
    en = sum(w in _EN_MARKERS for w in words)
    uk = sum(w in _UK_MARKERS for w in words)
    ru = sum(w in _RU_MARKERS for w in words)
    if en > max(uk, ru) or (en == max(uk, ru) and en > 0 and not _slavic_shape(words)):
        return "en"
    if uk or ru:
        return LATIN_UK if uk >= ru else LATIN_RU
    # No marker word at all (two-word questions): letter combinations English lacks.
    if _slavic_shape(words):
        return LATIN_UK if _uk_shape(words) >= 0 else LATIN_RU
    return "en"


_SLAVIC_CLUSTERS = re.compile(r"(shch|sch|zh|kh|ts(?!h)|yi|iy|yy|ya|yu|ye|ii|iu|ia|ov$|ev$|ka$|ku$|ky$|ki$|yk|nn)")


def _slavic_shape(words: list[str]) -> bool:
    hits = sum(bool(_SLAVIC_CLUSTERS.search(w)) for w in words)
    return hits * 3 >= len(words) and hits > 0


def _uk_shape(words: list[str]) -> int:
    """> 0 looks Ukrainian, < 0 Russian (letters typical of each scheme)."""
    joined = " ".join(words)
    uk = len(re.findall(r"yi|ii|ye|ie|shch|h[aeiouy]|y\b", joined))
    ru = len(re.findall(r"yy\b|iy\b|oy\b|ei\b|sch|ё|g[aeiou]", joined))
    return uk - ru


# Longest sequences first. (latin, uk, ru)
_MULTI = [
    ("shch", "щ", "щ"), ("sch", "щ", "щ"), ("zh", "ж", "ж"), ("kh", "х", "х"), ("ch", "ч", "ч"),
    ("sh", "ш", "ш"), ("ts", "ц", "ц"), ("yu", "ю", "ю"), ("iu", "ю", "ю"), ("ya", "я", "я"),
    ("ia", "я", "я"), ("ye", "є", "е"), ("ie", "є", "е"), ("yi", "ї", "ы"), ("yo", "йо", "ё"),
    ("jo", "йо", "ё"), ("ju", "ю", "ю"), ("ja", "я", "я"), ("je", "є", "е"),
]
_SINGLE_UK = dict(zip("abvgdezyijklmnoprstufhcxwq'", "абвгдезиійклмнопрстуфгцхвк'", strict=True))
_SINGLE_RU = dict(zip("abvgdezyijklmnoprstufhcxwq'", "абвгдезыийклмнопрстуфхцхвкь", strict=True))
_VOWELS = set("aeiouy")


# Short words the letter rules get wrong (people write "chi" for "чи", not "chy").
_WORDS_UK = {"chi": "чи", "ti": "ти", "mi": "ми", "vi": "ви", "li": "чи", "sho": "що", "scho": "що", "shos": "щось"}
_WORDS_RU = {"chi": "чи", "li": "ли", "sho": "што", "sch": "щ"}


@lru_cache(maxsize=4096)
def _word_to_cyrillic(word: str, language: str) -> str:
    uk = language.startswith("uk")
    fixed = (_WORDS_UK if uk else _WORDS_RU).get(word.lower())
    if fixed is not None:
        return fixed
    out: list[str] = []
    i, lower = 0, word.lower()
    while i < len(lower):
        for latin, cyr_uk, cyr_ru in _MULTI:
            if lower.startswith(latin, i):
                # "ye"/"ya"/"yu" after a consonant inside a word is usually ь/ъ + vowel; keep it simple.
                cyr = cyr_uk if uk else cyr_ru
                if latin in ("yi",) and not uk:
                    cyr = "ый" if i + 2 == len(lower) else "ы"
                out.append(cyr)
                i += len(latin)
                break
        else:
            ch = lower[i]
            nxt = lower[i + 1] if i + 1 < len(lower) else ""
            prev = lower[i - 1] if i else ""
            if ch == "y":
                if prev in _VOWELS and nxt not in _VOWELS:
                    out.append("й")  # "moy", "yakyy", "dobryi den"
                elif not uk and prev and prev not in _VOWELS:
                    out.append("ы")
                elif i == 0 and nxt in _VOWELS:
                    out.append("й")
                else:
                    out.append("и")
            elif ch == "i":
                if prev in _VOWELS and nxt not in _VOWELS and i == len(lower) - 1:
                    out.append("й")  # "dobryi", "kakoi"
                else:
                    out.append("і" if uk else "и")
            elif ch == "e" and i == 0 and not uk:
                out.append("э")  # "eto", "esli": е would do too, э is how Russian spells them
            elif ch in _SINGLE_UK:
                out.append((_SINGLE_UK if uk else _SINGLE_RU)[ch])
            else:
                out.append(ch)
            i += 1
    text = "".join(out)
    if word[:1].isupper():
        text = text[:1].upper() + text[1:]
    return text


def to_latin_marker(word: str) -> str:
    """A Cyrillic word written the way the marker lists spell it (for tie-breaks in Cyrillic text)."""
    table = {"а": "a", "б": "b", "в": "v", "г": "h", "ґ": "g", "д": "d", "е": "e", "є": "ye", "ж": "zh",
             "з": "z", "и": "y", "і": "i", "ї": "yi", "й": "y", "к": "k", "л": "l", "м": "m", "н": "n",
             "о": "o", "п": "p", "р": "r", "с": "s", "т": "t", "у": "u", "ф": "f", "х": "kh", "ц": "ts",
             "ч": "ch", "ш": "sh", "щ": "shch", "ь": "", "ю": "yu", "я": "ya", "ы": "y", "э": "e", "ё": "yo",
             "ъ": ""}
    return "".join(table.get(ch, ch) for ch in word.lower())


def to_cyrillic(text: str, language: str) -> str:
    """``text`` with its Latin-letter words written in Cyrillic by ``language``'s scheme.

    ``language``: "uk"/"uk-latin" or "ru"/"ru-latin". Words already in Cyrillic,
    numbers, punctuation and emoji stay as they are; so do Latin words that are
    English function words or look like brand names or codes (contain digits,
    all capitals), since customers mix those in ("iPhone", "USB", "Nova Poshta" stays
    transliterated: it is a Ukrainian name).
    """
    def convert(match: re.Match[str]) -> str:
        word = match.group(0)
        if not _LATIN.match(word) or (word.isupper() and len(word) > 1):
            return word
        return _word_to_cyrillic(word, language)

    return _WORD.sub(convert, text)


def for_matching(text: str) -> str | None:
    """The Cyrillic form of a Latin-letter Ukrainian or Russian question; None for anything else."""
    language = detect(text)
    if language in (LATIN_UK, LATIN_RU):
        return to_cyrillic(text, language)
    return None
