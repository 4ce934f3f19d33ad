"""Local GGUF engines: llama.cpp (``llama-cpp-python``) and GPT4All (``gpt4all``).

Both are synchronous and run only in the local step's worker thread
(:mod:`supportbot.llm.local`). Constructors store settings; ``load()`` reads the
model (``use_mmap=False`` where the engine has it: first touches of mapped pages
are very slow on small VMs); ``generate()`` streams text pieces to a callback
that returns False to stop early (timeout, customer gone).
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from supportbot.llm.base import ChatMessage, Chunk
from supportbot.llm.prompt import (
    GATE_ANSWER_PROMPT,
    GATE_SYSTEM_PROMPT,
    GROUNDED,
    REFUSAL_MARKER,
    answer_language,
)

log = logging.getLogger(__name__)

_ENTRY = re.compile(r"^\[\d+\] Q: ", re.MULTILINE)

#: Receives each new piece of text; returns False to stop generating.
OnText = Callable[[str], bool]


class Engine(Protocol):
    name: str
    path: Path

    def load(self) -> None: ...

    def generate(self, messages: list[ChatMessage], *, max_tokens: int, on_text: OnText) -> Chunk:
        """Stream the completion to ``on_text``; return the usage (a final :class:`Chunk`)."""
        ...

    def close(self) -> None: ...


class LlamaCppEngine:
    """llama.cpp through ``llama-cpp-python``; the chat template comes from the GGUF file."""

    name = "llama.cpp"

    def __init__(self, path: Path, *, threads: int = 2, context_size: int = 4096,
                 entry_gate: float | None = None) -> None:
        self.path = path
        self.threads = threads
        self.context_size = context_size
        #: Refuse when the model's probability of "no FAQ entry answers this" reaches this
        #: (grounded prompts only; None: the model writes the refusal marker itself).
        self.entry_gate = entry_gate
        # llama_cpp.Llama once loaded: its TypedDict messages and responses are stricter than the
        # plain dicts used here, so the handle stays untyped.
        self._llm: Any = None

    def load(self) -> None:
        if self._llm is not None:
            return
        # llama.cpp's OpenMP threads spin while they wait; on a busy 2-core machine (embedding,
        # speech and other processes) that made generation ~40x slower. Read once, when
        # libgomp loads with llama_cpp; an explicit OMP_WAIT_POLICY wins.
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
        try:
            from llama_cpp import Llama
        except ImportError:
            raise RuntimeError("LOCAL_LLM_ENGINE=llama.cpp needs llama-cpp-python: install supportbot[llm]") from None

        self._llm = Llama(
            model_path=str(self.path), n_ctx=self.context_size, n_threads=self.threads,
            n_threads_batch=self.threads, n_batch=512, use_mmap=False, verbose=False,
        )

    def generate(self, messages: list[ChatMessage], *, max_tokens: int, on_text: OnText) -> Chunk:
        self.load()
        assert self._llm is not None
        processors = None
        if self.entry_gate is not None and messages and GROUNDED in messages[-1].content:
            entry, no_entry = self._choose_entry(messages[-1])
            log.debug("entry gate: P(no entry)=%.3f, entry %s", no_entry, entry)
            if no_entry >= self.entry_gate:
                on_text(REFUSAL_MARKER)
                return Chunk(prompt_tokens=int(self._llm.n_tokens), completion_tokens=1, finish_reason="stop")
            if messages[0].content == GATE_SYSTEM_PROMPT:  # LLM_ANSWER_MODE=choose: the choice is the reply
                on_text(str(entry))
                return Chunk(prompt_tokens=int(self._llm.n_tokens), completion_tokens=1, finish_reason="stop")
            # The same conversation goes on, so llama.cpp reuses everything it evaluated.
            messages = [ChatMessage("system", GATE_SYSTEM_PROMPT), messages[-1],
                        ChatMessage("assistant", str(entry)),
                        ChatMessage("user", GATE_ANSWER_PROMPT.format(
                            entry=entry, language=answer_language(messages[-1].content)))]
            processors = self._ban_first(self._marker_token())
        pieces = 0
        finish = None
        stream = self._llm.create_chat_completion(
            messages=[m.as_dict() for m in messages], max_tokens=max_tokens, stream=True,
            temperature=0.0, top_k=1, repeat_penalty=1.05, logits_processor=processors,
        )
        try:
            for chunk in stream:
                choice = chunk["choices"][0]
                text = choice.get("delta", {}).get("content") or ""
                finish = choice.get("finish_reason") or finish
                if text:
                    pieces += 1
                    if not on_text(text):
                        finish = "cancelled"
                        break
        finally:
            stream.close()
        # The context now holds the prompt and the completion: the prompt is the rest.
        total = int(self._llm.n_tokens)
        return Chunk(prompt_tokens=max(total - pieces, 0), completion_tokens=pieces, finish_reason=finish)

    def _choose_entry(self, grounded: ChatMessage) -> tuple[int, float]:
        """The entry the model would name first, and its probability of naming none ("0")."""
        import numpy as np
        from llama_cpp import LogitsProcessorList

        digits = {d: self._llm.tokenize(str(d).encode(), add_bos=False, special=False)[0] for d in range(10)}
        seen: dict[str, Any] = {}

        def read(_ids, scores):
            if "p" not in seen:
                shifted = np.exp(scores - scores.max())
                seen["p"] = shifted / shifted.sum()
            return scores

        self._llm.create_chat_completion(
            messages=[{"role": "system", "content": GATE_SYSTEM_PROMPT}, grounded.as_dict()],
            max_tokens=1, temperature=0.0, logits_processor=LogitsProcessorList([read]),
        )
        probabilities = seen["p"]
        entries = len(_ENTRY.findall(grounded.content))
        best = max(range(1, max(entries, 1) + 1), key=lambda d: probabilities[digits[min(d, 9)]])
        return best, float(probabilities[digits[0]])

    def _marker_token(self) -> int:
        return self._llm.tokenize(REFUSAL_MARKER.encode(), add_bos=False, special=False)[0]

    @staticmethod
    def _ban_first(token: int):
        """A logits processor that forbids ``token`` as the first generated token."""
        from llama_cpp import LogitsProcessorList

        start: list[int] = []

        def ban(ids, scores):
            if not start:
                start.append(len(ids))
            if len(ids) == start[0]:
                scores[token] = -float("inf")
            return scores

        return LogitsProcessorList([ban])

    def close(self) -> None:
        llm, self._llm = self._llm, None
        if llm is not None:
            llm.close()


#: GPT4All has no chat template for sideloaded models: ChatML, which Qwen2.5 uses, is given explicitly.
CHATML_SYSTEM = "<|im_start|>system\n{0}<|im_end|>\n"
CHATML_PROMPT = "<|im_start|>user\n{0}<|im_end|>\n<|im_start|>assistant\n"


class Gpt4AllEngine:
    """The original system's engine (``gpt4all``), with explicit ChatML templates.

    GPT4All tokenises the customer's part of the prompt without special tokens,
    so a customer cannot open a fake ``<|im_start|>system`` turn.
    """

    name = "gpt4all"

    def __init__(self, path: Path, *, threads: int = 2, context_size: int = 4096,
                 system_template: str = CHATML_SYSTEM, prompt_template: str = CHATML_PROMPT) -> None:
        self.path = path
        self.threads = threads
        self.context_size = context_size
        self.system_template = system_template
        self.prompt_template = prompt_template
        self._model = None

    def load(self) -> None:
        if self._model is not None:
            return
        try:
            from gpt4all import GPT4All
        except ImportError:
            raise RuntimeError("LOCAL_LLM_ENGINE=gpt4all needs gpt4all: install supportbot[llm]") from None

        self._model = GPT4All(
            self.path.name, model_path=str(self.path.parent), allow_download=False, device="cpu",
            n_threads=self.threads, n_ctx=self.context_size, verbose=False,
        )

    def generate(self, messages: list[ChatMessage], *, max_tokens: int, on_text: OnText) -> Chunk:
        self.load()
        assert self._model is not None
        system = "\n\n".join(m.content for m in messages if m.role == "system")
        # One user turn: the prompt builder puts context and history into it.
        prompt = "\n\n".join(m.content for m in messages if m.role != "system")
        pieces = 0
        stopped = False

        def callback(_token_id: int, text: str) -> bool:
            nonlocal pieces, stopped
            pieces += 1
            if text and not on_text(text):
                stopped = True
                return False
            return True

        with self._model.chat_session(self.system_template.format(system), self.prompt_template):
            self._model.generate(prompt, max_tokens=max_tokens, temp=0.0, top_k=1, n_batch=256,
                                 repeat_penalty=1.05, callback=callback)
            total = int(self._model.model.context.n_past)
        finish = "cancelled" if stopped else ("length" if pieces >= max_tokens else "stop")
        return Chunk(prompt_tokens=max(total - pieces, 0), completion_tokens=pieces, finish_reason=finish)

    def close(self) -> None:
        model, self._model = self._model, None
        if model is not None:
            model.close()


def build_engine(engine: str, path: Path, *, threads: int, context_size: int,
                 entry_gate: float | None = None) -> Engine:
    if engine == "gpt4all":
        return Gpt4AllEngine(path, threads=threads, context_size=context_size)
    if engine == "llama.cpp":
        return LlamaCppEngine(path, threads=threads, context_size=context_size, entry_gate=entry_gate)
    raise ValueError(f"unknown local LLM engine {engine!r}")
