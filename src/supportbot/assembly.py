"""Building the answer pipeline from settings.

Kept free of aiogram so that ``supportbot ask``, the benchmarks and the web
process can build the same pipeline as the bot without importing the bot
framework (its types take seconds to import on a small machine).
"""

from __future__ import annotations

from supportbot.knowledge.batching import BatchingEmbedder
from supportbot.knowledge.decision import policy_for
from supportbot.knowledge.embedders import Embedder, default_embedder
from supportbot.knowledge.index import FaqIndex
from supportbot.knowledge.sync import sync_embeddings
from supportbot.llm.setup import LlmFallback, build_fallback
from supportbot.pipeline import AnswerPipeline

_FROM_SETTINGS = object()


def build_pipeline(embedder: Embedder | None = None, *, threshold: float | None = None,
                   llm: LlmFallback | None = _FROM_SETTINGS) -> AnswerPipeline:
    """``llm``: the LLM steps after an FAQ miss; by default as the settings say, None for none."""
    embedder = embedder or default_embedder()
    # Questions from concurrent customers share model calls (see knowledge.batching).
    index = FaqIndex(BatchingEmbedder(embedder), policy_for(embedder.name, threshold))
    if llm is _FROM_SETTINGS:
        from supportbot.config import get_settings

        llm = build_fallback(get_settings())
    return AnswerPipeline(index, llm=llm)


def prepare_index(pipeline: AnswerPipeline) -> None:
    """Embed whatever has no vector yet (new model, interrupted import), then load."""
    sync_embeddings(pipeline.index.embedder, progress=True)
    pipeline.index.refresh(force=True)
