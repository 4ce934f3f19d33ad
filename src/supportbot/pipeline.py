"""Question -> answer: the one place that decides FAQ / LLM / hand-over.

Plain async Python with no aiogram or Django-request types, so the bot,
``supportbot ask``, the benchmarks and the tests all run exactly this code.
Blocking work (embedding, search, ORM) runs in threads.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field

from asgiref.sync import sync_to_async

from supportbot.knowledge.index import EntryMatch, FaqIndex

log = logging.getLogger(__name__)


class Source:
    FAQ = "faq"
    LOCAL_LLM = "local_llm"
    API_LLM = "api_llm"
    HANDOVER = "handover"


@dataclass
class Answer:
    source: str
    text: str | None = None
    faq_entry_id: int | None = None
    faq_key: str | None = None
    score: float | None = None
    elapsed_ms: int = 0
    candidates: list[EntryMatch] = field(default_factory=list)
    reason: str = ""

    @property
    def answered(self) -> bool:
        return self.source != Source.HANDOVER

    def as_dict(self) -> dict:
        return {
            "answer": self.text,
            "source": self.source,
            "faq_key": self.faq_key,
            "score": None if self.score is None else round(self.score, 4),
            "elapsed_ms": self.elapsed_ms,
            "candidates": [{"faq_key": c.key, "score": round(c.score, 4)} for c in self.candidates],
            "reason": self.reason,
        }


def _entry_answer(entry_id: int) -> str | None:
    from supportbot.support.models import FaqEntry

    return (
        FaqEntry.objects.filter(pk=entry_id, is_active=True).values_list("answer", flat=True).first()
    )


class AnswerPipeline:
    def __init__(self, index: FaqIndex, *, top_k: int = 5) -> None:
        self.index = index
        self.top_k = top_k

    async def answer(self, question: str, *, language: str | None = None) -> Answer:
        started = time.perf_counter()
        result = await asyncio.to_thread(self.index.search, question, k=self.top_k)
        answer = Answer(source=Source.HANDOVER, candidates=result.matches)
        best = result.best
        if best is not None:
            answer.score = best.score
        if result.confident and best is not None:
            text = await sync_to_async(_entry_answer, thread_sensitive=False)(best.entry_id)
            if text:  # None: the entry was deactivated or deleted a moment ago
                answer.source = Source.FAQ
                answer.text = text
                answer.faq_entry_id = best.entry_id
                answer.faq_key = best.key
        if not answer.answered:
            answer.reason = "empty FAQ" if best is None else "no confident FAQ match"
            # The LLM steps (local GGUF, then API) slot in here.
        answer.elapsed_ms = int((time.perf_counter() - started) * 1000)
        return answer


class IndexRefresher:
    """Keeps a process's FAQ index current by polling the cheap version counter."""

    def __init__(self, index: FaqIndex, interval: float) -> None:
        self.index = index
        self.interval = interval

    async def run(self) -> None:
        while True:
            try:
                await asyncio.to_thread(_refresh_closing_connection, self.index)
            except Exception:
                log.exception("FAQ index refresh failed; retrying")
            await asyncio.sleep(self.interval)


def _refresh_closing_connection(index: FaqIndex) -> None:
    from django.db import close_old_connections

    close_old_connections()
    index.refresh()
