"""The chain: steps in order, each with its own timeout; any failure or refusal moves on."""

from __future__ import annotations

import asyncio
import itertools
import time

from supportbot.llm.chain import AnswerChain, ChainStep, StepReport
from supportbot.llm.prompt import REFUSAL_MARKER, build_messages

from ..llm_helpers import ScriptedAnswerer

MESSAGES = build_messages("Is delivery free over 2000 UAH?", entries=[], language="en")


class RecordingStream:
    def __init__(self) -> None:
        self.shown: list[str] = []
        self.discarded = 0

    async def show(self, text: str) -> None:
        self.shown.append(text)

    async def discard(self) -> None:
        self.discarded += 1


async def test_local_answer_wins_and_the_api_is_not_called():
    local = ScriptedAnswerer("Yes, orders over 1500 UAH ship free.")
    api = ScriptedAnswerer("API answer", source="api_llm")
    stream = RecordingStream()
    result = await AnswerChain([ChainStep(local, 5), ChainStep(api, 5)]).run(MESSAGES, stream=stream)
    assert result.source == "local_llm" and result.text == "Yes, orders over 1500 UAH ship free."
    assert result.prompt_tokens == 42 and result.completion_tokens == 7
    assert result.first_token_ms is not None and result.total_ms is not None
    assert not api.calls
    # The stream saw the answer grow, word by word, ending with the whole of it.
    assert len(stream.shown) >= 5 and stream.shown[-1] == result.text
    assert all(b.startswith(a) for a, b in itertools.pairwise(stream.shown))
    assert stream.discarded == 0


async def test_error_timeout_busy_and_refusal_each_move_on_to_the_next_step():
    for first, outcome in [
        (ScriptedAnswerer(fail=ConnectionRefusedError("refused")), "error"),
        (ScriptedAnswerer("slow " * 50, delay=0.2), "timeout"),
        (ScriptedAnswerer(busy=True), "busy"),
        (ScriptedAnswerer(REFUSAL_MARKER), "refused"),
        (ScriptedAnswerer(""), "empty"),
        (ScriptedAnswerer("word " * 400), "too long"),
    ]:
        api = ScriptedAnswerer("From the API.", source="api_llm", model_name="gpt-test")
        started = time.monotonic()
        result = await AnswerChain([ChainStep(first, 0.5), ChainStep(api, 5)]).run(MESSAGES)
        assert time.monotonic() - started < 3
        assert result.steps[0].outcome == outcome, (outcome, result.steps[0])
        assert result.source == "api_llm" and result.model == "gpt-test" and result.text == "From the API."
        assert first.closed == (0 if outcome in ("error", "busy") else 1)  # the generator was closed


async def test_no_step_answers_then_the_result_explains_why():
    chain = AnswerChain(
        [ChainStep(ScriptedAnswerer(REFUSAL_MARKER), 5),
         ChainStep(ScriptedAnswerer(fail=RuntimeError("boom"), source="api_llm"), 5)],
        off=[StepReport("api_llm", "", "off", "OPENAI_API_KEY is not set")],
    )
    result = await chain.run(MESSAGES)
    assert not result.answered and result.text is None
    assert [s.outcome for s in result.steps] == ["off", "refused", "error"]
    assert "local_llm: refused" in result.summary() and "RuntimeError: boom" in result.summary()


async def test_a_rejected_answer_that_was_already_streaming_is_taken_back():
    # Starts like an answer, then turns into the system prompt (a gullible model).
    gullible = ScriptedAnswerer(obey=True, delay=0.001)
    api = ScriptedAnswerer("The grounded answer.", source="api_llm")
    stream = RecordingStream()
    result = await AnswerChain([ChainStep(gullible, 5), ChainStep(api, 5)]).run(MESSAGES, stream=stream)
    assert result.steps[0].outcome in ("repeated the system prompt", "refused")
    assert stream.discarded == 1
    assert stream.shown[-1] == "The grounded answer."
    # At most a few words of the system prompt were ever on screen.
    assert all(len(text.split()) < 8 for text in stream.shown[:-1])


async def test_the_refusal_marker_is_never_streamed():
    stream = RecordingStream()
    result = await AnswerChain([ChainStep(ScriptedAnswerer(REFUSAL_MARKER), 5)]).run(MESSAGES, stream=stream)
    assert not result.answered and stream.shown == [] and stream.discarded == 0


async def test_a_step_timeout_bounds_even_a_step_that_ignores_its_deadline():
    class Stuck:
        source, model_name = "api_llm", "stuck"

        async def stream(self, messages, *, max_tokens, deadline):
            await asyncio.sleep(3600)
            yield  # pragma: no cover

    started = time.monotonic()
    result = await AnswerChain([ChainStep(Stuck(), 0.3)]).run(MESSAGES)
    assert result.steps[0].outcome == "timeout" and time.monotonic() - started < 2
