"""The API step through the real ``openai`` SDK: a real OpenAI-compatible server, and every way one fails."""

from __future__ import annotations

import itertools
import socket
import time

import pytest

from supportbot.llm.api import ApiAnswerer
from supportbot.llm.chain import AnswerChain, ChainStep
from supportbot.llm.prompt import build_messages

from ..llm_helpers import FakeOpenAI, ScriptedAnswerer

MESSAGES = build_messages("Is delivery free over 2000 UAH?", entries=[], language="en")


@pytest.fixture
async def fake_api():
    server = await FakeOpenAI(token_delay=0.01).start()
    try:
        yield server
    finally:
        await server.close()


def _chain(base_url: str, *, timeout: float = 5.0, retries: int = 2) -> tuple[AnswerChain, ScriptedAnswerer]:
    """The API step, then a stand-in for "the next step" that always answers."""
    api = ApiAnswerer(api_key="sk-test", model="fake-model", base_url=base_url, max_retries=retries)
    after = ScriptedAnswerer("The next step answered.", source="local_llm")
    return AnswerChain([ChainStep(api, timeout), ChainStep(after, 5)]), after


async def test_streams_an_answer_with_usage(fake_api):
    chain, after = _chain(fake_api.url)
    result = await chain.run(MESSAGES)
    assert result.source == "api_llm" and result.model == "fake-model"
    assert result.text == "Delivery is free over 1500 UAH."
    assert result.prompt_tokens == 123 and result.completion_tokens == 6
    assert not after.calls
    request = fake_api.requests[0]
    assert request["stream"] is True and request["model"] == "fake-model" and request["max_tokens"] == 256
    assert [m["role"] for m in request["messages"]] == ["system", "user"]


async def test_connection_refused_moves_on_at_once():
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    chain, _ = _chain(f"http://127.0.0.1:{port}/v1")
    started = time.monotonic()
    result = await chain.run(MESSAGES)
    assert time.monotonic() - started < 3
    assert result.steps[0].outcome == "error" and "Connection" in result.steps[0].detail
    assert result.source == "local_llm"


async def test_429_is_retried_after_retry_after(fake_api):
    fake_api.script = [("status", 429, {"Retry-After": "1"})]
    chain, after = _chain(fake_api.url)
    result = await chain.run(MESSAGES)
    assert result.source == "api_llm" and len(fake_api.requests) == 2
    assert fake_api.request_times[1] - fake_api.request_times[0] >= 0.95  # waited as told
    assert not after.calls


async def test_a_retry_after_longer_than_the_step_gives_up_at_once(fake_api):
    fake_api.script = [("status", 429, {"Retry-After": "30"})]
    chain, _ = _chain(fake_api.url, timeout=3)
    started = time.monotonic()
    result = await chain.run(MESSAGES)
    assert time.monotonic() - started < 1.5 and len(fake_api.requests) == 1
    assert result.steps[0].outcome == "error" and "RateLimitError" in result.steps[0].detail
    assert result.source == "local_llm"


async def test_500_is_retried_with_backoff_then_given_up(fake_api):
    fake_api.script = [("status", 500, {}), ("status", 502, {}), ("status", 503, {})]
    chain, _ = _chain(fake_api.url, retries=2)
    result = await chain.run(MESSAGES)
    assert len(fake_api.requests) == 3  # the first try and two retries
    gaps = [b - a for a, b in itertools.pairwise(fake_api.request_times)]
    assert gaps[0] >= 0.3 and gaps[1] >= 0.7  # 0.5 s, then 1 s, less up to 25% jitter
    assert result.steps[0].outcome == "error" and result.source == "local_llm"


async def test_a_500_then_success_answers(fake_api):
    fake_api.script = [("status", 500, {})]
    chain, _ = _chain(fake_api.url)
    assert (await chain.run(MESSAGES)).source == "api_llm"


async def test_a_hanging_response_times_out(fake_api):
    fake_api.script = ["hang"]
    chain, _ = _chain(fake_api.url, timeout=1.0)
    started = time.monotonic()
    result = await chain.run(MESSAGES)
    assert 0.9 <= time.monotonic() - started < 3
    assert result.steps[0].outcome in ("timeout", "error") and result.source == "local_llm"


async def test_malformed_json_is_an_error_not_a_crash(fake_api):
    fake_api.script = ["malformed"]
    chain, _ = _chain(fake_api.url)
    result = await chain.run(MESSAGES)
    assert result.steps[0].outcome == "error" and result.source == "local_llm"


async def test_a_client_error_is_not_retried(fake_api):
    fake_api.script = [("status", 401, {})]
    chain, _ = _chain(fake_api.url)
    result = await chain.run(MESSAGES)
    assert len(fake_api.requests) == 1 and "AuthenticationError" in result.steps[0].detail


# -- a real OpenAI-compatible server: llama-cpp-python's, serving the tiny GGUF -------------------
@pytest.fixture(scope="module")
def llama_server():
    """``python -m llama_cpp.server`` on a free port, started and stopped by the test suite."""
    import subprocess
    import sys
    import urllib.request

    from ..llm_helpers import smollm2_path

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    process = subprocess.Popen(
        [sys.executable, "-m", "llama_cpp.server", "--model", str(smollm2_path()), "--model_alias", "smollm2",
         "--host", "127.0.0.1", "--port", str(port), "--n_ctx", "1024", "--n_threads", "2",
         "--use_mmap", "false", "--verbose", "false"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    url = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                with urllib.request.urlopen(f"{url}/models", timeout=2):
                    break
            except OSError:
                if process.poll() is not None:
                    raise RuntimeError(f"llama_cpp.server exited: {process.stderr.read().decode()[-2000:]}") from None
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.mark.slow
async def test_a_real_openai_compatible_server_through_the_openai_sdk(llama_server):
    from supportbot.llm.base import ChatMessage

    api = ApiAnswerer(api_key="sk-local", model="smollm2", base_url=llama_server)
    messages = [ChatMessage("system", "You are a friendly assistant."), ChatMessage("user", "Say hello to Olena.")]
    chunks = [c async for c in api.stream(messages, max_tokens=16, deadline=time.monotonic() + 60)]
    texts = [c.text for c in chunks if c.text]
    assert len(texts) > 3 and "".join(texts).strip()  # streamed, token by token
    assert chunks[-1].completion_tokens == len(texts) and chunks[-1].finish_reason in ("stop", "length")

    # In the chain: the answer is recorded as the API step's, with its model and timings.
    after = ScriptedAnswerer("not needed")
    result = await AnswerChain([ChainStep(api, 60), ChainStep(after, 5)], max_tokens=48).run(messages)
    step = result.steps[0]
    assert step.source == "api_llm" and step.model == "smollm2" and step.first_token_ms is not None
    # SmolLM2 may talk until max_tokens: that is a refusal ("too long") and the next step answers.
    assert step.outcome in ("answered", "too long")
    assert result.source == ("api_llm" if step.outcome == "answered" else "local_llm")
