"""The one place that builds the process's parts from the settings.

Settings are read once (``config.get_settings``); this module hands each part the
group it needs (``cfg.faq``, ``cfg.speech``, ``cfg.llm``, ...). The models behind the
product (the embedder, Whisper, the local LLM) are expensive, so a process holds one
of each, built on first use by its :class:`Process` (one explicit holder instead of a
cache per module). Everything below this module receives what it needs as arguments
and never reads the settings itself.

Kept free of aiogram so that ``supportbot ask``, the benchmarks and the web process
can build the same pipeline as the bot without importing the bot framework (its
types take seconds to import on a small machine).
"""

from __future__ import annotations

import enum
import threading
from collections.abc import Collection
from typing import TYPE_CHECKING

from supportbot.config import Settings, get_settings
from supportbot.knowledge.batching import BatchingEmbedder
from supportbot.knowledge.embedders import Embedder, build_embedder
from supportbot.knowledge.index import FaqIndex, configured_policy
from supportbot.knowledge.sync import sync_embeddings
from supportbot.llm.setup import LlmFallback, build_fallback, build_local_answerer
from supportbot.pipeline import AnswerPipeline

if TYPE_CHECKING:
    from supportbot.llm.local import LocalAnswerer
    from supportbot.speech.queue import TranscriptionQueue
    from supportbot.speech.transcriber import Transcriber
    from supportbot.support.voice import AudioStore


class _FromSettings(enum.Enum):
    """A default that means "as the settings say" (None is a valid value of its own)."""

    TOKEN = enum.auto()


_FROM_SETTINGS = _FromSettings.TOKEN


class Process:
    """This process's long-lived parts, each built once from ``cfg`` on first use."""

    def __init__(self, cfg: Settings) -> None:
        self.cfg = cfg
        self._lock = threading.RLock()  # checks_index() asks for the embedder while holding it
        self._embedder: Embedder | None = None
        self._transcriber: Transcriber | None = None
        self._local: LocalAnswerer | None = None
        self._checks_index: FaqIndex | None = None

    # -- the models (one each per process) ----------------------------------------------------
    @property
    def embedder(self) -> Embedder:
        with self._lock:
            if self._embedder is None:
                self._embedder = build_embedder(self.cfg.faq, model_dir=self.cfg.model_dir)
            return self._embedder

    @property
    def transcriber(self) -> Transcriber:
        from supportbot.speech.transcriber import build_transcriber

        with self._lock:
            if self._transcriber is None:
                self._transcriber = build_transcriber(self.cfg.speech, models_dir=self.cfg.model_dir)
            return self._transcriber

    def local_answerer(self) -> LocalAnswerer:
        """The local GGUF model: every pipeline of the process shares it (one worker thread)."""
        with self._lock:
            if self._local is None:
                self._local = build_local_answerer(self.cfg.llm, models_dir=self.cfg.model_dir)
            return self._local

    # -- what the front doors use ------------------------------------------------------------------
    def llm_fallback(self) -> LlmFallback | None:
        local = self.local_answerer() if self.cfg.llm.local_enabled else None
        return build_fallback(self.cfg.llm, local=local)

    def pipeline(self, embedder: Embedder | None = None, *,
                 threshold: float | _FromSettings | None = _FROM_SETTINGS,
                 llm: LlmFallback | _FromSettings | None = _FROM_SETTINGS) -> AnswerPipeline:
        """A new answer pipeline (its own index) over the process's models."""
        embedder = embedder or default_embedder()
        if threshold is _FROM_SETTINGS:
            threshold = self.cfg.faq.match_threshold
        # Questions from concurrent customers share model calls (see knowledge.batching).
        index = FaqIndex(BatchingEmbedder(embedder), configured_policy(embedder.name, threshold, self.cfg.faq))
        if llm is _FROM_SETTINGS:
            llm = self.llm_fallback()
        return AnswerPipeline(index, llm=llm)

    def checks_index(self) -> FaqIndex:
        """An index for checks outside the bot (the admin's near-duplicate warning)."""
        with self._lock:
            if self._checks_index is None:
                embedder = default_embedder()
                self._checks_index = FaqIndex(
                    embedder, configured_policy(embedder.name, self.cfg.faq.match_threshold, self.cfg.faq))
            return self._checks_index

    def speech_queue(self, transcriber: Transcriber | None = None) -> TranscriptionQueue:
        from supportbot.speech.queue import TranscriptionQueue

        speech = self.cfg.speech
        return TranscriptionQueue(transcriber or default_transcriber(), concurrency=speech.concurrency,
                                  max_waiting=speech.queue_size, max_seconds=speech.max_seconds,
                                  languages=speech.languages)

    def audio_store(self) -> AudioStore:
        from supportbot.support.voice import AudioStore

        return AudioStore.from_settings(self.cfg.speech, data_dir=self.cfg.data_dir)


_process: Process | None = None
_process_lock = threading.Lock()


def process() -> Process:
    """The process's parts, built from the settings on first use (and again only where the
    settings were read anew: tests that change the environment clear ``get_settings``)."""
    global _process
    cfg = get_settings()
    with _process_lock:
        if _process is None or _process.cfg is not cfg:
            _process = Process(cfg)
        return _process


def reset() -> None:
    """Forget the process's parts (tests that change the settings; the next call rebuilds)."""
    global _process
    with _process_lock:
        _process = None


# -- short names for the front doors (tests replace ``default_embedder`` with a fake) -------------
def default_embedder() -> Embedder:
    """The process's embedder (``EMBEDDING_BACKEND``); loads its model lazily."""
    return process().embedder


def default_transcriber() -> Transcriber:
    """The process's transcriber (``WHISPER_MODEL``); loads its model lazily."""
    return process().transcriber


def build_pipeline(embedder: Embedder | None = None, *, threshold: float | _FromSettings | None = _FROM_SETTINGS,
                   llm: LlmFallback | _FromSettings | None = _FROM_SETTINGS) -> AnswerPipeline:
    """The answer pipeline; ``threshold`` (``FAQ_MATCH_THRESHOLD``) and ``llm`` (the LLM steps
    after an FAQ miss) come from the settings unless given (``llm=None``: no LLM steps)."""
    return process().pipeline(embedder, threshold=threshold, llm=llm)


def prepare_index(pipeline: AnswerPipeline) -> None:
    """Embed whatever has no vector yet (new model, interrupted import), then load.

    The question embedder is loaded here too (one question embedded), so the first
    customer does not wait for it (nothing may need embedding at start).
    """
    from supportbot.ops import health

    health.mark_loading("faq_index")  # /healthz answers 503 until the index can answer
    sync_embeddings(pipeline.index.embedder, progress=True)
    pipeline.index.embedder.embed(["warm-up"])
    pipeline.index.refresh(force=True)
    health.mark_ready("faq_index")


def sync_changed_entries(sender, *, entry_ids: Collection[int], **kwargs) -> None:
    """``support.signals.faq_changed`` -> the knowledge side, with this process's embedder."""
    from supportbot.knowledge.receivers import sync_changed_entries as sync

    sync(default_embedder(), entry_ids)
