"""The LLM fallback as the settings describe it: which steps, which models, which limits."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from supportbot.llm.chain import AnswerChain, ChainStep, StepReport
from supportbot.llm.local import LocalAnswerer

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


@lru_cache(maxsize=4)
def shared_local_answerer(engine: str, model: Path | None, models_dir: Path, threads: int,
                          queue: int, context_size: int, entry_gate: float | None = None) -> LocalAnswerer:
    """One local model per process (and per configuration): every pipeline shares it."""
    from supportbot.background import run_in_background
    from supportbot.llm.engines import build_engine
    from supportbot.llm.model_files import PACKAGED_MODEL, resolve_model

    def make_engine():
        # Joining the bundled model (first run) must not slow anyone's answers.
        path = run_in_background(resolve_model, model, models_dir, name="llm-join")
        return build_engine(engine, path, threads=threads, context_size=context_size, entry_gate=entry_gate)

    name = PACKAGED_MODEL if model is None else Path(model).name
    return LocalAnswerer(make_engine, model_name=name, max_waiting=queue)


def build_fallback(cfg) -> LlmFallback | None:
    """The chain from settings; None when every LLM step is off (FAQ miss -> hand-over)."""
    steps: list[ChainStep] = []
    off: list[StepReport] = []
    local = None
    if cfg.local_llm_enabled:
        gate = cfg.local_llm_entry_gate if cfg.local_llm_entry_gate < 1 else None
        local = shared_local_answerer(cfg.local_llm_engine, cfg.local_llm_model, cfg.model_dir,
                                      cfg.local_llm_threads, cfg.local_llm_queue, cfg.local_llm_context_size, gate)
        steps.append(ChainStep(local, cfg.local_llm_timeout))
    else:
        off.append(StepReport("local_llm", "", "off", "LOCAL_LLM_ENABLED=false"))
    if not cfg.api_llm_enabled:
        off.append(StepReport("api_llm", "", "off", "API_LLM_ENABLED=false"))
    elif cfg.openai_api_key is None:
        log.warning("API LLM step off: OPENAI_API_KEY is not set")
        off.append(StepReport("api_llm", "", "off", "OPENAI_API_KEY is not set"))
    else:
        from supportbot.llm.api import ApiAnswerer

        api = ApiAnswerer(api_key=cfg.openai_api_key.get_secret_value(), model=cfg.openai_model,
                          base_url=cfg.openai_base_url, max_retries=cfg.api_llm_retries)
        steps.append(ChainStep(api, cfg.api_llm_timeout))
    if not steps:
        return None
    chain = AnswerChain(steps, max_tokens=cfg.llm_max_tokens, max_answer_chars=cfg.llm_max_answer_chars, off=off)
    return LlmFallback(chain, context_entries=cfg.llm_context_entries,
                       history_messages=cfg.llm_history_messages,
                       max_calls_per_hour=cfg.llm_max_calls_per_hour,
                       stream_edit_seconds=cfg.llm_stream_edit_seconds, local=local)
