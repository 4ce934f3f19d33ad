"""Question -> answer: the one place that decides FAQ / LLM / hand-over.

Plain async Python with no aiogram or Django-request types, so the bot,
``supportbot ask``, the benchmarks and the tests all run exactly this code.
Blocking work (embedding, search, ORM) runs in threads.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from supportbot.background import in_worker_thread
from supportbot.knowledge.index import EntryMatch, FaqIndex, SearchResult
from supportbot.ops import metrics

if TYPE_CHECKING:
    from supportbot.llm.chain import AnswerStream, StepReport
    from supportbot.llm.prompt import ContextEntry
    from supportbot.llm.setup import LlmFallback

log = logging.getLogger(__name__)

class Source:
    """Where an answer came from: the message log's sources (one definition, ``support.choices``), or a person."""

    from supportbot.support.choices import MessageSource as _logged  # Django-free: no models, no settings

    FAQ = _logged.FAQ
    LOCAL_LLM = _logged.LOCAL_LLM
    API_LLM = _logged.API_LLM
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
    # LLM answers: the model, its grounding and its timings
    model: str | None = None
    context: list[ContextEntry] = field(default_factory=list)
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    first_token_ms: int | None = None
    llm_ms: int | None = None
    #: What each LLM step did with the question (answered, refused, timeout...).
    steps: list[StepReport] = field(default_factory=list)
    #: The customer reached the hourly LLM limit (the bot says so when it hands over).
    limited: bool = False
    #: The FAQ entry an LLM answer is grounded in (its fact check's, or the one the model chose).
    grounded_in: int | None = None
    #: ``LLM_ANSWER_MODE=draft``: the fact-checked answer, not sent, kept for the operator.
    draft: str | None = None
    #: ``defer_draft``: the LLM step was left for :meth:`AnswerPipeline.draft`, after the hand-over.
    draft_pending: bool = False
    #: With ``draft_pending``: the FAQ search's matches, so the draft grounds itself in them
    #: instead of searching the FAQ a second time.
    draft_matches: list[EntryMatch] = field(default_factory=list, repr=False)

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
            "model": self.model,
            "context": [{"faq_key": c.key, "score": round(c.score, 4)} for c in self.context],
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "first_token_ms": self.first_token_ms,
            "llm_ms": self.llm_ms,
            "steps": [s.as_dict() for s in self.steps],
            "draft": self.draft,
        }

    def llm_fields(self) -> dict:
        """What the message log keeps about an LLM answer."""
        return {
            "llm_model": self.model or "",
            "context_entries": [{"id": c.entry_id, "key": c.key, "score": round(c.score, 4),
                                 **({"grounds": True} if c.entry_id == self.grounded_in else {})}
                                for c in self.context],
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "first_token_ms": self.first_token_ms,
            "llm_ms": self.llm_ms,
        }


@dataclass(frozen=True)
class Conversation:
    """Where a question was asked: the ticket's history and the customer's hourly limit come from here."""

    customer_id: int
    ticket_id: int
    message_id: int


def _entry_answer(entry_id: int) -> str | None:
    from supportbot.support.models import FaqEntry

    return (
        FaqEntry.objects.filter(pk=entry_id, is_active=True).values_list("answer", flat=True).first()
    )


#: Questions matched at once. Each one waits in the embedder's micro-batch
#: (``knowledge/batching.py``) while another thread runs the model, so the pool is as wide as
#: the largest batch: with the event loop's default pool (6 threads on 2 cores, shared with
#: every database call) batches stayed small and waiting questions held the threads the
#: database calls need.
SEARCH_THREADS = 32
_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


def _search_pool() -> ThreadPoolExecutor:
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(max_workers=SEARCH_THREADS, thread_name_prefix="faq-search")
        return _pool


class AnswerPipeline:
    def __init__(self, index: FaqIndex, *, top_k: int = 5, llm: LlmFallback | None = None) -> None:
        self.index = index
        self.top_k = top_k
        #: The LLM steps tried after an FAQ miss; None: a miss goes straight to a person.
        self.llm = llm
        self._customer_locks: dict[int, tuple[asyncio.Lock, list[int]]] = {}  # lock, [users]

    async def answer(
        self, question: str, *, language: str | None = None, conversation: Conversation | None = None,
        stream: AnswerStream | None = None, use_faq: bool = True, defer_draft: bool = False,
    ) -> Answer:
        """``stream`` sees an LLM answer grow; ``use_faq=False`` skips FAQ answers (trying prompts).

        ``defer_draft``: with ``LLM_ANSWER_MODE=draft`` nothing the model writes reaches the
        customer, so the LLM step is skipped here (``answer.draft_pending``) and the caller hands
        over at once and asks :meth:`draft` afterwards, instead of keeping the customer waiting
        for a text they will never see.
        """
        started = time.perf_counter()
        k = max(self.top_k, 4 * self.llm.context_entries) if self.llm is not None else self.top_k
        with metrics.timed("match"):
            result = await self._search(question, k)
        answer = Answer(source=Source.HANDOVER, candidates=result.matches[: self.top_k])
        best = result.best
        if best is not None:
            answer.score = best.score
        if use_faq and result.confident and best is not None:
            text = await in_worker_thread(_entry_answer)(best.entry_id)
            if text:  # None: the entry was deactivated or deleted a moment ago
                answer.source = Source.FAQ
                answer.text = text
                answer.faq_entry_id = best.entry_id
                answer.faq_key = best.key
        if not answer.answered:
            answer.reason = ("empty FAQ" if best is None else "no confident FAQ match") if use_faq else "FAQ skipped"
            if defer_draft and self.llm is not None and self.llm.answer_mode == "draft" and result.question:
                answer.draft_pending = True
                answer.draft_matches = result.matches
            elif self.llm is not None and result.question:
                with metrics.timed("llm"):
                    await self._ask_llm(answer, question, result.matches, language, conversation, stream)
        answer.elapsed_ms = int((time.perf_counter() - started) * 1000)
        return answer

    async def _search(self, question: str, k: int) -> SearchResult:
        """The FAQ search in the search pool (see :func:`_search_pool`)."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(_search_pool(), functools.partial(self.index.search, question, k=k))

    async def draft(self, question: str, *, language: str | None = None,
                    conversation: Conversation | None = None,
                    matches: list[EntryMatch] | None = None) -> Answer:
        """The LLM step alone, for a question already handed over (``LLM_ANSWER_MODE=draft``):
        ``answer.draft`` is the fact-checked answer for the operator, or None (``answer.reason``
        says why). ``matches``: the FAQ search :meth:`answer` already made for this question
        (``Answer.draft_matches``); without them the FAQ is searched here."""
        answer = Answer(source=Source.HANDOVER)
        if self.llm is None:
            return answer
        if matches is None:
            matches = (await self._search(question, 4 * self.llm.context_entries)).matches
        with metrics.timed("llm"):
            await self._ask_llm(answer, question, matches, language, conversation, None)
        answer.reason = answer.reason.removeprefix("; ")
        return answer

    async def _ask_llm(
        self, answer: Answer, question: str, matches: list[EntryMatch], language: str | None,
        conversation: Conversation | None, stream: AnswerStream | None,
    ) -> None:
        """Local model, then API, grounded in the nearest FAQ entries; fills ``answer`` when one answers.

        ``LLM_ANSWER_MODE`` (``llm.answer_mode``) decides what may reach the customer: a
        written answer that passes the fact check (``answer``), the stored answer of the
        entry the model chose (``choose``), or nothing: the checked answer is kept as a
        draft for the operator and the ticket handed over (``draft``).
        """
        from supportbot.llm import context
        from supportbot.llm.factcheck import FactChecker
        from supportbot.llm.prompt import build_choice_messages, build_messages

        llm = self.llm
        assert llm is not None
        db = in_worker_thread
        customer = conversation.customer_id if conversation is not None else None
        lock: contextlib.AbstractAsyncContextManager[Any]
        if customer is None:
            lock = contextlib.nullcontext()
        else:  # one LLM question per customer at a time, so the hourly limit holds for bursts too
            lock, users = self._customer_locks.setdefault(customer, (asyncio.Lock(), [0]))
            users[0] += 1
        try:
            async with lock:
                if conversation is not None and llm.max_calls_per_hour:
                    used = await db(context.llm_answers_last_hour)(conversation.customer_id)
                    if used >= llm.max_calls_per_hour:
                        answer.limited = True
                        answer.reason += "; hourly LLM limit reached"
                        return
                entries = await db(context.context_entries)(matches, llm.context_entries, question)
                history = []
                if conversation is not None:
                    history = await db(context.ticket_history)(
                        conversation.ticket_id, conversation.message_id, llm.history_messages)
                if llm.answer_mode == "choose":
                    result = await llm.chain.run(build_choice_messages(question, entries=entries, history=history),
                                                 choices=len(entries))
                else:
                    messages = build_messages(question, entries=entries, history=history, language=language)
                    checker = FactChecker(entries, question) if llm.check_facts else None
                    shown = stream if llm.answer_mode == "answer" else None  # a draft mode answer is never shown
                    result = await llm.chain.run(messages, stream=shown, check=checker)
        finally:
            if customer is not None:
                users[0] -= 1
                if not users[0]:
                    del self._customer_locks[customer]
        answer.steps, answer.context = result.steps, entries
        if not result.answered:
            answer.reason += "; " + result.summary()
            return
        assert result.source is not None and result.text is not None  # set on every answered result
        text = result.text
        answer.grounded_in = result.check.entry_id if result.check is not None else None
        if result.choice is not None:  # choose: the entry's own words, as the FAQ keeps them
            chosen = entries[result.choice - 1]
            text, answer.faq_entry_id, answer.faq_key = chosen.answer, chosen.entry_id, chosen.key
            answer.grounded_in = chosen.entry_id
            result.steps[-1].detail = f"chose {chosen.key}"
        answer.model = result.model
        answer.prompt_tokens, answer.completion_tokens = result.prompt_tokens, result.completion_tokens
        answer.first_token_ms, answer.llm_ms = result.first_token_ms, result.total_ms
        if llm.answer_mode == "draft":
            answer.draft = text
            answer.reason += f"; {result.summary()}; draft kept for the operator (LLM_ANSWER_MODE=draft)"
            return
        answer.source, answer.text = result.source, text
        answer.reason = ""


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
