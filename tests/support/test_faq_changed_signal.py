"""``faq_changed``: the support app's one announcement of FAQ changes, after commit.

Any receiver (the FAQ index is one, connected by ``KnowledgeConfig``) hears about a
committed change once per transaction, with the entries whose texts may have changed,
and never about a transaction that rolled back.
"""

from __future__ import annotations

import pytest
from django.db import transaction

from supportbot.support.models import FaqEmbedding, FaqEntry, FaqPhrasing
from supportbot.support.signals import faq_changed

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def heard(fake):  # ``fake``: the FAQ index's own receiver embeds with the fake model
    calls: list[set[int]] = []

    def listener(sender, *, entry_ids, **kwargs):
        calls.append(set(entry_ids))

    faq_changed.connect(listener, dispatch_uid="test_listener")
    yield calls
    faq_changed.disconnect(dispatch_uid="test_listener")


def test_one_announcement_per_committed_transaction(heard):
    with transaction.atomic():
        a = FaqEntry.objects.create(key="a", question="alpha question", answer="A")
        FaqPhrasing.objects.create(entry=a, text="alpha phrasing")
        b = FaqEntry.objects.create(key="b", question="beta question", answer="B")
        assert heard == []  # nothing before the commit
    assert heard == [{a.pk, b.pk}]

    b.delete()
    assert heard[-1] == set()  # a deletion: no text to embed, but what is served changed


def test_a_rolled_back_transaction_is_never_announced(heard):
    with pytest.raises(RuntimeError), transaction.atomic():
        FaqEntry.objects.create(key="gone", question="never committed", answer="x")
        raise RuntimeError("rolled back")
    assert heard == []
    assert not FaqEmbedding.objects.exists()  # and the FAQ index embedded nothing


def test_a_failing_receiver_does_not_fail_the_save(heard):
    def broken(sender, **kwargs):
        raise RuntimeError("receiver bug")

    faq_changed.connect(broken, dispatch_uid="test_broken")
    try:
        entry = FaqEntry.objects.create(key="c", question="gamma question", answer="C")
    finally:
        faq_changed.disconnect(dispatch_uid="test_broken")
    assert heard == [{entry.pk}]
    assert FaqEmbedding.objects.filter(entry=entry).exists()  # the index's receiver still ran
