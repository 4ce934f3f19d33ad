"""Building the answer pipeline from settings.

Kept free of aiogram so that ``supportbot ask``, the benchmarks and the web
process can build the same pipeline as the bot without importing the bot
framework (its types take seconds to import on a small machine).
"""

from __future__ import annotations

from supportbot.knowledge.batching import BatchingEmbedder
from supportbot.knowledge.embedders import Embedder, default_embedder
from supportbot.knowledge.index import FaqIndex, configured_policy
from supportbot.knowledge.sync import sync_embeddings
from supportbot.llm.setup import LlmFallback, build_fallback
from supportbot.pipeline import AnswerPipeline

_FROM_SETTINGS = object()


def build_pipeline(embedder: Embedder | None = None, *, threshold: float | None = _FROM_SETTINGS,
                   llm: LlmFallback | None = _FROM_SETTINGS) -> AnswerPipeline:
    """The answer pipeline; ``threshold`` (``FAQ_MATCH_THRESHOLD``) and ``llm`` (the LLM steps
    after an FAQ miss) come from the settings unless given (``llm=None``: no LLM steps)."""
    from supportbot.config import get_settings

    cfg = get_settings()
    embedder = embedder or default_embedder()
    if threshold is _FROM_SETTINGS:
        threshold = cfg.faq_match_threshold
    # Questions from concurrent customers share model calls (see knowledge.batching).
    index = FaqIndex(BatchingEmbedder(embedder), configured_policy(embedder.name, threshold))
    if llm is _FROM_SETTINGS:
        llm = build_fallback(cfg)
    return AnswerPipeline(index, llm=llm)


def prepare_index(pipeline: AnswerPipeline) -> None:
    """Embed whatever has no vector yet (new model, interrupted import), then load.

    The question embedder is loaded here too (one question embedded), so the first
    customer does not wait for it (nothing may need embedding at start).
    """
    sync_embeddings(pipeline.index.embedder, progress=True)
    pipeline.index.embedder.embed(["warm-up"])
    pipeline.index.refresh(force=True)
