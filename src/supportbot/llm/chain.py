"""The LLM chain: local model, then the API, each with its own switch and timeout.

Every step gets the same grounded messages. An error, a timeout, a busy model
or a refusal (see :class:`~supportbot.llm.prompt.AnswerGuard`) moves on to the
next step; when no step answers, the caller hands the ticket to a person.
Nothing a step does reaches the customer as an exception.

While a step streams, the vetted text so far goes to an :class:`AnswerStream`
(the bot edits one Telegram message with it); a step that fails after showing
something has its draft discarded before the next step starts.

With a :class:`~supportbot.llm.factcheck.FactChecker`, a finished answer is also
checked against the FAQ entries it was grounded in before anyone can rely on it
(the draft on screen is marked as being written and has no buttons): an unsupported
claim or the wrong language makes it a refusal, its draft is discarded, and the
check's verdict is in the step's report. A finished sentence that no entry can
support stops the step at once. With ``choices`` the steps only name an entry
(``LLM_ANSWER_MODE=choose``): nothing is streamed and the number is the result.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import Protocol

from supportbot.llm.base import Answerer, ChatMessage, Chunk, StepUnavailable
from supportbot.llm.factcheck import FactCheck, FactChecker
from supportbot.llm.prompt import AnswerGuard, ChoiceGuard, Verdict
from supportbot.ops import metrics

#: Enough for "[12]" and a few words around it.
CHOICE_MAX_TOKENS = 8

log = logging.getLogger(__name__)


class AnswerStream(Protocol):
    """Where a streaming answer is shown as it grows."""

    async def show(self, text: str) -> None:
        """The whole answer so far (not a delta); called often, must not block."""

    async def discard(self) -> None:
        """The step failed after showing something: take it back."""


@dataclass
class ChainStep:
    answerer: Answerer
    timeout: float


class _Reader(Protocol):
    """How a step's raw text is vetted, shown and finished (:class:`AnswerGuard`, :class:`ChoiceGuard`)."""

    def check(self, raw: str, *, final: bool = False, finish_reason: str | None = None) -> Verdict: ...

    def visible(self, raw: str) -> str: ...

    def final(self, raw: str) -> str: ...


@dataclass
class StepReport:
    """What one step did with one question (shown by ``supportbot ask``, logged)."""

    source: str
    model: str
    #: answered / refused / too long / repeated the system prompt / empty / timeout / busy / error / off
    #: (a failed fact check is "refused", its reason in ``detail``: "unsupported claim '300 грн' (price)")
    outcome: str
    detail: str = ""
    first_token_ms: int | None = None
    total_ms: int = 0
    #: The fact check's verdict on the step's finished answer (None: not checked).
    check: FactCheck | None = None

    def summary(self) -> str:
        return f"{self.source}: {self.outcome}" + (f" ({self.detail})" if self.detail else "")

    def as_dict(self) -> dict:
        return {"source": self.source, "model": self.model, "outcome": self.outcome, "detail": self.detail,
                "first_token_ms": self.first_token_ms, "total_ms": self.total_ms,
                "check": self.check.as_dict() if self.check is not None else None}


@dataclass
class LlmResult:
    steps: list[StepReport] = field(default_factory=list)
    source: str | None = None
    model: str | None = None
    text: str | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    first_token_ms: int | None = None
    total_ms: int | None = None
    #: The answering step's fact check (the entry the answer is grounded in).
    check: FactCheck | None = None
    #: ``choices`` runs: the number of the entry the model chose (1-based).
    choice: int | None = None

    @property
    def answered(self) -> bool:
        return self.text is not None

    def summary(self) -> str:
        return "; ".join(s.summary() for s in self.steps) or "no LLM step enabled"


class AnswerChain:
    def __init__(self, steps: list[ChainStep], *, max_tokens: int = 256, max_answer_chars: int = 1200,
                 off: list[StepReport] | None = None) -> None:
        self.steps = steps
        self.max_tokens = max_tokens
        self.max_answer_chars = max_answer_chars
        #: Steps switched off by settings, reported with every result.
        self.off = off or []

    async def run(self, messages: list[ChatMessage], *, stream: AnswerStream | None = None,
                  check: FactChecker | None = None, choices: int | None = None) -> LlmResult:
        """Try the steps in order until one answers.

        ``check``: the fact check every finished answer must pass. ``choices``: the steps
        only choose among that many entries (``choose`` mode): ``result.choice`` is the
        number, nothing is streamed and there is nothing to fact-check.
        """
        result = LlmResult(steps=list(self.off))
        system = "\n".join(m.content for m in messages if m.role == "system")
        if choices is not None:
            stream, check = None, None
        for step in self.steps:
            report, text, usage = await self._run_step(step, messages, system, stream, check, choices)
            result.steps.append(report)
            log.info("LLM step %s", report.summary())
            if text is not None:
                result.source, result.model, result.text = report.source, report.model, text
                result.first_token_ms, result.total_ms = report.first_token_ms, report.total_ms
                result.check = report.check
                result.choice = int(text) if choices is not None else None
                if usage is not None:
                    result.prompt_tokens, result.completion_tokens = usage.prompt_tokens, usage.completion_tokens
                break
        return result

    async def _run_step(
        self, step: ChainStep, messages: list[ChatMessage], system: str, stream: AnswerStream | None,
        check: FactChecker | None = None, choices: int | None = None,
    ) -> tuple[StepReport, str | None, Chunk | None]:
        answerer = step.answerer
        report = StepReport(answerer.source, answerer.model_name, "answered")
        guard: _Reader = (ChoiceGuard(choices) if choices is not None
                          else AnswerGuard(system, max_chars=self.max_answer_chars))
        max_tokens = CHOICE_MAX_TOKENS if choices is not None else self.max_tokens
        started = time.monotonic()
        raw, shown, usage, verdict = "", "", None, None
        stopped: FactCheck | None = None  # a finished sentence no entry supports
        generation = answerer.stream(messages, max_tokens=max_tokens, deadline=started + step.timeout)
        try:
            async with asyncio.timeout(step.timeout):
                async for chunk in generation:
                    if chunk.text:
                        if report.first_token_ms is None:
                            report.first_token_ms = int((time.monotonic() - started) * 1000)
                        raw += chunk.text
                        verdict = guard.check(raw)
                        if not verdict.ok:
                            break
                        visible = guard.visible(raw)
                        if check is not None and visible and (stopped := check.early(visible)) is not None:
                            break
                        if stream is not None and visible and visible != shown:
                            await stream.show(visible)
                            shown = visible
                    if chunk.finish_reason is not None or chunk.completion_tokens is not None:
                        usage = chunk
                else:
                    verdict = guard.check(raw, final=True, finish_reason=usage.finish_reason if usage else None)
        except StepUnavailable as exc:
            report.outcome, report.detail = "busy", str(exc)
        except TimeoutError:
            report.outcome = "timeout"
            report.detail = f"no answer within {step.timeout:g} s"
        except Exception as exc:  # noqa: BLE001 - any failure of a step means "try the next one"
            report.outcome, report.detail = "error", _describe(exc)
            log.warning("LLM step %s failed: %s", answerer.source, report.detail)
        finally:
            await generation.aclose()
            report.total_ms = int((time.monotonic() - started) * 1000)
        text = None
        if report.outcome == "answered":
            if stopped is not None:
                report.outcome, report.detail, report.check = "refused", stopped.reason, stopped
            elif verdict is not None and verdict.ok:
                text = guard.final(raw)
                if check is not None:
                    report.check = check.check(text)
                    if not report.check.ok:
                        report.outcome, report.detail, text = "refused", report.check.reason, None
            else:
                report.outcome = verdict.reason if verdict is not None else "empty"
        if text is None and shown and stream is not None:
            await stream.discard()
        metrics.LLM_SECONDS.labels(report.source, report.outcome).observe(report.total_ms / 1000)
        if report.first_token_ms is not None:
            metrics.LLM_FIRST_TOKEN_SECONDS.labels(report.source).observe(report.first_token_ms / 1000)
        return report, text, usage


def _describe(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}"[:200] if text else type(exc).__name__
