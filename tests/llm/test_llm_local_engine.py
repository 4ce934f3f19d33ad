"""The local step with a real engine (llama.cpp) and a real tiny model (SmolLM2-135M).

Mechanics only: SmolLM2 answers English small talk, not support questions."""

from __future__ import annotations

import asyncio
import time

import pytest

from supportbot.llm.base import ChatMessage, StepUnavailable
from supportbot.llm.chain import AnswerChain, ChainStep
from supportbot.llm.engines import LlamaCppEngine
from supportbot.llm.local import LocalAnswerer

from ..llm_helpers import ScriptedAnswerer, smollm2_path

pytestmark = pytest.mark.slow

HELLO = [ChatMessage("system", "You are a friendly assistant."), ChatMessage("user", "Say hello to Olena.")]
COUNT = [ChatMessage("system", "You are a helpful assistant."),
         ChatMessage("user", "Count from 1 to 500, one number per line.")]


class CountingFactory:
    def __init__(self) -> None:
        self.made = 0

    def __call__(self) -> LlamaCppEngine:
        self.made += 1
        return LlamaCppEngine(smollm2_path(), threads=2, context_size=1024)


@pytest.fixture(scope="module")
def factory():
    return CountingFactory()


@pytest.fixture(scope="module")
def local(factory):
    answerer = LocalAnswerer(factory, model_name="smollm2-135m", max_waiting=1)
    yield answerer
    answerer.close()


async def _idle(answerer, timeout: float = 10.0) -> float:
    """Wait until the worker has nothing to do; return how long that took."""
    started = time.monotonic()
    while answerer.pending:
        assert time.monotonic() - started < timeout, "the local model is still busy"
        await asyncio.sleep(0.02)
    return time.monotonic() - started


async def _collect(answerer, messages, *, max_tokens=24, timeout=60.0):
    chunks = []
    async for chunk in answerer.stream(messages, max_tokens=max_tokens, deadline=time.monotonic() + timeout):
        chunks.append(chunk)
    return chunks


async def test_loads_once_and_streams_token_by_token_off_the_event_loop(local, factory):
    ticks = 0

    async def ticker():
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    task = asyncio.create_task(ticker())
    try:
        first = await _collect(local, HELLO)
        second = await _collect(local, HELLO)
    finally:
        task.cancel()
    assert factory.made == 1 and local.engine is not None  # one model for every question
    texts = [c.text for c in first if c.text]
    assert len(texts) > 3 and "".join(texts).strip()
    usage = first[-1]
    assert usage.prompt_tokens > 10 and usage.completion_tokens == len(texts)
    assert usage.finish_reason in ("stop", "length")
    assert "".join(c.text for c in second) == "".join(texts)  # greedy: the same answer again
    assert ticks > 5  # the event loop kept running while the model generated


async def test_a_timeout_stops_the_generation_and_frees_the_model(local):
    await _idle(local)
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        await _collect(local, COUNT, max_tokens=2000, timeout=0.5)
    assert time.monotonic() - started < 2
    # The worker stops at its next token, not after the remaining ~2000 tokens.
    assert await _idle(local, timeout=5) < 5
    assert [c for c in await _collect(local, HELLO, max_tokens=8) if c.text]


async def test_a_full_queue_skips_to_the_next_step(local):
    await _idle(local)
    # One question being answered, one waiting (LOCAL_LLM_QUEUE=1): the third is refused at once.
    long_answers = [asyncio.create_task(_collect(local, COUNT, max_tokens=300, timeout=60)) for _ in range(2)]
    await asyncio.sleep(0.05)
    assert local.pending == 2
    with pytest.raises(StepUnavailable, match="busy"):
        await _collect(local, HELLO)
    # Through the chain: "busy" is one more reason to try the next step, at once.
    after = ScriptedAnswerer("The API answered.", source="api_llm")
    started = time.monotonic()
    result = await AnswerChain([ChainStep(local, 30), ChainStep(after, 5)]).run(HELLO)
    assert result.steps[0].outcome == "busy" and result.source == "api_llm"
    assert time.monotonic() - started < 1
    for task in long_answers:
        task.cancel()
    await asyncio.gather(*long_answers, return_exceptions=True)
    await _idle(local)  # the running one stops at its next token, the waiting one is skipped


async def test_overlong_and_cut_off_answers_are_refusals(local):
    await _idle(local)
    result = await AnswerChain([ChainStep(local, 60)], max_answer_chars=40, max_tokens=200).run(COUNT)
    assert not result.answered and result.steps[0].outcome == "too long"
    result = await AnswerChain([ChainStep(local, 60)], max_tokens=4).run(COUNT)
    assert not result.answered and result.steps[0].outcome == "too long"  # stopped by max_tokens


async def test_a_model_that_cannot_load_is_an_error_not_a_crash(tmp_path):
    broken = tmp_path / "broken.gguf"
    broken.write_bytes(b"GGUF" + b"\0" * 64)
    answerer = LocalAnswerer(lambda: LlamaCppEngine(broken, threads=1, context_size=512), model_name="broken")
    try:
        result = await AnswerChain([ChainStep(answerer, 30)]).run(HELLO)
        assert result.steps[0].outcome == "error" and not result.answered
    finally:
        answerer.close()


async def test_the_entry_gate_refuses_before_writing_and_otherwise_lets_the_model_answer():
    """llama.cpp's first pass: the probability that no FAQ entry answers decides a refusal."""
    from supportbot.llm.prompt import ContextEntry, build_messages

    entry = ContextEntry(1, "hello", "How do I greet Olena?", "Say: Hello, Olena, nice to see you!", "en")
    messages = build_messages("How do I greet Olena?", entries=[entry], language="en")

    def answerer(gate):
        return LocalAnswerer(lambda: LlamaCppEngine(smollm2_path(), threads=2, context_size=1024, entry_gate=gate),
                             model_name="smollm2-135m")

    always_refuse, never_refuse = answerer(0.0), answerer(1.0 - 1e-9)
    try:
        refused = await AnswerChain([ChainStep(always_refuse, 60)], max_tokens=40).run(messages)
        assert refused.steps[0].outcome == "refused" and refused.steps[0].first_token_ms is not None
        allowed = await AnswerChain([ChainStep(never_refuse, 60)], max_tokens=40).run(messages)
        assert allowed.steps[0].outcome != "refused"  # the marker cannot even be its first word
    finally:
        always_refuse.close()
        never_refuse.close()
