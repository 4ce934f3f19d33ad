"""The one interface every LLM step implements, and what flows through it."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from dataclasses import dataclass
from typing import Literal, Protocol, runtime_checkable


@dataclass(frozen=True, slots=True)
class ChatMessage:
    role: Literal["system", "user", "assistant"]
    content: str

    def as_dict(self) -> dict[str, str]:
        return {"role": self.role, "content": self.content}


@dataclass(frozen=True, slots=True)
class Chunk:
    """A piece of a streamed completion; the last one carries the usage, when known."""

    text: str = ""
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    #: ``"stop"`` (the model ended), ``"length"`` (max_tokens reached), or None mid-stream.
    finish_reason: str | None = None


class StepUnavailable(Exception):
    """The step cannot take this question now (busy, not configured): try the next one."""


@runtime_checkable
class Answerer(Protocol):
    """One LLM step: streams a completion for chat messages.

    Implementations stop by themselves at ``deadline`` (``time.monotonic()``
    seconds) where they can, raise :class:`StepUnavailable` when they cannot take
    the request, and raise anything else on failure; the chain treats every
    exception as "move on to the next step".
    """

    #: ``local_llm`` or ``api_llm``: the answer's source in the message log.
    source: str
    #: The model's name as recorded with each answer.
    model_name: str

    def stream(
        self, messages: list[ChatMessage], *, max_tokens: int, deadline: float
    ) -> AsyncGenerator[Chunk, None]: ...
