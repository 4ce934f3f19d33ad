"""The GPT4All engine (the original system's) behind the same Answerer protocol.

GPT4All cannot load SmolLM2, so this one test uses the default model: Qwen2.5 1.5B,
assembled from its pip parts into the data dir (once per machine and data dir)."""

from __future__ import annotations

import time

import pytest

from supportbot.config import get_settings
from supportbot.llm.base import Answerer, ChatMessage
from supportbot.llm.chain import AnswerChain, ChainStep
from supportbot.llm.engines import Gpt4AllEngine
from supportbot.llm.local import LocalAnswerer
from supportbot.llm.model_files import packaged_model_path

pytestmark = pytest.mark.slow


async def test_gpt4all_loads_the_default_model_and_answers_through_the_protocol():
    path = packaged_model_path(get_settings().model_dir)
    answerer = LocalAnswerer(lambda: Gpt4AllEngine(path, threads=2, context_size=1024), model_name=path.name)
    assert isinstance(answerer, Answerer)
    messages = [ChatMessage("system", "You are a helpful assistant. Reply with one short sentence."),
                ChatMessage("user", "What is the capital of France?")]
    try:
        chunks = [c async for c in answerer.stream(messages, max_tokens=24, deadline=time.monotonic() + 240)]
        text = "".join(c.text for c in chunks)
        assert "Paris" in text
        usage = chunks[-1]
        assert usage.prompt_tokens > 10 and usage.completion_tokens >= 1
        # The same engine inside the chain: the answer is recorded with its model and timings.
        result = await AnswerChain([ChainStep(answerer, 240)], max_tokens=24).run(messages)
        assert result.source == "local_llm" and "Paris" in result.text and result.model == path.name
        assert result.first_token_ms is not None and result.total_ms >= result.first_token_ms
    finally:
        answerer.close()
