"""The FAQ improves with use: operators' tools in the admin.

* a customer question whose FAQ answer was marked Helpful becomes a phrasing of
  that entry with one click;
* saving an entry whose question already matches another entry confidently
  warns about the near-duplicate and names it.
"""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from django.urls import reverse

from supportbot import assembly
from supportbot.support.models import FaqEmbedding, FaqEntry, FaqPhrasing, Feedback, Message, TelegramUser, Ticket

from ..fakes import SHOP, BagOfWordsEmbedder

pytestmark = pytest.mark.django_db(transaction=True)



@pytest.fixture
def fake(monkeypatch):
    fake = BagOfWordsEmbedder(dim=1024)
    monkeypatch.setattr("supportbot.assembly.default_embedder", lambda: fake)
    assembly.reset()  # a fresh index for this test's database
    yield fake
    assembly.reset()


@pytest.fixture
def shop(fake):
    entries = {}
    for key, (question, phrasings) in SHOP.items():
        entries[key] = FaqEntry.objects.create(key=key, question=question, answer=f"ANSWER {key}")
        for text in phrasings:
            FaqPhrasing.objects.create(entry=entries[key], text=text)
    return entries


@pytest.fixture
def operator_client():
    client = Client()
    client.force_login(get_user_model().objects.create_superuser("op", password="pw-123456-long"))
    return client


def _faq_answer(entry: FaqEntry, question: str, *, helpful: bool | None) -> Message:
    user = TelegramUser.objects.create(id=70000 + Message.objects.count(), first_name="Olena")
    ticket = Ticket.objects.create(user=user)
    asked = Message.objects.create(ticket=ticket, direction="in", text=question, source="user")
    answer = Message.objects.create(ticket=ticket, direction="out", text=entry.answer, source="faq",
                                    faq_entry=entry, score=0.93, in_reply_to=asked, delivery_status="sent")
    if helpful is not None:
        Feedback.objects.create(message=answer, helpful=helpful)
    return answer


def _messages(response) -> list[str]:
    return [str(m) for m in response.context["messages"]]


def test_helpful_question_becomes_a_phrasing_with_one_click(shop, operator_client):
    answer = _faq_answer(shop["delivery"], "my parcel is late, where is it??", helpful=True)
    page = operator_client.get(reverse("admin:support_ticket_change", args=[answer.ticket_id]))
    url = reverse("admin:support_message_add_as_phrasing", args=[answer.pk])
    assert f'formaction="{url}"' in page.content.decode() and "Add question as phrasing" in page.content.decode()

    response = operator_client.post(url, follow=True)  # the one click
    assert response.status_code == 200
    phrasing = FaqPhrasing.objects.get(entry=shop["delivery"], text="my parcel is late, where is it??")
    assert any("as a phrasing" in m and "delivery" in m for m in _messages(response))
    # Embedded after commit like any FAQ change, so the running bots serve it.
    assert FaqEmbedding.objects.filter(phrasing=phrasing).exists()

    # Done once: the button turns into a mark, a second click adds nothing.
    page = operator_client.get(reverse("admin:support_ticket_change", args=[answer.ticket_id]))
    assert "Add question as phrasing" not in page.content.decode() and "✓ in FAQ" in page.content.decode()
    response = operator_client.post(url, follow=True)
    assert FaqPhrasing.objects.filter(entry=shop["delivery"], text__startswith="my parcel").count() == 1
    assert any("already" in m for m in _messages(response))

    # The feedback list offers the same button.
    other = _faq_answer(shop["refund"], "still no refund after two weeks", helpful=True)
    listing = operator_client.get(reverse("admin:support_feedback_changelist"))
    assert reverse("admin:support_message_add_as_phrasing", args=[other.pk]) in listing.content.decode()


def test_only_helpful_faq_answers_qualify(shop, operator_client):
    unhelpful = _faq_answer(shop["refund"], "refund please", helpful=False)
    unrated = _faq_answer(shop["refund"], "refund now", helpful=None)
    for answer in (unhelpful, unrated):
        page = operator_client.get(reverse("admin:support_ticket_change", args=[answer.ticket_id]))
        assert "Add question as phrasing" not in page.content.decode()
        url = reverse("admin:support_message_add_as_phrasing", args=[answer.pk])
        response = operator_client.post(url, follow=True)
        assert any("Helpful" in m for m in _messages(response))
    assert not FaqPhrasing.objects.filter(text__in=["refund please", "refund now"]).exists()
    # A GET never changes anything.
    helpful = _faq_answer(shop["refund"], "where is my refund", helpful=True)
    operator_client.get(reverse("admin:support_message_add_as_phrasing", args=[helpful.pk]))
    assert not FaqPhrasing.objects.filter(text="where is my refund").exists()


def _entry_form(key: str, question: str) -> dict:
    return {"key": key, "question": question, "answer": "An answer.", "language": "en", "is_active": "on",
            "phrasings-TOTAL_FORMS": "0", "phrasings-INITIAL_FORMS": "0",
            "phrasings-MIN_NUM_FORMS": "0", "phrasings-MAX_NUM_FORMS": "1000"}


def test_admin_warns_about_a_near_duplicate_entry_and_names_it(shop, operator_client):
    add = reverse("admin:support_faqentry_add")
    response = operator_client.post(add, _entry_form("delivery-again", "how long does delivery take"), follow=True)
    warnings = [m for m in _messages(response) if "Near-duplicate" in m]
    assert len(warnings) == 1 and "“delivery”" in warnings[0]
    assert FaqEntry.objects.filter(key="delivery-again").exists()  # a warning, not a refusal

    response = operator_client.post(add, _entry_form("gift-cards", "do you sell gift cards"), follow=True)
    assert not [m for m in _messages(response) if "Near-duplicate" in m]

    # Editing an entry does not flag the entry itself.
    refund = shop["refund"]
    data = _entry_form("refund", "when do i get my money back")
    data.update({"phrasings-TOTAL_FORMS": "0"})
    response = operator_client.post(reverse("admin:support_faqentry_change", args=[refund.pk]), data, follow=True)
    assert not [m for m in _messages(response) if "Near-duplicate" in m]
