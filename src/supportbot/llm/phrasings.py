"""New phrasings of an FAQ question, proposed by the local LLM for an operator to approve.

A new FAQ entry often has one question and no phrasings, so customers who word it
differently are missed until someone adds their wording. The local model can write
plausible customer wordings now; an operator approves them (nothing is added without
that), and the usual phrasing path embeds them.

Small models are sloppy writers: they number their lines, quote them, answer in the
wrong language, repeat the question or the answer, or run on. Everything the model
writes therefore goes through a deterministic filter (:func:`parse_lines`, then
:func:`keep_proposals`) before anyone sees it; what it dropped, and why, is kept too.

The model is reached through the :class:`~supportbot.llm.base.Answerer` interface:
the process's own local step (:class:`~supportbot.llm.local.LocalAnswerer`), whose
worker thread runs the model. :func:`propose_in_worker` waits for it from a new
thread with its own event loop, under a timeout, so it can be called from sync code
(an admin view, a benchmark) and never blocks anyone's event loop.

No Django here: the admin (``support.admin``) turns entries into :class:`FaqText`
and approved proposals into phrasings through ``support.services.add_phrasing``.
"""

from __future__ import annotations

import asyncio
import re
import threading
import time
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, field

from supportbot.llm.base import Answerer, ChatMessage

LANGUAGES = ("uk", "ru", "en")
DEFAULT_PER_LANGUAGE = 3
MAX_PER_LANGUAGE = 10
#: Entries per run: each costs one model call per language (seconds each on a CPU).
MAX_ENTRIES = 10
#: Longer lines are not how customers ask a support chat (and are usually run-on output).
MAX_CHARS = 200
#: A runaway completion is read only this far.
MAX_OUTPUT_CHARS = 8000
#: The whole run (every entry and language) ends by then; what was not reached is reported.
RUN_SECONDS = 300.0

_LANGUAGE_IN_PROMPT = {"uk": "Ukrainian (українською мовою)", "ru": "Russian (на русском языке)",
                       "en": "English"}

SYSTEM_PROMPT = """\
You help a customer support team. You write messages that customers send to a support chat, \
exactly as customers write them. You write only the messages, one per line."""

USER_PROMPT = """\
A support FAQ has this question:
{question}
{answer}
Write {n} different messages that customers could send in {language} when they need this answer. \
Use different words and sentence structures: some short and informal, some longer, with a detail \
of their situation. Do not repeat the question as it is. One message per line. No numbering, no quotes, \
no translations, no other text."""

#: Lines asked for beyond those wanted: small models often start by repeating the question,
#: and the filter drops such lines; the spare ones keep the yield at what was asked for.
SPARE_LINES = 2

_ANSWER_LINE = "(Its answer, for context only, do not repeat it: {answer})\n"
_ANSWER_IN_PROMPT_CHARS = 400

#: One worked example per language, as an earlier turn of the chat: a 1.5B model keeps
#: the format (one plain message per line, in the language asked) far better after one.
EXAMPLE_QUESTION = "Can I pay by card?"
EXAMPLES = {
    "en": ["do you take visa or mastercard?", "can I pay with my card when the courier brings the order",
           "card payment possible?"],
    "uk": ["можна оплатити карткою?", "чи приймаєте ви visa або mastercard при отриманні замовлення",
           "хочу розрахуватися карткою з кур'єром, так можна?"],
    "ru": ["можно оплатить картой?", "принимаете ли вы visa или mastercard при получении заказа",
           "хочу рассчитаться картой с курьером, так можно?"],
}


@dataclass(frozen=True)
class FaqText:
    """What the model sees of an entry, and what a proposal must not repeat."""

    question: str
    answer: str = ""
    phrasings: tuple[str, ...] = ()


@dataclass(frozen=True)
class Proposal:
    language: str
    text: str


@dataclass
class Proposals:
    """The model's proposals for one entry: ``kept`` passed the filter; ``dropped`` holds
    (proposal, why) for the rest; ``errors``: language -> why no proposals came for it."""

    kept: list[Proposal] = field(default_factory=list)
    dropped: list[tuple[Proposal, str]] = field(default_factory=list)
    errors: dict[str, str] = field(default_factory=dict)
    #: Model output per language, as written (benchmarks keep it; the admin does not show it).
    raw: dict[str, str] = field(default_factory=dict)
    #: Per language: the output was cut short (so its last line was dropped).
    cut: dict[str, bool] = field(default_factory=dict)


class ProposalsFailed(Exception):
    """The local model produced nothing at all (every call failed): the message says why."""


# -- the prompt --------------------------------------------------------------------------------
def build_prompt(faq: FaqText, language: str, n: int) -> list[ChatMessage]:
    """The chat for ``n`` wordings of ``faq``'s question in ``language`` (plus :data:`SPARE_LINES`).

    Only the question and the answer go in: the existing phrasings are left to the
    filter, so a new entry and a well-phrased one are asked the same way.
    """
    answer = _clip(faq.answer, _ANSWER_IN_PROMPT_CHARS)
    example = EXAMPLES[language]
    n += SPARE_LINES
    return [
        ChatMessage("system", SYSTEM_PROMPT),
        ChatMessage("user", USER_PROMPT.format(question=EXAMPLE_QUESTION, n=len(example),
                                               language=_LANGUAGE_IN_PROMPT[language], answer="")),
        ChatMessage("assistant", "\n".join(example)),
        ChatMessage("user", USER_PROMPT.format(
            question=_clip(faq.question, 500), n=n, language=_LANGUAGE_IN_PROMPT[language],
            answer=_ANSWER_LINE.format(answer=answer) if answer else "")),
    ]


def max_tokens(n: int, language: str) -> int:
    """Enough for ``n`` (+ spare) lines of a typical length (Cyrillic takes more tokens per character)."""
    return 16 + (n + SPARE_LINES) * (60 if language in ("uk", "ru") else 40)


def _clip(text: str, limit: int) -> str:
    text = " ".join((text or "").split())
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


# -- reading what the model wrote ----------------------------------------------------------------
_INLINE_NUMBERS = re.compile(r"(?:^|\s)\(?\d{1,2}[.)]\s+")
_BULLET = re.compile(r"^\s*(?:[-*•–—·>]+|\(?\d{1,2}\s*[.):]|#+)\s*")
_LABELS = (
    r"english|ukrainian|russian|en|uk|ua|ru|q|question|phrasing|variant|version|message|customer|example|"
    r"англійською|українською|російською|англійська|українська|російська|питання|варіант|повідомлення|клієнт|"
    r"английский|украинский|русский|по-английски|по-украински|по-русски|вопрос|вариант|сообщение|клиент"
)
_LABEL = re.compile(rf"^(?:{_LABELS})\s*\d{{0,2}}\s*[:.)\-–—]\s*", re.IGNORECASE)
_EMPHASIS = re.compile(r"\*\*|__|`")
_QUOTES = "\"'“”„«»‘’‚`"


def parse_lines(output: str) -> list[str]:
    """Candidate lines from a completion: list markers, labels, quotes and preambles removed.

    Handles the usual ways a small model breaks the format: a numbered or bulleted
    list, the whole list on one line ("1. ... 2. ..."), "English: ..." labels,
    Markdown emphasis, quotes around each line, "Here are three ways:" before them.
    """
    output = output or ""
    if len(output) > MAX_OUTPUT_CHARS:  # a runaway: its cut last line is unfinished
        output = output[:MAX_OUTPUT_CHARS].rpartition("\n")[0]
    lines: list[str] = []
    for line in output.splitlines():
        pieces = [line]
        if len(_INLINE_NUMBERS.findall(line)) >= 2:  # "1. foo? 2. bar?" on one line
            pieces = _INLINE_NUMBERS.split(line)
        for piece in pieces:
            text = _tidy(piece)
            if text and not text.endswith(":"):  # "Here are three ways a customer might ask:"
                lines.append(text)
    return lines


def _tidy(piece: str) -> str:
    text = _EMPHASIS.sub("", piece).strip()
    for _ in range(3):  # "1. English: “...”" peels in layers
        before = text
        text = _BULLET.sub("", text)
        text = _LABEL.sub("", text).strip()
        text = text.strip(_QUOTES + " \t")
        if text == before:
            break
    return " ".join(text.split())


# -- the filter ------------------------------------------------------------------------------------
_CYRILLIC = re.compile(r"[\u0400-\u04ff]")
_LATIN = re.compile(r"[a-zA-Z\u00c0-\u024f]")
_ONLY_UK = set("іїєґ")
_ONLY_RU = set("ыэъё")
#: Common words of one language and not the other, most without a letter of their own.
_WORDS_UK = {"як", "що", "де", "мені", "можна", "потрібно", "треба", "це", "чи", "або", "якщо", "чому", "скільки",
             "який", "яка", "коли", "мій", "моє", "будь", "ласка", "немає", "ви", "вже", "ще", "але", "та", "можу",
             "маю", "отримати", "оплатити", "купити", "повернути", "замовлення", "гроші", "тільки", "від"}
_WORDS_RU = {"как", "что", "где", "мне", "можно", "нужно", "это", "или", "если", "почему", "сколько", "какой",
             "какая", "когда", "мой", "моё", "пожалуйста", "нет", "вы", "уже", "ещё", "еще", "но", "и", "могу",
             "есть", "получить", "оплатить", "купить", "вернуть", "заказ", "деньги", "только", "от"}
_NOT_WORD = re.compile(r"[^\w\s]")


def normalise(text: str) -> str:
    """The form two texts are compared in: case, punctuation, apostrophes and spacing ignored."""
    text = unicodedata.normalize("NFC", text or "").casefold().replace("ё", "е")
    return " ".join(_NOT_WORD.sub(" ", text).split())


def fits_language(text: str, language: str) -> bool:
    """Written in ``language``'s script (and, for uk/ru, not recognisably the other one).

    English: no Cyrillic letter. Ukrainian and Russian: mostly Cyrillic, and not more
    signs of the other language (its own letters, its common words) than of this one.
    """
    letters = [c for c in text if c.isalpha()]
    if not letters:
        return False
    cyrillic = sum(1 for c in letters if _CYRILLIC.match(c))
    if language == "en":
        return cyrillic == 0 and sum(1 for c in letters if _LATIN.match(c)) / len(letters) >= 0.9
    if cyrillic / len(letters) < 0.6:
        return False
    lower = text.casefold()
    words = set(normalise(text).split())
    uk = sum(c in _ONLY_UK for c in lower) + len(words & _WORDS_UK)
    ru = sum(c in _ONLY_RU for c in lower) + len(words & _WORDS_RU)
    return ru <= uk if language == "uk" else uk <= ru


def copies_answer(text: str, answer: str) -> bool:
    """The line repeats the answer: contained in it (4+ words), contains it, or shares a
    run of 6 words with it. A customer asks; they do not recite the answer."""
    line, told = normalise(text).split(), normalise(answer).split()
    if not line or not told:
        return False
    joined, told_joined = f" {' '.join(line)} ", f" {' '.join(told)} "
    if len(line) >= 4 and joined in told_joined:
        return True
    if len(told) >= 3 and told_joined in joined:
        return True
    runs = {tuple(told[i : i + 6]) for i in range(len(told) - 5)}
    return any(tuple(line[i : i + 6]) in runs for i in range(len(line) - 5))


_SENTENCE_END = re.compile(r"[.?!…]+\s+(?=\w)")


def copies_example(text: str) -> bool:
    """The line repeats the prompt's worked example (a run of 5 words of it): small models
    borrow from it, and "can I pay by card?" must not become a phrasing of a delivery entry."""
    line = normalise(text).split()
    for example in [EXAMPLE_QUESTION, *(e for lines in EXAMPLES.values() for e in lines)]:
        words = normalise(example).split()
        runs = {tuple(words[i : i + 5]) for i in range(max(1, len(words) - 4))}
        if any(tuple(line[i : i + 5]) in runs for i in range(max(1, len(line) - 4))):
            return True
    return False


def repeats_question(text: str, question: str) -> bool:
    """The line is the question, then a sentence of something else ("How do I block my card?
    I can't help with that."): how small models answer instead of rephrasing."""
    asked = normalise(question)
    return bool(asked) and normalise(text).startswith(asked) and bool(_SENTENCE_END.search(text))


def keep_proposals(lines: Sequence[str], faq: FaqText, language: str, n: int,
                   taken: set[str] | None = None) -> tuple[list[str], list[tuple[str, str]]]:
    """The first ``n`` usable lines, and (line, why) for each dropped one.

    Dropped: empty, longer than :data:`MAX_CHARS`, in the wrong language's script, the
    question or a phrasing already (or an earlier line, ``taken``: normalised texts,
    updated in place), the question followed by more sentences, a copy of the answer, or of
    the prompt's worked example.
    """
    known = {normalise(faq.question), *(normalise(p) for p in faq.phrasings)}
    taken = set() if taken is None else taken
    kept: list[str] = []
    dropped: list[tuple[str, str]] = []
    for line in lines:
        text = " ".join(line.split())
        key = normalise(text)
        why = ""
        if len(kept) >= n:
            why = "more than asked for"
        elif not key or sum(c.isalpha() for c in key) < 3:
            why = "empty"
        elif len(text) > MAX_CHARS:
            why = f"longer than {MAX_CHARS} characters"
        elif not fits_language(text, language):
            why = f"not written in {language}"
        elif key in known:
            why = "already the question or a phrasing"
        elif key in taken:
            why = "duplicate"
        elif repeats_question(text, faq.question):
            why = "the question, then something else"
        elif copies_answer(text, faq.answer):
            why = "copies the answer"
        elif copies_example(text):
            why = "copies the prompt's example"
        if why:
            dropped.append((text, why))
        else:
            kept.append(text)
            taken.add(key)
    return kept, dropped


def filter_output(output: str, faq: FaqText, language: str, n: int, *, cut: bool = False,
                  taken: set[str] | None = None) -> tuple[list[str], list[tuple[str, str]]]:
    """:func:`parse_lines`, then :func:`keep_proposals`; the unfinished last line of a ``cut``
    completion is dropped first (never offered)."""
    lines = parse_lines(output)
    unfinished = [(lines.pop(), "cut off at the length limit")] if cut and lines else []
    kept, dropped = keep_proposals(lines, faq, language, n, taken)
    return kept, unfinished + dropped


# -- asking the model --------------------------------------------------------------------------------
async def complete(answerer: Answerer, messages: list[ChatMessage], *, max_tokens: int,
                   deadline: float) -> tuple[str, bool]:
    """The completion's text (read at most :data:`MAX_OUTPUT_CHARS` far), and whether it was
    cut short (token limit or that cap): then its last line is unfinished."""
    parts: list[str] = []
    size = 0
    cut = False
    stream = answerer.stream(messages, max_tokens=max_tokens, deadline=deadline)
    try:
        async for chunk in stream:
            parts.append(chunk.text)
            size += len(chunk.text)
            cut = cut or chunk.finish_reason == "length"
            if size >= MAX_OUTPUT_CHARS:
                cut = True
                break
    finally:
        await stream.aclose()  # stops the model at once if we stopped reading
    return "".join(parts), cut


async def propose(answerer: Answerer, faqs: Sequence[FaqText], *, languages: Sequence[str] = LANGUAGES,
                  per_language: int = DEFAULT_PER_LANGUAGE, call_timeout: float = 45.0,
                  deadline: float | None = None) -> list[Proposals]:
    """One model call per entry and language, each under ``call_timeout`` and the run's
    ``deadline`` (``time.monotonic()``); a failed call is recorded in its entry's ``errors``
    and the rest go on.

    Language by language: consecutive calls then share the prompt's start (instructions
    and worked example), which llama.cpp does not evaluate again.
    """
    results = [Proposals() for _ in faqs]
    taken: list[set[str]] = [set() for _ in faqs]
    for language in languages:
        for faq, result, seen in zip(faqs, results, taken, strict=True):
            await _propose_one(answerer, faq, language, result, seen, per_language=per_language,
                               call_timeout=call_timeout, deadline=deadline)
    return results


async def _propose_one(answerer: Answerer, faq: FaqText, language: str, result: Proposals, taken: set[str], *,
                       per_language: int, call_timeout: float, deadline: float | None) -> None:
    now = time.monotonic()
    end = min(now + call_timeout, deadline if deadline is not None else float("inf"))
    if end - now < 1.0:
        result.errors[language] = "not asked: the run's time ran out (select fewer entries or languages)"
        return
    try:
        output, cut = await complete(answerer, build_prompt(faq, language, per_language),
                                     max_tokens=max_tokens(per_language, language), deadline=end)
    except TimeoutError:
        result.errors[language] = f"the local model did not finish within {end - now:.0f} s"
        return
    except Exception as exc:  # noqa: BLE001 - any failure of the model is reported, per language
        result.errors[language] = f"the local model failed: {exc or type(exc).__name__}"
        return
    result.raw[language], result.cut[language] = output, cut
    kept, dropped = filter_output(output, faq, language, per_language, cut=cut, taken=taken)
    result.kept += [Proposal(language, text) for text in kept]
    result.dropped += [(Proposal(language, text), why) for text, why in dropped]


def propose_in_worker(answerer: Answerer, faqs: Sequence[FaqText], *, languages: Sequence[str] = LANGUAGES,
                      per_language: int = DEFAULT_PER_LANGUAGE, call_timeout: float = 45.0,
                      run_timeout: float = RUN_SECONDS) -> list[Proposals]:
    """:func:`propose`, from a new thread with its own event loop, waiting at most
    ``run_timeout`` (plus a little for the last call to stop).

    Raises :class:`ProposalsFailed` when no call produced anything (the model is missing,
    broken, busy or too slow), so the caller can say so instead of showing an empty page.
    """
    if not 1 <= per_language <= MAX_PER_LANGUAGE:
        raise ValueError(f"per_language must be 1-{MAX_PER_LANGUAGE}")
    if not languages or any(lang not in LANGUAGES for lang in languages):
        raise ValueError(f"languages must be among {', '.join(LANGUAGES)}")
    deadline = time.monotonic() + run_timeout
    box: dict[str, object] = {}

    def work() -> None:
        try:
            box["result"] = asyncio.run(propose(answerer, faqs, languages=languages, per_language=per_language,
                                                call_timeout=call_timeout, deadline=deadline))
        except BaseException as exc:  # noqa: BLE001 - handed to the waiting caller
            box["error"] = exc

    thread = threading.Thread(target=work, name="llm-phrasings", daemon=True)
    thread.start()
    thread.join(run_timeout + 10.0)
    if thread.is_alive():
        raise ProposalsFailed(f"the local model did not finish within {run_timeout:.0f} s")
    if "error" in box:
        raise ProposalsFailed(f"the local model failed: {box['error']}")
    results: list[Proposals] = box["result"]  # type: ignore[assignment]
    if faqs and all(not r.raw for r in results):
        reasons = sorted({why for r in results for why in r.errors.values()})
        raise ProposalsFailed("; ".join(reasons) or "the local model wrote nothing")
    return results
