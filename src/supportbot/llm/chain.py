"""The LLM chain: local model, then the API, each with its own switch and timeout.

Every step gets the same grounded messages. An error, a timeout, a busy model
or a refusal (see :class:`~supportbot.llm.prompt.AnswerGuard`) moves on to the
next step; when no step answers, the caller hands the ticket to a person.
Nothing a step does reaches the customer as an exception.

While a step streams, the vetted text so far goes to an :class:`AnswerStream`
(the bot edits one Telegram message with it); a step that fails after showing
something has its draft discarded before the next step starts.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import Protocol

from supportbot.llm.base import Answerer, ChatMessage, Chunk, StepUnavailable
from supportbot.llm.prompt import AnswerGuard

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


@dataclass
class StepReport:
    """What one step did with one question (shown by ``supportbot ask``, logged)."""

    source: str
    model: str
    #: answered / refused / too long / repeated the system prompt / empty / timeout / busy / error / off
    outcome: str
    detail: str = ""
    first_token_ms: int | None = None
    total_ms: int = 0

    def summary(self) -> str:
        return f"{self.source}: {self.outcome}" + (f" ({self.detail})" if self.detail else "")

    def as_dict(self) -> dict:
        return {"source": self.source, "model": self.model, "outcome": self.outcome, "detail": self.detail,
                "first_token_ms": self.first_token_ms, "total_ms": self.total_ms}


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

    async def run(self, messages: list[ChatMessage], *, stream: AnswerStream | None = None) -> LlmResult:
        result = LlmResult(steps=list(self.off))
        system = "\n".join(m.content for m in messages if m.role == "system")
        for step in self.steps:
            report, text, usage = await self._run_step(step, messages, system, stream)
            result.steps.append(report)
            log.info("LLM step %s", report.summary())
            if text is not None:
                result.source, result.model, result.text = report.source, report.model, text
                result.first_token_ms, result.total_ms = report.first_token_ms, report.total_ms
                if usage is not None:
                    result.prompt_tokens, result.completion_tokens = usage.prompt_tokens, usage.completion_tokens
                break
        return result

    async def _run_step(
        self, step: ChainStep, messages: list[ChatMessage], system: str, stream: AnswerStream | None
    ) -> tuple[StepReport, str | None, Chunk | None]:
        answerer = step.answerer
        report = StepReport(answerer.source, answerer.model_name, "answered")
        guard = AnswerGuard(system, max_chars=self.max_answer_chars)
        started = time.monotonic()
        raw, shown, usage, verdict = "", "", None, None
        generation = answerer.stream(messages, max_tokens=self.max_tokens, deadline=started + step.timeout)
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
            if verdict is not None and verdict.ok:
                text = guard.final(raw)
            else:
                report.outcome = verdict.reason if verdict is not None else "empty"
        if text is None and shown and stream is not None:
            await stream.discard()
        return report, text, usage


def _describe(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}"[:200] if text else type(exc).__name__
