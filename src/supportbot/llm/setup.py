"""The LLM fallback as the settings describe it: which steps, which models, which limits."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from supportbot.llm.chain import AnswerChain, ChainStep, StepReport
from supportbot.llm.local import LocalAnswerer

if TYPE_CHECKING:
    from supportbot.config import LlmSettings

log = logging.getLogger(__name__)


@dataclass
class LlmFallback:
    """What the answer pipeline needs to try the LLM steps after an FAQ miss."""

    chain: AnswerChain
    #: FAQ entries given as grounding (nearest by the matcher, even below its threshold).
    context_entries: int = 3
    #: Earlier messages of the ticket given as history.
    history_messages: int = 4
    #: LLM answers per customer per hour; 0: no limit.
    max_calls_per_hour: int = 20
    #: At most one Telegram edit per this many seconds while an answer streams.
    stream_edit_seconds: float = 1.0
    #: The local step, for warming it up at start-up.
    local: LocalAnswerer | None = None
    #: ``LLM_ANSWER_MODE``: ``answer`` (a written answer that passes the fact check is sent),
    #: ``choose`` (the model names an FAQ entry, whose own answer is sent verbatim) or
    #: ``draft`` (the checked answer is kept for the operator; the customer is handed over).
    answer_mode: str = "answer"
    #: Written answers must pass :mod:`supportbot.llm.factcheck`. Off only where the
    #: words do not matter (tests of streaming and delivery with scripted models).
    check_facts: bool = True


def build_local_answerer(llm: LlmSettings, *, models_dir: Path) -> LocalAnswerer:
    """The local step's model (not loaded: that happens in its worker, on first use).

    A process keeps one and shares it between its pipelines (``assembly.Process``).
    """
    from supportbot.background import run_in_background
    from supportbot.llm.engines import build_engine
    from supportbot.llm.model_files import PACKAGED_MODEL, resolve_model

    gate = llm.local_entry_gate if llm.local_entry_gate < 1 else None

    def make_engine():
        # Joining the bundled model (first run) must not slow anyone's answers.
        path = run_in_background(resolve_model, llm.local_model, models_dir, name="llm-join")
        return build_engine(llm.local_engine, path, threads=llm.local_threads,
                            context_size=llm.local_context_size, entry_gate=gate)

    name = PACKAGED_MODEL if llm.local_model is None else Path(llm.local_model).name
    return LocalAnswerer(make_engine, model_name=name, max_waiting=llm.local_queue)


def build_fallback(llm: LlmSettings, *, local: LocalAnswerer | None = None) -> LlmFallback | None:
    """The chain the settings describe; None when every LLM step is off (FAQ miss -> hand-over).

    ``local``: the process's local model, required when ``LOCAL_LLM_ENABLED``.
    """
    steps: list[ChainStep] = []
    off: list[StepReport] = []
    if llm.local_enabled:
        if local is None:
            raise ValueError("the local LLM step is on: pass the process's local answerer")
        steps.append(ChainStep(local, llm.local_timeout))
    else:
        local = None
        off.append(StepReport("local_llm", "", "off", "LOCAL_LLM_ENABLED=false"))
    if not llm.api_enabled:
        off.append(StepReport("api_llm", "", "off", "API_LLM_ENABLED=false"))
    elif llm.openai_api_key is None:
        log.warning("API LLM step off: OPENAI_API_KEY is not set")
        off.append(StepReport("api_llm", "", "off", "OPENAI_API_KEY is not set"))
    else:
        from supportbot.llm.api import ApiAnswerer

        api = ApiAnswerer(api_key=llm.openai_api_key.get_secret_value(), model=llm.openai_model,
                          base_url=llm.openai_base_url, max_retries=llm.api_retries)
        steps.append(ChainStep(api, llm.api_timeout))
    if not steps:
        return None
    chain = AnswerChain(steps, max_tokens=llm.max_tokens, max_answer_chars=llm.max_answer_chars, off=off)
    return LlmFallback(chain, context_entries=llm.context_entries, history_messages=llm.history_messages,
                       max_calls_per_hour=llm.max_calls_per_hour, stream_edit_seconds=llm.stream_edit_seconds,
                       local=local, answer_mode=llm.answer_mode)
