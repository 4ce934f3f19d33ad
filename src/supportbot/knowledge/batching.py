"""Micro-batching for single-question embeddings under concurrent load.

Each customer question is embedded alone, but when many arrive at once, one
model call for all of them is much cheaper than one call each (the model runs
batches more efficiently than single sentences). No waiting is added: whoever
finds the model idle embeds everything queued so far; questions arriving
meanwhile form the next batch.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

import numpy as np

from supportbot.knowledge.embedders import Embedder


class _Slot:
    __slots__ = ("error", "text", "vector")

    def __init__(self, text: str) -> None:
        self.text = text
        self.vector: np.ndarray | None = None
        self.error: BaseException | None = None


class BatchingEmbedder:
    """Wraps an :class:`Embedder`; single-text calls from many threads share model calls."""

    def __init__(self, inner: Embedder, *, max_batch: int = 32) -> None:
        self.inner = inner
        self.name = inner.name
        self.max_batch = max_batch
        self._cv = threading.Condition()
        self._queue: list[_Slot] = []
        self._busy = False
        self.model_calls = 0  # for benchmarks and tests

    def embed_documents(self, texts: Sequence[str]) -> np.ndarray:
        return self.inner.embed_documents(texts)

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        if len(texts) != 1:
            return self.inner.embed(texts)
        slot = _Slot(texts[0])
        with self._cv:
            self._queue.append(slot)
        while True:
            with self._cv:
                while self._busy and slot.vector is None and slot.error is None:
                    self._cv.wait()
                if slot.vector is not None:
                    return slot.vector[None, :]
                if slot.error is not None:
                    raise slot.error
                # The model is idle: embed everything queued (ours included, or
                # ours comes in a later round when the queue is over max_batch).
                self._busy = True
                batch, self._queue = self._queue[: self.max_batch], self._queue[self.max_batch :]
            try:
                vectors = self.inner.embed([s.text for s in batch])
                for s, v in zip(batch, vectors, strict=True):
                    s.vector = v
            except Exception as exc:  # noqa: BLE001 - every waiter of this batch gets the error
                for s in batch:
                    s.error = exc
            finally:
                with self._cv:
                    self.model_calls += 1
                    self._busy = False
                    self._cv.notify_all()
