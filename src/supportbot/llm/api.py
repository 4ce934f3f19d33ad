"""The API step: any OpenAI-compatible chat completions server, through the ``openai`` SDK.

The SDK's own retries are off (``max_retries=0``): they do not know the step's
deadline. Here a 429 or 5xx is retried with exponential backoff, or after the
server's ``Retry-After`` when it sends one, but only while the wait still fits
before the deadline; otherwise the step gives up at once and the chain moves
on. Every request carries an explicit timeout (what is left of the step's
time). Only the request that opens the stream is retried: once text has been
streamed, a failure ends the step.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import AsyncGenerator
from typing import TYPE_CHECKING

from supportbot.llm.base import ChatMessage, Chunk

if TYPE_CHECKING:
    from openai import AsyncOpenAI

log = logging.getLogger(__name__)

_CONNECT_TIMEOUT = 5.0
_FIRST_BACKOFF = 0.5
_MAX_BACKOFF = 8.0


class ApiAnswerer:
    """:class:`~supportbot.llm.base.Answerer` over an OpenAI-compatible HTTP API."""

    source = "api_llm"

    def __init__(self, *, api_key: str, model: str, base_url: str | None = None, max_retries: int = 2,
                 temperature: float = 0.0) -> None:
        self.model_name = model
        self.base_url = base_url
        self.max_retries = max_retries
        self.temperature = temperature
        self._api_key = api_key
        self._client: AsyncOpenAI | None = None
        self._client_loop: asyncio.AbstractEventLoop | None = None

    def _get_client(self):
        # The SDK's HTTP pool belongs to one event loop: make the client in the loop that uses it.
        loop = asyncio.get_running_loop()
        if self._client is None or self._client_loop is not loop:
            from openai import AsyncOpenAI

            self._client = AsyncOpenAI(api_key=self._api_key, base_url=self.base_url, max_retries=0)
            self._client_loop = loop
        return self._client

    async def stream(
        self, messages: list[ChatMessage], *, max_tokens: int, deadline: float
    ) -> AsyncGenerator[Chunk, None]:
        response = await self._open(messages, max_tokens=max_tokens, deadline=deadline)
        pieces = 0
        finish = None
        usage = None
        try:
            async for event in response:
                if getattr(event, "usage", None) is not None:
                    usage = event.usage
                for choice in event.choices or ():
                    text = getattr(choice.delta, "content", None) or ""
                    finish = choice.finish_reason or finish
                    if text:
                        pieces += 1
                        yield Chunk(text=text)
        finally:
            await response.close()
        yield Chunk(
            prompt_tokens=getattr(usage, "prompt_tokens", None),
            completion_tokens=getattr(usage, "completion_tokens", None) or pieces,
            finish_reason=finish or "stop",
        )

    async def _open(self, messages: list[ChatMessage], *, max_tokens: int, deadline: float):
        import httpx2
        from openai import APIStatusError

        client = self._get_client()
        attempt = 0
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("the API step ran out of time")
            try:
                return await client.chat.completions.create(
                    model=self.model_name, messages=[m.as_dict() for m in messages], max_tokens=max_tokens,
                    temperature=self.temperature, stream=True, stream_options={"include_usage": True},
                    timeout=httpx2.Timeout(remaining, connect=min(_CONNECT_TIMEOUT, remaining)),
                )
            except APIStatusError as exc:
                status = exc.status_code
                if status != 429 and status < 500:
                    raise
                delay = _retry_delay(exc.response.headers, attempt)
                if attempt >= self.max_retries or time.monotonic() + delay >= deadline:
                    raise
                log.info("API LLM answered %s; retrying in %.1f s", status, delay)
                await asyncio.sleep(delay)
                attempt += 1


def _retry_delay(headers, attempt: int) -> float:
    """The server's ``Retry-After`` (seconds or ``retry-after-ms``) when given, else exponential backoff."""
    for name, scale in (("retry-after-ms", 0.001), ("retry-after", 1.0)):
        value = headers.get(name) if headers is not None else None
        if value is None:
            continue
        try:
            return max(float(value) * scale, 0.0)
        except ValueError:
            pass
    return min(_FIRST_BACKOFF * 2**attempt, _MAX_BACKOFF) * (1 - 0.25 * random.random())
