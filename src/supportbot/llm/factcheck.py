"""Is an LLM answer backed by one FAQ entry? A cheap, deterministic check of its facts.

Why: on a realistic shop FAQ the local 1.5B model, grounded in the nearest entries,
still wrote "yes, you can" to an eligibility question the FAQ says nothing about,
made up a mobile app, answered a cash-on-delivery fee question with delivery
prices, and answered Latin-letter Ukrainian in English. An invented answer is worse
than a hand-over, so an LLM answer reaches the customer only when every fact it
states is found in the text of ONE of the entries it was given (the entry that
supports the most of them: the one the answer is grounded in), in the customer's
language. Anything else is a refusal: the chain moves on, then a person answers.

What counts as a claim (:class:`Claim`), and when the entry supports it:

* **numbers**, compared as numbers: ``1 500`` = ``1500`` = ``1,500``; number words
  0-20, the tens and hundred in uk/ru/en (``два``, ``чотирнадцять``, ``two``; "one"
  and ``один`` only with a unit, they are too often not numbers). A number with a
  unit needs the same value with the same kind of unit in the entry, or the bare
  value: prices by currency (грн/UAH/₴, €/євро, $), percentages, times of day
  (``14:00`` = ``2 pm``), periods in days (``14 днів`` = ``2 тижні`` = ``two weeks``;
  a month counts 30 days, a year 360, so 12 months = 1 year) and durations in minutes
  (``2 години`` = ``120 minutes``). A bare number needs the value, with any unit.
  In the entry's own language, the sentence a number stands in must share a content
  word with the entry: "the cash-on-delivery fee is 80 UAH" is refused when the
  entry's 80 UAH is the branch delivery price. A number from the customer's question
  ("your 2000 UAH order") may be repeated only next to a figure of the same kind
  that the entry supports ("...free from 1500 UAH"), never alone: "yes, within 20
  days" to "can I return it after 20 days?" is the invented answer this check is for.
* **names**: capitalised words that do not start a sentence, words with a capital
  inside (PrivatBank, iPhone, ТТН, SMS) and codes (WELCOME_10), each compared with
  every word of the entry by its folded prefix (uk/ru endings: "Нової" = "Нова") or
  by the consonant skeleton of its Latin transliteration ("Kyiv" = "Києві", "Nova
  Poshta" = "Нової пошти", "Mastercard" = "Мастеркард"); a few acronyms have their
  translations (EU = ЄС = ЕС, VAT = ПДВ = НДС, SMS = СМС, TTN = ТТН). A name from the
  question does not count: "yes, we accept PayPal" to "do you accept PayPal?" is a guess.
* **contacts**: URLs and e-mail addresses (lower-cased, scheme dropped) and phone
  numbers (digits; +380 44... = 044...).
* **yes / no**: a sentence that starts with a polar word followed by punctuation
  ("Так, ...", "Да.", "Yes:", "No,", "Ні —"; also "sure", "конечно", "на жаль",
  "unfortunately"...), and a negative modal anywhere ("не можна", "нельзя", "cannot",
  "we don't sell"...). Supported when a sentence of the entry's answer carries a
  marker of the same polarity (можна/можно/can/available/free/є/accept... or
  не/not/нельзя/only/без...) and shares a content word with the claim's sentence
  (across languages: a number or name instead), and, in the entry's own language,
  when at least :data:`MIN_CLAIM_OVERLAP` of the claim sentence's content words are
  in the entry: "yes, you can return an item bought in another shop" repeats the
  customer's condition, which the entry never mentions, and is a guess.

And for every answer:

* **language**: the question's (``translit.detect``: Latin-letter Ukrainian or Russian
  counts as Ukrainian or Russian), judged by script: Cyrillic for uk/ru, Latin for en
  (names, codes and contacts left out), and no Russian-only letters (ы э ё ъ) without
  Ukrainian ones in a Ukrainian answer, nor the reverse;
* **topic**: in one language, the entry or the answer shares a content word with the
  question (an answer copied from an unrelated entry, "we reply within 24 hours" to a
  question about a promo code, is refused);
* **content**: when the answer and its entry are in one language, at least
  :data:`MIN_OVERLAP` of the answer's content words (words of 3+ letters that are not
  function words, compared by their first 5 letters after folding і/и, є/е... and an
  English ending) are found in the entry or the question, and
  :data:`MIN_OVERLAP_NO_FACTS` of them in the entry alone when the answer states no
  fact at all: a "generic" answer must be the entry's own content in other words
  (echoing the question, "we do engrave watches", is the classic invented answer).
  A fact-free answer in another language than every entry cannot be checked: refused.
  A pure deflection ("I don't know, I'll pass you to an operator") is left to
  :class:`~supportbot.llm.prompt.AnswerGuard` (the refusal marker); here it is
  refused too, for having nothing in common with the entry.

Limits, by design of a cheap check: a fact that is true in its entry but misapplied
("you will pay 20 UAH for shipping", when the entry's 20 UAH is the cash-on-delivery
fee) passes when the words around it also come from that entry, and so does a whole
wrong entry copied word for word; a yes/no that contradicts a condition the entry
does state ("yes, a used item can be returned" when it says "unused") passes when its
words are in the entry; a right "no, you pay nothing" is refused when the entry says
"free" rather than "not"; a fact from a second entry is refused even when true (one
entry per answer); periods ignore business vs calendar days; names that start a
sentence are not claims; fact-free answers and yes/no claims in another language
than the entry can only be checked through their numbers, names and contacts. The check never decides that an
answer is *right*, only that nothing in it was made up beyond these rules.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace

from supportbot import translit
from supportbot.llm.prompt import LANGUAGE_NAMES, ContextEntry

#: Share of an answer's content words that its entry or the question must contain (same language)...
MIN_OVERLAP = 0.4
#: ...and for an answer that states no checkable fact: it must be the entry in other words.
MIN_OVERLAP_NO_FACTS = 0.75
#: Share of a yes/no sentence's content words its entry must contain: it must be about the entry's subject.
MIN_CLAIM_OVERLAP = 0.5

# -- words -----------------------------------------------------------------------------------
_FOLD = str.maketrans({"ё": "е", "є": "е", "э": "е", "і": "и", "ї": "и", "ы": "и", "ґ": "г",
                       "ъ": None, "ь": None, "'": None, "’": None, "ʼ": None, "`": None})


def _wordlist(text: str) -> list[str]:
    return text.split()


def _fold(word: str) -> str:
    """Lower case with the letters uk and ru spell differently made equal (і=и, є=е, no soft sign)."""
    return word.lower().translate(_FOLD)


_STOP = frozenset(_fold(w) for w in _wordlist("""
a an the is are was were be been being do does did done have has had having can could will would shall should
may might must i me my mine you your yours we us our ours he him his she her it its they them their this that
these those there here what when where which who whom whose why how if then than so and or but not no yes of
in on at to for from with by about into onto over under after before within without also just only still
really very much many more most some any anything something nothing all each every please hello thanks thank
sure okay true dear hi get got make made need want know tell help like one ones wont dont cant isnt doesnt
didnt anything instead say let
чи як яка який яке які якого якій якщо коли де куди що щоб чому скільки можна можу може можете можемо
мені мене мій моя моє мої моїх ви вас вам ваш ваша ваше ваші вашого нам нас наш наша наше наші ми він вона воно
вони його її їх цей ця це ці той та те ті тут там також теж тому але або і й та в у на з із зі за до від для по
про при після перед без над під між так ні не вже ще будь ласка добрий день привіт дякую вітаю буде було бути
є треба потрібно просто дуже весь вся все всі тільки лише інший
ли как какой какая какое какие каких если когда где куда что чтобы почему сколько можно могу может можете
можем мне меня мой моя моё мои моих вы вас вам ваш ваша ваше ваши вашего нам нас наш наша наше наши мы он она оно
они его её их этот эта это эти тот та то те тут там также тоже поэтому но или и в во на с со за до от для по о об
про при после перед без над под между да нет не уже ещё пожалуйста добрый здравствуйте привет спасибо будет
было быть есть нужно надо просто очень весь вся всё все только другой
"""))

_WORD = re.compile(r"[^\W\d_]+(?:['’ʼ`][^\W\d_]+)*", re.UNICODE)


_ENGLISH_ENDINGS = ("ing", "ed", "es", "s")


def _stem(folded: str) -> str:
    """The first 5 letters, after an English ending ("paying" -> "pay", "orders" -> "order")."""
    if folded.isascii():
        for ending in _ENGLISH_ENDINGS:
            if folded.endswith(ending) and len(folded) - len(ending) >= 3:
                folded = folded[: -len(ending)]
                break
    return folded[:5]


def _content_stems(words: Iterable[str]) -> set[str]:
    """The stems of the words that carry content: 3+ letters, not a function word."""
    stems = set()
    for word in words:
        folded = _fold(word)
        if len(folded) >= 3 and folded not in _STOP:
            stems.add(_stem(folded))
    return stems


class _Stems:
    """A set of 3-5 letter stems; one that is the start of another matches it ("pay" - "payme")."""

    def __init__(self, stems: Iterable[str]) -> None:
        self.all = set(stems)
        self._starts = {s[:4] for s in self.all}

    def has(self, stem: str) -> bool:
        # 3-letter words only match exactly: "pay" must not find "paypa" (PayPal).
        return stem in self.all or (len(stem) == 4 and stem in self._starts) or (len(stem) == 5
                                                                                 and stem[:4] in self.all)

    def share(self, stems: set[str]) -> float:
        return sum(self.has(s) for s in stems) / len(stems) if stems else 0.0


_TO_LATIN = {"а": "a", "б": "b", "в": "v", "г": "h", "ґ": "g", "д": "d", "е": "e", "є": "e", "ж": "zh", "з": "z",
             "и": "y", "і": "i", "ї": "i", "й": "y", "к": "k", "л": "l", "м": "m", "н": "n", "о": "o", "п": "p",
             "р": "r", "с": "s", "т": "t", "у": "u", "ф": "f", "х": "kh", "ц": "ts", "ч": "ch", "ш": "sh",
             "щ": "shch", "ь": "", "ю": "yu", "я": "ya", "ы": "y", "э": "e", "ё": "e", "ъ": ""}
_SKELETON_STEPS = (("shch", "S"), ("sch", "S"), ("sh", "S"), ("ch", "C"), ("zh", "Z"), ("kh", "h"), ("g", "h"),
                   ("w", "v"), ("ck", "k"), ("c", "k"), ("q", "k"), ("x", "ks"), ("ph", "f"), ("z", "s"))
_CONSONANTS = set("bdfhklmnprstvSCZ")


def _skeleton(word: str) -> str:
    """A word's Latin transliteration, loosely: its first letter and its consonants.

    "Києві" and "Kyiv" -> "k:kv", "Нової пошти" and "Nova Poshta" -> "n:nv p:pSt";
    "" when fewer than two consonants are left (too little to compare).
    """
    latin = "".join(_TO_LATIN.get(ch, ch) for ch in word.lower())
    for old, new in _SKELETON_STEPS:
        latin = latin.replace(old, new)
    latin = re.sub(r"(.)\1+", r"\1", latin)  # "Apple" = "Aple"
    consonants = "".join(ch for ch in latin if ch in _CONSONANTS)
    return f"{latin[0]}:{consonants}" if len(consonants) >= 2 else ""


_ALIASES = [{"eu", "ес"}, {"vat", "пдв", "ндс"}, {"sms", "смс"}, {"ttn", "ттн"}, {"iban", "ибан"},
            {"uah", "грн"}, {"eur", "евро", "euro"}, {"usd", "дол"}]
_ALIAS = {_fold(word): n for n, group in enumerate(_ALIASES) for word in group}
_NOT_NAMES = frozenset({"i", "im", "ill", "ive", "id", "ok", "okay", "ai"})
_CURRENCY_CODES = frozenset({"uah", "eur", "usd", "грн"})

# -- numbers ---------------------------------------------------------------------------------
_NUMBER_WORDS: dict[str, int] = {}
for _value, _forms in {
    0: "нуль ноль zero", 1: "один одна одне одно одного одну одній одной одним one",
    2: "два дві две двох двух two", 3: "три трьох трёх трех three", 4: "чотири чотирьох четыре четырёх четырех four",
    5: "п'ять п'яти пять пяти five", 6: "шість шести шесть six", 7: "сім семи семь seven",
    8: "вісім восьми восемь eight", 9: "дев'ять дев'яти девять девяти nine", 10: "десять десяти ten",
    11: "одинадцять одинадцяти одиннадцать одиннадцати eleven",
    12: "дванадцять дванадцяти двенадцать двенадцати twelve",
    13: "тринадцять тринадцяти тринадцать тринадцати thirteen",
    14: "чотирнадцять чотирнадцяти четырнадцать четырнадцати fourteen",
    15: "п'ятнадцять п'ятнадцяти пятнадцать пятнадцати fifteen",
    16: "шістнадцять шістнадцяти шестнадцать шестнадцати sixteen",
    17: "сімнадцять сімнадцяти семнадцать семнадцати seventeen",
    18: "вісімнадцять вісімнадцяти восемнадцать восемнадцати eighteen",
    19: "дев'ятнадцять дев'ятнадцяти девятнадцать девятнадцати nineteen",
    20: "двадцять двадцяти двадцать двадцати twenty", 30: "тридцять тридцяти тридцать тридцати thirty",
    40: "сорок сорока forty", 50: "п'ятдесят п'ятдесяти пятьдесят пятидесяти fifty", 100: "сто hundred",
}.items():
    for _form in _forms.split():
        _NUMBER_WORDS[_fold(_form)] = _value
_NEEDS_UNIT = {v for k, v in _NUMBER_WORDS.items() if v == 1} | {0}

# (kind of unit, scale to its base). Matched on folded words: exact forms, then prefixes.
_UNIT_EXACT = {
    **dict.fromkeys(_wordlist("ден дни дня днив дней днем днях днями доба доби диб добу сутки суток day days"),
                    ("days", 1)),
    **dict.fromkeys(_wordlist("рик роки рокив року год года году лет year years"), ("days", 360)),
    **dict.fromkeys(_wordlist("час часа часов часу"), ("minutes", 60)),
    **dict.fromkeys(_wordlist("хв мин min mins"), ("minutes", 1)),
}
_UNIT_PREFIX = (
    ("грн", ("UAH", 1)), ("гривн", ("UAH", 1)), ("гривен", ("UAH", 1)), ("uah", ("UAH", 1)), ("hryvn", ("UAH", 1)),
    ("евро", ("EUR", 1)), ("eur", ("EUR", 1)), ("долар", ("USD", 1)), ("доллар", ("USD", 1)),
    ("dollar", ("USD", 1)), ("usd", ("USD", 1)), ("видсот", ("%", 1)), ("процент", ("%", 1)),
    ("percent", ("%", 1)), ("тижн", ("days", 7)), ("тижден", ("days", 7)), ("недел", ("days", 7)),
    ("week", ("days", 7)), ("мисяц", ("days", 30)), ("месяц", ("days", 30)), ("month", ("days", 30)),
    ("годин", ("minutes", 60)), ("hour", ("minutes", 60)), ("хвилин", ("minutes", 1)), ("минут", ("minutes", 1)),
    ("minute", ("minutes", 1)),
)
_SYMBOL_UNITS: dict[str, tuple[str, float]] = {"€": ("EUR", 1), "$": ("USD", 1), "₴": ("UAH", 1), "%": ("%", 1)}
_THOUSANDS = ("тис", "тыс", "thousand")
_UNIT_ADJECTIVES = ("робоч", "рабоч", "календар", "business", "working", "calendar", "full")
_KIND_OF_UNIT = {"UAH": "price", "EUR": "price", "USD": "price", "%": "percent", "days": "period",
                 "minutes": "duration", "time": "time", "": "number"}


def _unit(word: str) -> tuple[str, float] | None:
    folded = _fold(word)
    if folded in _UNIT_EXACT:
        return _UNIT_EXACT[folded]
    for prefix, unit in _UNIT_PREFIX:
        if folded.startswith(prefix):
            return unit
    return None


def _numeral(text: str) -> list[float]:
    """"1500", "1,500", "1.500" -> [1500]; "2,5" -> [2.5]; anything odder (dates) -> its parts."""
    groups = re.split(r"[.,]", text)
    if len(groups) == 1:
        return [float(text)]
    if all(len(g) == 3 for g in groups[1:]) and 1 <= len(groups[0]) <= 3 and groups[0] != "0":
        return [float("".join(groups))]
    if len(groups) == 2:
        return [float(".".join(groups))]
    return [float(g) for g in groups if g]


# -- tokens ----------------------------------------------------------------------------------
_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
_URL = re.compile(r"(?:https?://|www\.)[^\s<>«»\"()]+|\b[a-z0-9][a-z0-9-]*(?:\.[a-z0-9-]+)*"
                  r"\.(?:ua|com|net|org|info|shop|store|eu|io|me|ru|pl|de)\b(?:/[^\s<>«»\"()]*)?", re.IGNORECASE)
_PHONE = re.compile(r"(?<![\w+])\+?\d[\d \u00a0()\-–]{6,}\d(?!\w)")
_TOKEN = re.compile(r"""
 (?P<t12>\b\d{1,2}(?::[0-5]\d)?\s?[ap]\.?\s?m\b\.?)
|(?P<time>\b(?:[01]?\d|2[0-3]):[0-5]\d\b)
|(?P<code>\b[^\W\d_]+_\w+|\b[^\W\d_]+\d\w*)
|(?P<num>\d+(?:[.,]\d+)*)
|(?P<word>[^\W\d_]+(?:['’ʼ`-][^\W\d_]+)*)
|(?P<sym>[€$₴%])
|(?P<dash>[-–—])
|(?P<stop>[.!?…;:\n]+)
|(?P<other>\S)
""", re.VERBOSE)
_THOUSANDS_GAP = re.compile(r"[ \u00a0\u202f]")

_YES = frozenset(_fold(w) for w in _wordlist("так звісно звичайно авжеж безумовно да конечно разумеется yes yeah "
                                             "yep sure certainly absolutely"))
_NO = frozenset(_fold(w) for w in _wordlist("ні нет no nope"))
_NO_PHRASES = ("на жаль", "нажаль", "к сожалению", "unfortunately", "sorry")
_YES_PHRASES = ("of course", "так, звісно", "так, звичайно")
_NEGATIVE_MODAL = re.compile(
    r"\b(?:не\s+(?:можна|можете|можемо|можно|можем|вийде|вдасться|получится|приймаємо|принимаем|продаємо|продаем"
    r"|продаём|пропонуємо|предлагаем|доставляємо|доставляем|надаємо|предоставляем|працюємо|работаем|"
    r"поширюється|распространяется|діє|действует)|неможливо|невозможно|нельзя|cannot|can['’]t|can not|unable"
    r"|not possible|(?:do|does|don['’]t|doesn['’]t)\s+(?:not\s+)?(?:accept|offer|sell|deliver|ship|provide|work"
    r"|apply))\b", re.IGNORECASE)
_AFFIRMATIVE_MARK = re.compile(
    r"\b(?:можна|можете|можемо|може|можно|можем|can|may|able|available|доступн\w*|є|есть|free|безкоштовн\w*"
    r"|бесплатн\w*|accept\w*|приймаємо|принимаем|діє|действует|applies|apply|так|да|yes|cover|оплачуємо"
    r"|оплачиваем)\b", re.IGNORECASE)
_NEGATION_BEFORE = re.compile(r"(?:\bне|\bnot|n['’]t)\s*$", re.IGNORECASE)
_NEGATIVE_MARK = re.compile(
    r"\b(?:не|ні|нет|нельзя|неможливо|невозможно|немає|нема|not|no|never|cannot|ніколи|никогда|лише|тільки"
    r"|только|only|без|without)\b|n['’]t\b", re.IGNORECASE)
_MODAL_STEMS = frozenset(_fold(w)[:5] for w in _wordlist("можна можете можемо может можно можем cannot able "
                                                          "available"))

_CYRILLIC = re.compile(r"[\u0400-\u04FF]")
_LATIN = re.compile(r"[A-Za-z]")
_UK_ONLY = re.compile(r"[іїєґІЇЄҐ]")
_RU_ONLY = re.compile(r"[ыэёъЫЭЁЪ]")


@dataclass(frozen=True, slots=True)
class Claim:
    """One checkable statement of an answer: its kind and how it was written."""

    #: price / percent / time / period / duration / number / name / contact / yes / no
    kind: str
    text: str
    #: Numbers: UAH / EUR / USD / % / days / minutes / time, "" for a bare number;
    #: contacts: url / email / phone.
    unit: str = field(default="", compare=False, repr=False)
    #: Numbers: the value in the unit's base (days, minutes, minutes after midnight).
    amount: float | None = field(default=None, compare=False, repr=False)
    #: Numbers: the value as written, before the unit's scale (2 for "2 тижні"; 14 for 14:00).
    raw: float | None = field(default=None, compare=False, repr=False)
    #: Names: the folded word; contacts: the normalised address or digits.
    key: str = field(default="", compare=False, repr=False)
    #: The sentence of the answer it is in (a yes/no's subject; facts beside a yes/no).
    sentence: int = field(default=0, compare=False, repr=False)

    @property
    def is_number(self) -> bool:
        return self.amount is not None

    def describe(self) -> str:
        return f"'{self.text}' ({self.kind})"


@dataclass(frozen=True)
class FactCheck:
    """The verdict on one answer: ``ok``, the entry it is grounded in, and what was (not) supported."""

    ok: bool
    reason: str = ""
    entry_id: int | None = None
    entry_key: str = ""
    supported: list[Claim] = field(default_factory=list)
    unsupported: list[Claim] = field(default_factory=list)
    #: Share of the answer's content words found in the entry (None: different languages).
    overlap: float | None = None
    #: The language the answer had to be in ("" when the question did not tell).
    language: str = ""

    def as_dict(self) -> dict:
        return {"ok": self.ok, "reason": self.reason, "entry_id": self.entry_id, "entry_key": self.entry_key,
                "supported": [{"kind": c.kind, "text": c.text} for c in self.supported],
                "unsupported": [{"kind": c.kind, "text": c.text} for c in self.unsupported],
                "overlap": None if self.overlap is None else round(self.overlap, 2), "language": self.language}


# -- reading a text ----------------------------------------------------------------------------
@dataclass
class _Sentence:
    text: str
    words: list[str] = field(default_factory=list)
    stems: set[str] = field(default_factory=set)


@dataclass
class _Reading:
    """A text taken apart: its claims, sentences, content words and letters."""

    claims: list[Claim] = field(default_factory=list)
    sentences: list[_Sentence] = field(default_factory=list)
    words: list[str] = field(default_factory=list)  # every word, contacts' parts included
    stems: set[str] = field(default_factory=set)
    cyrillic: int = 0  # letters of ordinary words (names, codes and contacts left out)
    latin: int = 0
    uk_letters: int = 0
    ru_letters: int = 0
    #: uk / ru / en as ``translit.detect`` tells it ("" when it cannot).
    language: str = ""

    @property
    def facts(self) -> list[Claim]:
        return [c for c in self.claims if c.kind not in ("yes", "no")]


def _read(text: str, *, polar: bool = True) -> _Reading:
    reading = _Reading(language=_language(text))
    text = _contacts(text, reading)
    tokens = [(m.lastgroup or "other", m.group(), m.start(), m.end()) for m in _TOKEN.finditer(text)]
    sentence = _Sentence("")
    start, initial, i = 0, True, 0
    while i < len(tokens):
        kind, value, _begin, end = tokens[i]
        if kind == "stop":
            sentence.text = text[start:end]
            reading.sentences.append(sentence)
            sentence, start, initial = _Sentence(""), end, True
            i += 1
            continue
        index = len(reading.sentences)
        if kind in ("num", "word") and (kind == "num" or _fold(value.split("-")[0]) in _NUMBER_WORDS):
            used = _number(tokens, i, text, index, reading.claims)
            if used:  # number words and units are the claim, not content words
                i += used
                initial = False
                continue
        if kind == "t12":
            hours, minutes = _twelve_hour(value)
            reading.claims.append(Claim("time", value.strip(), "time", hours * 60 + minutes, hours, sentence=index))
        elif kind == "time":
            hours, minutes = (int(p) for p in value.split(":"))
            reading.claims.append(Claim("time", value, "time", hours * 60 + minutes, hours, sentence=index))
        elif kind == "code":
            reading.claims.append(Claim("name", value, key=_fold(value), sentence=index))
            reading.words.append(value)
        elif kind == "word":
            sentence.words.append(value)
            reading.words.append(value)
            if _is_name(value, initial):
                reading.claims.append(Claim("name", value, key=_fold(value), sentence=index))
            else:
                reading.cyrillic += len(_CYRILLIC.findall(value))
                reading.latin += len(_LATIN.findall(value))
                reading.uk_letters += len(_UK_ONLY.findall(value))
                reading.ru_letters += len(_RU_ONLY.findall(value))
        if kind in ("t12", "time", "code", "word", "num", "sym"):
            initial = False
        i += 1
    sentence.text = text[start:]
    if sentence.text.strip():
        reading.sentences.append(sentence)
    for s in reading.sentences:
        s.stems = _content_stems(s.words)
        reading.stems |= s.stems
    if polar:
        _polar_claims(reading)
    return reading


def _contacts(text: str, reading: _Reading) -> str:
    """Take e-mails, URLs and phone numbers out of the text as claims (their words stay known)."""
    def take(kind_of: str, pattern: re.Pattern[str], text: str) -> str:
        def claim(match: re.Match[str]) -> str:
            found = match.group().rstrip(".,;:!?)»")
            if kind_of == "phone":
                digits = re.sub(r"\D", "", found)
                if not 9 <= len(digits) <= 15:
                    return match.group()
                key = digits[2:] if digits.startswith("380") else digits
            else:
                key = re.sub(r"^(?:https?://)?(?:www\.)?", "", found.lower()).rstrip("/")
            reading.claims.append(Claim("contact", found, unit=kind_of, key=key))
            reading.words.extend(_WORD.findall(found))
            return " " + match.group()[len(found):]
        return pattern.sub(claim, text)

    text = take("email", _EMAIL, text)
    text = take("url", _URL, text)
    return take("phone", _PHONE, text)


def _twelve_hour(value: str) -> tuple[int, int]:
    digits = re.match(r"(\d{1,2})(?::(\d\d))?", value)
    assert digits is not None
    hours, minutes = int(digits.group(1)) % 12, int(digits.group(2) or 0)
    return (hours + 12 if "p" in value.lower() else hours), minutes


def _word_value(word: str) -> int | None:
    """"чотирнадцять" -> 14, "twenty-four" -> 24; None for anything else."""
    parts = [_fold(p) for p in word.split("-")]
    values = [_NUMBER_WORDS.get(p) for p in parts]
    if any(v is None for v in values) or not values:
        return None
    return sum(v for v in values if v is not None)


def _number(tokens: list[tuple[str, str, int, int]], i: int, text: str, sentence: int,
            claims: list[Claim]) -> int:
    """Read a number (or a range "1-3") and its unit starting at token ``i``; return the tokens used."""
    values, j, needs_unit = _one_number(tokens, i, text)
    if not values:
        return 0
    # "1–3 робочі дні": a range shares its unit.
    if j + 1 < len(tokens) and tokens[j][0] == "dash":
        second, k, needs = _one_number(tokens, j + 1, text)
        if second:
            values, j, needs_unit = values + second, k, needs_unit and needs
    scale = 1.0
    if j < len(tokens) and tokens[j][0] == "word" and _fold(tokens[j][1]).startswith(_THOUSANDS):
        scale, j = 1000.0, j + 1
    unit: tuple[str, float] | None = None
    before = tokens[i - 1][1] if i > 0 and tokens[i - 1][0] == "sym" else ""
    if before in ("€", "$", "₴"):
        unit = _SYMBOL_UNITS[before]
    elif j < len(tokens) and tokens[j][0] == "sym":
        unit, j = _SYMBOL_UNITS[tokens[j][1]], j + 1
    else:
        k = j + 1 if j < len(tokens) and tokens[j][0] == "word" and _fold(tokens[j][1]).startswith(
            _UNIT_ADJECTIVES) else j
        if k < len(tokens) and tokens[k][0] == "word" and (unit := _unit(tokens[k][1])) is not None:
            j = k + 1
    if unit is None and needs_unit:
        return 0
    cls, factor = unit or ("", 1)
    written = text[tokens[i][2]:tokens[j - 1][3]].strip()
    for raw in values:
        raw *= scale
        claims.append(Claim(_KIND_OF_UNIT[cls], written, cls, round(raw * factor, 4), round(raw, 4), sentence=sentence))
    return j - i


def _one_number(tokens: list[tuple[str, str, int, int]], i: int, text: str) -> tuple[list[float], int, bool]:
    kind, value, _begin, end = tokens[i]
    if kind == "word":
        number = _word_value(value)
        if number is None:
            return [], i, False
        # "двадцять чотири", "twenty four"
        if (number % 10 == 0 and 20 <= number <= 90 and i + 1 < len(tokens) and tokens[i + 1][0] == "word"
                and (unit := _word_value(tokens[i + 1][1])) is not None and 0 < unit < 10):
            return [float(number + unit)], i + 2, False
        return [float(number)], i + 1, number in _NEEDS_UNIT
    if kind != "num":
        return [], i, False
    digits, j = value, i + 1
    # "1 500": groups of three digits after a space belong to the same number.
    while (len(digits) <= 3 or re.fullmatch(r"\d{1,3}(?: \d{3})+", digits)) and j < len(tokens) \
            and tokens[j][0] == "num" and re.fullmatch(r"\d{3}", tokens[j][1]) \
            and _THOUSANDS_GAP.fullmatch(text[end:tokens[j][2]] or "x"):
        digits, end, j = digits + " " + tokens[j][1], tokens[j][3], j + 1
    if " " in digits:
        return [float(digits.replace(" ", ""))], j, False
    return _numeral(digits), j, False


def _is_name(word: str, initial: bool) -> bool:
    folded = _fold(word)
    if len(word) < 2 or folded in _NOT_NAMES or folded in _CURRENCY_CODES:
        return False
    inner_capital = any(ch.isupper() for ch in word[1:])
    return inner_capital or (word[0].isupper() and not initial)


def _polar_claims(reading: _Reading) -> None:
    for index, sentence in enumerate(reading.sentences):
        words = [_fold(w) for w in sentence.words]
        lowered = sentence.text.strip().lower()
        kind = ""
        if lowered.startswith(_NO_PHRASES):
            kind = "no"
        elif lowered.startswith(_YES_PHRASES):
            kind = "yes"
        elif words and (words[0] in _YES or words[0] in _NO):
            after = re.match(r"\W*[^\W\d_]+\s*(\S?)", sentence.text)
            if after is not None and (not after.group(1) or after.group(1) in ",.!:;—–-"):
                kind = "yes" if words[0] in _YES else "no"
        if (match := _NEGATIVE_MODAL.search(sentence.text)) is not None:
            kind, text = "no", match.group()
        else:
            text = (sentence.words[0] if sentence.words else lowered)[:40]
        if kind:
            reading.claims.append(Claim(kind, text, sentence=index))


# -- an entry as the evidence ------------------------------------------------------------------
class _Evidence:
    """One FAQ entry, read once per question, answering "does it support this claim?"."""

    def __init__(self, entry: ContextEntry | str, rank: int) -> None:
        if isinstance(entry, str):
            entry = ContextEntry(0, "", "", entry)
        self.entry, self.rank = entry, rank
        body = _read(entry.answer, polar=False)
        asked = _read(entry.question, polar=False)
        self.language = entry.language or _language(entry.answer)
        self.stems = _Stems(body.stems | asked.stems)
        numbers = [c for c in body.facts + asked.facts if c.is_number]
        self.classed = {(c.unit, c.amount) for c in numbers}
        self.bare = {c.raw for c in numbers if not c.unit}
        self.values = {c.raw for c in numbers} | {c.amount for c in numbers}
        self.contacts = [c for c in body.claims + asked.claims if c.kind == "contact"]
        words = body.words + asked.words
        self.folded = {_fold(w) for w in words}
        self.skeletons = {s for s in (_skeleton(w) for w in words) if s}
        self.aliases = {_ALIAS[f] for f in self.folded if f in _ALIAS}
        self.sentences = [(s.text, _Stems(s.stems), s) for s in body.sentences]

    @property
    def key(self) -> str:
        return self.entry.key

    def supports(self, claim: Claim) -> bool:
        if claim.kind == "name":
            return self._has_name(claim)
        if claim.kind == "contact":
            return any(_same_contact(claim, c) for c in self.contacts)
        if claim.kind in ("yes", "no"):
            return False  # decided with the whole answer: see FactChecker._polar
        return self._has_number(claim)

    def _has_number(self, claim: Claim) -> bool:
        if (claim.unit, claim.amount) in self.classed:
            return True
        if claim.unit == "time":
            return False
        return claim.raw in self.bare if claim.unit else claim.raw in self.values

    def _has_name(self, claim: Claim) -> bool:
        name = _fold(claim.text)
        if name in self.folded or (name in _ALIAS and _ALIAS[name] in self.aliases):
            return True
        if "_" in name or any(ch.isdigit() for ch in name):
            return False  # codes are exact
        if len(name) >= 3:
            k = min(len(name), 4)
            if any(len(w) >= k and w[:k] == name[:k] and abs(len(w) - len(name)) <= 3 for w in self.folded):
                return True
        skeleton = _skeleton(claim.text)
        return bool(skeleton) and skeleton in self.skeletons

    def marked(self, kind: str) -> Iterable[tuple[str, _Stems, _Sentence]]:
        """The entry's sentences that say yes (``can``, ``free``...) or no (``not``, ``only``...)."""
        for text, stems, sentence in self.sentences:
            says = _says_no(text) if kind == "no" else _says_yes(text)
            if says:
                yield text, stems, sentence


def _says_no(text: str) -> bool:
    return _NEGATIVE_MARK.search(text) is not None


def _says_yes(text: str) -> bool:
    """An affirmative marker that is not negated ("можна", not "не можна"; "can", not "can't")."""
    return any(not _NEGATION_BEFORE.search(text[: m.start()]) and not re.match(r"\s*(?:not\b|['’]t\b)", text[m.end():])
               for m in _AFFIRMATIVE_MARK.finditer(text))


def _same_contact(claimed: Claim, known: Claim) -> bool:
    a, b = claimed.key, known.key
    if claimed.unit != known.unit:
        return False
    if claimed.unit == "phone":
        return a == b or (min(len(a), len(b)) >= 9 and (a.endswith(b) or b.endswith(a)))
    return a == b or (claimed.unit == "url" and b.startswith(a))


def _language(text: str) -> str:
    """uk / ru / en of a text as the customer meant it (Latin-letter uk/ru count as uk/ru)."""
    detected = translit.detect(text)
    return {translit.LATIN_UK: "uk", translit.LATIN_RU: "ru"}.get(detected, detected)


def _script(language: str) -> str:
    return {"uk": "cyrillic", "ru": "cyrillic", "en": "latin"}.get(language, "")


# -- the check ---------------------------------------------------------------------------------
class FactChecker:
    """The entries and the question of one LLM step, read once; :meth:`check` judges an answer.

    :meth:`early` judges the finished sentences of an answer still being written, so a
    step that has already stated something no entry supports is stopped at once.
    """

    def __init__(self, entries: Sequence[ContextEntry | str], question: str = "") -> None:
        self.evidence = [_Evidence(e, n) for n, e in enumerate(entries)]
        self.question = question
        detected = translit.detect(question)
        self.language = _language(question)
        if detected in (translit.LATIN_UK, translit.LATIN_RU):
            question = translit.to_cyrillic(question, detected)
        asked = _read(question, polar=False)
        self._asked_numbers = [c for c in asked.facts if c.is_number]
        self._asked_stems = asked.stems
        self._early_done = ""  # the finished part last judged by early()

    # -- whole answers ---------------------------------------------------------------------
    def check(self, answer: str) -> FactCheck:
        if not answer or not re.search(r"[^\W_]", answer):
            return FactCheck(False, "empty answer", language=self.language)
        reading = _read(answer)
        wrong = self._wrong_language(reading)
        if wrong:
            return FactCheck(False, wrong, language=self.language)
        if not reading.language:  # too few telling words: it is in the question's language (checked above)
            reading.language = self.language
        if not self.evidence:
            return FactCheck(False, "no FAQ entry to check it against", unsupported=reading.claims,
                             language=self.language)
        # The entry the answer is grounded in: one it passes against, else the one that supports
        # the most of its claims; then the most words in common, then the nearest entry.
        verdicts = [(self._against(reading, evidence), evidence.rank) for evidence in self.evidence]
        best, _rank = max(verdicts, key=lambda pair: (pair[0].ok, len(pair[0].supported),
                                                      -len(pair[0].unsupported), pair[0].overlap or 0.0,
                                                      -pair[1]))
        return best

    def _against(self, reading: _Reading, evidence: _Evidence) -> FactCheck:
        """The answer judged against one entry."""
        same = _comparable(reading, evidence)
        supported, unsupported = self._claims(reading, evidence, same)
        facts = reading.facts
        overlap = None
        if same:
            # An answer with facts may also repeat the customer's words ("if you pay cash when you
            # collect..."); one without must be the entry's own content.
            known = evidence.stems if not facts else _Stems(evidence.stems.all | self._asked_stems)
            overlap = known.share(reading.stems) if reading.stems else 0.0
        verdict = FactCheck(False, "", evidence.entry.entry_id or None, evidence.key, supported, unsupported,
                            overlap, self.language)
        entry = evidence.key or "the entry"
        floor = MIN_OVERLAP if facts else MIN_OVERLAP_NO_FACTS
        if unsupported:
            more = f" and {len(unsupported) - 1} more" if len(unsupported) > 1 else ""
            return replace(verdict, reason=f"unsupported claim {unsupported[0].describe()}{more}")
        if same and self._off_topic(reading, evidence):
            return replace(verdict, reason=f"neither {entry} nor the answer has a word of the question")
        if overlap is None and not facts:
            return replace(verdict, reason="no fact to check against an entry in another language")
        if overlap is not None and overlap < floor:
            what = "little" if facts else "no fact and too little"
            return replace(verdict, reason=f"{what} in common with {entry} ({overlap:.2f} < {floor})")
        return replace(verdict, ok=True)

    def _claims(self, reading: _Reading, evidence: _Evidence, same: bool) -> tuple[list[Claim], list[Claim]]:
        """The answer's claims that ``evidence`` supports, and those it does not."""
        supported: list[Claim] = []
        unsupported: list[Claim] = []
        for claim in reading.facts:
            backed = evidence.supports(claim)
            if backed and same and claim.is_number:
                # The number's own sentence must speak of the entry's things: "80 грн" is the
                # branch delivery price, not "the cash-on-delivery fee".
                around = reading.sentences[claim.sentence].stems if claim.sentence < len(reading.sentences) else set()
                backed = not around or any(evidence.stems.has(s) for s in around)
            (supported if backed else unsupported).append(claim)
        # A number the customer gave, repeated beside a figure of the same kind from the entry.
        for claim in list(unsupported):
            if self._restated(claim, supported):
                unsupported.remove(claim)
                supported.append(claim)
        for claim in reading.claims:
            if claim.kind in ("yes", "no"):
                (supported if self._polar(claim, reading, evidence, supported) else unsupported).append(claim)
        return supported, unsupported

    def _off_topic(self, reading: _Reading, evidence: _Evidence) -> bool:
        """Neither the entry nor the answer shares a word with the question: a copied, unrelated entry."""
        if not self._asked_stems:
            return False
        asked = _Stems(self._asked_stems)
        return not any(evidence.stems.has(s) for s in self._asked_stems) and not any(
            asked.has(s) for s in reading.stems)

    def _restated(self, claim: Claim, supported: list[Claim]) -> bool:
        if not claim.is_number or claim.unit == "time":
            return False
        asked = any((a.unit, a.amount) == (claim.unit, claim.amount) or (not (a.unit and claim.unit)
                                                                         and a.raw == claim.raw)
                    for a in self._asked_numbers)
        beside = any(s.is_number and (not claim.unit or s.unit == claim.unit) and s.amount != claim.amount
                     for s in supported)
        return asked and beside

    def _polar(self, claim: Claim, reading: _Reading, evidence: _Evidence, supported: list[Claim]) -> bool:
        """A yes/no is backed by an entry sentence of the same polarity about the same thing."""
        subject = self._subject(claim, reading)
        same = _comparable(reading, evidence)
        if same and evidence.stems.share(subject) < MIN_CLAIM_OVERLAP:
            return False  # "yes" about something the entry does not talk about
        nearby = [c for c in supported if c.sentence in (claim.sentence, claim.sentence + 1)
                  and c.kind not in ("yes", "no")]
        for text, stems, _sentence in evidence.marked(claim.kind):
            if same and any(stems.has(s) for s in subject):
                return True
            if not same and any(_Evidence(text, 0).supports(c) for c in nearby):
                return True
        return False

    def _subject(self, claim: Claim, reading: _Reading) -> set[str]:
        """What a yes/no is about: its sentence's content words, else the next sentence's, else the question's."""
        for index in (claim.sentence, claim.sentence + 1):
            if index < len(reading.sentences):
                stems = {s for s in reading.sentences[index].stems if s not in _MODAL_STEMS}
                if stems:
                    return stems
        return self._asked_stems

    def _wrong_language(self, reading: _Reading) -> str:
        expected = self.language
        if expected not in LANGUAGE_NAMES or reading.cyrillic + reading.latin < 2:
            return ""
        written = "cyrillic" if reading.cyrillic >= reading.latin else "latin"
        if written != _script(expected):
            got = "English" if written == "latin" else "Cyrillic"
            return f"wrong language: {got} for a {LANGUAGE_NAMES[expected]} question"
        if expected == "uk" and reading.ru_letters and not reading.uk_letters:
            return "wrong language: Russian for a Ukrainian question"
        if expected == "ru" and reading.uk_letters and not reading.ru_letters:
            return "wrong language: Ukrainian for a Russian question"
        return ""

    # -- answers still being written ------------------------------------------------------------
    def early(self, partial: str) -> FactCheck | None:
        """A failure already certain in the finished sentences of ``partial``, else None.

        Certain means: a number, name or contact that no entry supports (and that the
        customer did not give), or a first finished sentence in the wrong language.
        """
        end = max(partial.rfind(p) for p in (". ", "! ", "? ", "\n", "; "))
        finished = partial[: end + 1]
        if end < 0 or finished == self._early_done:
            return None
        self._early_done = finished
        reading = _read(finished, polar=False)
        if reading.cyrillic + reading.latin >= 20 and (wrong := self._wrong_language(reading)):
            return FactCheck(False, wrong, language=self.language)
        if not self.evidence:
            return None
        for claim in reading.facts:
            if not any(e.supports(claim) for e in self.evidence) and not self._asked(claim):
                return FactCheck(False, f"unsupported claim {claim.describe()}", unsupported=[claim],
                                 language=self.language)
        return None

    def _asked(self, claim: Claim) -> bool:
        return claim.is_number and any(a.raw == claim.raw for a in self._asked_numbers)


def _comparable(reading: _Reading, evidence: _Evidence) -> bool:
    """The answer and the entry are in one language, so their words can be compared."""
    if reading.language and evidence.language:
        return reading.language == evidence.language
    answered = "cyrillic" if reading.cyrillic >= reading.latin else "latin"
    return _script(evidence.language) == answered


def check_answer(answer: str, entries: Sequence[ContextEntry | str], question: str = "") -> FactCheck:
    """Is every fact of ``answer`` in one of ``entries``, and is it in the question's language?"""
    return FactChecker(entries, question).check(answer)
