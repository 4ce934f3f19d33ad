"""The FAQ index with its classifier: tiny FAQs, languages, exclusions, live retraining.

Fast: a deterministic bag-of-words fake stands in for the embedding model.
"""

import pytest

from supportbot.knowledge.index import FaqIndex
from supportbot.knowledge.sync import sync_embeddings
from supportbot.support.models import FaqEntry, FaqPhrasing

from ..fakes import INDEX_POLICY, SHOP

pytestmark = pytest.mark.django_db(transaction=True)

POLICY = INDEX_POLICY



def _entry(key, question, phrasings=(), language="en"):
    entry = FaqEntry.objects.create(key=key, question=question, answer=f"ANSWER {key}", language=language)
    for text in phrasings:
        FaqPhrasing.objects.create(entry=entry, text=text)
    return entry


def _index(fake, policy=POLICY):
    sync_embeddings(fake)
    index = FaqIndex(fake, policy)
    index.refresh(force=True)
    return index


def test_one_entry_faq_uses_the_cosine_rule(fake):
    _entry("only", "how long does delivery take")
    index = _index(fake)
    result = index.search("how long does delivery take")
    assert result.confident and result.best.key == "only" and result.best.probability is None
    assert not index.search("completely unrelated words here").confident


def test_classifier_ranks_entries_and_hands_over_unrelated_questions(fake):
    for key, (question, phrasings) in SHOP.items():
        _entry(key, question, phrasings)
    index = _index(fake)
    result = index.search("refund not received yet")
    assert result.best.key == "refund" and result.confident
    assert 0.3 <= result.best.probability <= 1.0 and result.best.specific > 0.3
    assert result.matches[0].key == "refund" and len(result.matches) == 5
    assert not index.search("zebra quantum violin").confident


def test_same_answer_in_another_language_is_not_ambiguity(fake):
    for key, (question, phrasings) in SHOP.items():
        _entry(key, question, phrasings)
    # The same entry "translated" (identical words for the fake model) in another language.
    _entry("refund-uk", "when do i get my money back", ["refund not received yet"], language="uk")
    index = _index(fake)
    result = index.search("refund not received yet")
    assert result.best.key in {"refund", "refund-uk"} and result.confident


def test_exclude_entry_matches_as_if_it_were_gone(fake):
    entries = {key: _entry(key, q, p) for key, (q, p) in SHOP.items()}
    index = _index(fake)
    result = index.search("how long does delivery take", exclude_entry=entries["delivery"].pk)
    assert "delivery" not in [m.key for m in result.matches]


def test_refresh_retrains_on_change_and_reads_only_new_vectors(fake):
    for key, (question, phrasings) in SHOP.items():
        _entry(key, question, phrasings)
    index = _index(fake)
    loaded = index.loaded_vectors
    assert index.search("gift card birthday present").best.key != "gifts"

    _entry("gifts", "do you sell gift cards", ["gift card birthday present"])
    sync_embeddings(fake)
    assert index.refresh() is True
    assert index.loaded_vectors - loaded == 2  # incremental: only the new texts were read
    result = index.search("gift card birthday present")
    assert result.best.key == "gifts" and result.confident
    assert index.search("refund not received yet").best.key == "refund"  # rows stay aligned

    FaqEntry.objects.filter(key="gifts").update(is_active=False)
    from supportbot.knowledge.sync import bump_version

    bump_version(fake.name, all_models=True)
    index.refresh()
    assert index.search("gift card birthday present").best.key != "gifts"


def test_specific_similarity_is_the_cosine_of_centred_vectors(fake):
    from supportbot.knowledge.classifier import centre

    for key, (question, phrasings) in SHOP.items():
        _entry(key, question, phrasings)
    index = _index(fake)
    snap = index._snapshot
    question = fake.embed(["when will my refund arrive"])[0]
    expected = centre(snap.matrix, snap.classifier.mean) @ centre(question, snap.classifier.mean)
    by_key = {m.key: m.specific for m in index.search_vector(question, k=6)}
    for slot, entry_id in enumerate(snap.entry_of_slot):
        rows = snap.slot_of_row == slot
        assert by_key[snap.keys[int(entry_id)]] == pytest.approx(float(expected[rows].max()), abs=1e-5)
