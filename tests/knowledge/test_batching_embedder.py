import threading

import numpy as np

from supportbot.knowledge.batching import BatchingEmbedder

from ..fakes import BagOfWordsEmbedder


class SlowEmbedder(BagOfWordsEmbedder):
    def __init__(self):
        super().__init__()
        self.gate = threading.Event()

    def embed(self, texts):
        self.gate.wait(5)
        return super().embed(texts)


def test_concurrent_questions_share_model_calls_and_get_their_own_vectors():
    inner = SlowEmbedder()
    batcher = BatchingEmbedder(inner, max_batch=8)
    texts = [f"question number {i}" for i in range(20)]
    results: dict[int, np.ndarray] = {}

    def ask(i):
        results[i] = batcher.embed([texts[i]])[0]

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(20)]
    for t in threads:
        t.start()
    inner.gate.set()
    for t in threads:
        t.join(10)
    expected = BagOfWordsEmbedder().embed(texts)
    for i in range(20):
        assert np.allclose(results[i], expected[i])
    assert batcher.model_calls < 20 and max(len(c) for c in inner.calls) <= 8
    assert sum(len(c) for c in inner.calls) == 20  # nobody embedded twice


def test_errors_reach_every_waiter():
    class Broken(BagOfWordsEmbedder):
        def embed(self, texts):
            raise RuntimeError("model failed")

    batcher = BatchingEmbedder(Broken())
    try:
        batcher.embed(["x"])
    except RuntimeError as exc:
        assert "model failed" in str(exc)
    else:
        raise AssertionError("expected the model's error")
    assert batcher.embed.__self__._busy is False
