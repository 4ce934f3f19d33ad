"""What the LLM steps are given, read from the database (sync: call through ``sync_to_async``)."""

from __future__ import annotations

import math
import re
from datetime import timedelta

from django.utils import timezone

from supportbot.llm.prompt import ContextEntry, Turn, script_language


def context_entries(matches, limit: int, question: str = "") -> list[ContextEntry]:
    """The nearest active FAQ entries (by similarity), preferring the question's language.

    The same answer is often kept in uk/ru/en; three copies of one fact would
    crowd out the second fact a question may need, so entries in one language
    come first: the question's, when its letters tell (ы/э/ё/ъ is Russian,
    і/ї/є/ґ Ukrainian, Latin English) and the FAQ has entries in it among the
    matches, else the best match's (Russian and Ukrainian questions are often
    closest to the other language's copy).
    """
    from supportbot.support.models import FaqEntry

    if not matches or limit <= 0:
        return []
    # The matcher's ranking is tuned to decide, not to retrieve: rank by similarity.
    matches = sorted(matches, key=lambda m: -m.score)
    written = script_language(question)
    language = written if any(m.language == written for m in matches) else matches[0].language
    ordered = [m for m in matches if m.language == language] + [m for m in matches if m.language != language]
    rows = {
        row["pk"]: row
        for row in FaqEntry.objects.filter(pk__in=[m.entry_id for m in ordered], is_active=True)
        .values("pk", "key", "question", "answer", "language")
    }
    entries = [
        ContextEntry(m.entry_id, rows[m.entry_id]["key"], rows[m.entry_id]["question"],
                     rows[m.entry_id]["answer"], rows[m.entry_id]["language"], m.score)
        for m in ordered if m.entry_id in rows
    ]
    same = [e for e in entries if e.language == language]
    others = [e for e in entries if e.language != language]
    return (rerank(question, same) + others)[:limit] if question else entries[:limit]


_WORD = re.compile(r"[^\W_]{3,}|\d+%?", re.UNICODE)


def _stems(text: str) -> set[str]:
    # Crude stems (first five letters) are enough for uk/ru endings on a dozen entries.
    return {w.lower()[:5] for w in _WORD.findall(text)}


def rerank(question: str, entries: list[ContextEntry]) -> list[ContextEntry]:
    """Similarity plus shared rare words (IDF over the candidates).

    Multilingual e5 scores of one FAQ's entries differ by hundredths, so a
    question that combines two facts ("2000 UAH", "Nova Poshta branch") often
    has the entry holding them outside the top few; the words it shares with
    that entry's text bring it back.
    """
    if len(entries) < 2:
        return entries
    asked = _stems(question)
    texts = [_stems(f"{e.question} {e.answer}") for e in entries]
    df = {w: sum(w in t for t in texts) for w in asked}
    n = len(entries)
    bonus = [sum(math.log(n / df[w]) for w in asked & t if df[w]) for t in texts]
    return [e for _, e in sorted(zip(bonus, entries, strict=True), key=lambda p: -(p[1].score + 0.01 * p[0]))]


def ticket_history(ticket_id: int, before_message_id: int, limit: int) -> list[Turn]:
    """The ticket's last ``limit`` customer questions and answers before this message."""
    from supportbot.support.models import Message

    if limit <= 0:
        return []
    rows = list(
        Message.objects.filter(ticket_id=ticket_id, id__lt=before_message_id,
                               kind__in=[Message.Kind.TEXT, Message.Kind.VOICE])
        .exclude(text="").exclude(source__in=[Message.Source.SYSTEM, Message.Source.SMALLTALK, Message.Source.CSAT])
        .order_by("-id").values_list("direction", "text")[:limit]
    )
    return [Turn("customer" if d == Message.Direction.IN else "support", t) for d, t in reversed(rows)]


def llm_answers_last_hour(customer_id: int) -> int:
    """How many LLM answers this customer got in the last hour (the hourly limit counts these).

    Refusals and failures end in a hand-over, after which the bot stays quiet
    until an operator replies, so answers are what a customer can repeat.
    """
    from supportbot.support.models import Message

    return Message.objects.filter(
        ticket__user_id=customer_id, direction=Message.Direction.OUT,
        source__in=Message.LLM_SOURCES,
        created_at__gte=timezone.now() - timedelta(hours=1),
    ).count()
