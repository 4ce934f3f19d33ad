"""Live re-index: FAQ changes made through the real admin form reach the running
bot within 2 seconds, without a restart and without re-embedding unchanged text."""

from __future__ import annotations

import asyncio
import itertools
import time

import pytest
from asgiref.sync import sync_to_async
from django.contrib.auth import get_user_model
from django.test import Client

from supportbot.support.models import FaqEmbedding, FaqEntry

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

USER = 6001
_CUSTOMERS = itertools.count(USER + 1000)


def _admin_client() -> Client:
    user = get_user_model().objects.create_superuser("op", password="pw-123456-long")
    client = Client()
    client.force_login(user)
    return client


def _entry_form(key: str, question: str, answer: str, phrasings: list[str], *, active: bool = True,
                existing: list[tuple[int, str]] = ()) -> dict:
    data = {
        "key": key, "question": question, "answer": answer, "language": "en",
        "phrasings-TOTAL_FORMS": str(len(existing) + len(phrasings)),
        "phrasings-INITIAL_FORMS": str(len(existing)),
        "phrasings-MIN_NUM_FORMS": "0", "phrasings-MAX_NUM_FORMS": "1000",
    }
    if active:
        data["is_active"] = "on"
    for n, (pk, text) in enumerate(existing):
        data[f"phrasings-{n}-id"] = str(pk)
        data[f"phrasings-{n}-text"] = text
    for n, text in enumerate(phrasings, start=len(existing)):
        data[f"phrasings-{n}-text"] = text
    return data


async def _served_within(api, index, question: str, expected: str | None, seconds: float = 2.0) -> float:
    """Time from the commit until the running bot's index holds the change (must be
    <= ``seconds``), then ask once as a customer: the answer must be ``expected``
    (None: handed over). Timing the index, not the chat round trip, keeps the 2 s
    guarantee measurable on a busy machine."""
    target = await sync_to_async(index.current_version)()
    started = time.monotonic()
    while index._snapshot.version < target:
        if time.monotonic() - started > seconds:
            raise AssertionError(f"the bot's FAQ index did not refresh within {seconds}s")
        await asyncio.sleep(0.02)
    delay = time.monotonic() - started
    user = next(_CUSTOMERS)  # a fresh customer: a hand-over would silence the bot
    sent = await api.send_text(user, question)
    reply = await api.wait_for_bot_message(user, after=sent["message"]["message_id"])
    got = None if "operator" in reply["plain_text"] else reply["plain_text"]
    assert got == expected
    return delay


async def test_admin_changes_are_served_live(sample_faq, bot_app, customer_api):
    client = await sync_to_async(_admin_client)()
    index = bot_app.pipeline.index
    vectors_before = set(await sync_to_async(lambda: list(FaqEmbedding.objects.values_list("id", flat=True)))())
    loaded_before = index.loaded_vectors

    # 1. Add an entry (question + 2 phrasings) through the admin's real add form.
    question = "Do you sell gift cards for birthdays?"
    response = await sync_to_async(client.post)("/admin/support/faqentry/add/", _entry_form(
        "gift-cards", question, "Yes: gift cards from 500 to 10000 UAH, sent by e-mail.",
        ["Can I buy a gift certificate?", "gift card available?"]))
    assert response.status_code == 302, response.content[:2000]
    delay = await _served_within(customer_api, index, question,
                                 "Yes: gift cards from 500 to 10000 UAH, sent by e-mail.")
    assert delay <= 2.0

    # Only the new entry's three texts were embedded; every other vector was kept
    # (same rows), and the running bot loaded exactly those three.
    vectors_after = set(await sync_to_async(lambda: list(FaqEmbedding.objects.values_list("id", flat=True)))())
    assert vectors_before <= vectors_after and len(vectors_after - vectors_before) == 3
    assert index.loaded_vectors - loaded_before == 3

    # 2. Edit the answer: served, nothing re-embedded.
    entry = await FaqEntry.objects.aget(key="gift-cards")
    phrasings = [(p.pk, p.text) async for p in entry.phrasings.all()]
    response = await sync_to_async(client.post)(f"/admin/support/faqentry/{entry.pk}/change/", _entry_form(
        "gift-cards", question, "Gift cards: 500-10000 UAH, e-mail or plastic.", [], existing=phrasings))
    assert response.status_code == 302
    await _served_within(customer_api, index, question, "Gift cards: 500-10000 UAH, e-mail or plastic.")
    assert set(await sync_to_async(lambda: list(FaqEmbedding.objects.values_list("id", flat=True)))()) == vectors_after

    # 3. Deactivate: never served again.
    response = await sync_to_async(client.post)(f"/admin/support/faqentry/{entry.pk}/change/", _entry_form(
        "gift-cards", question, "Gift cards: 500-10000 UAH, e-mail or plastic.", [], existing=phrasings,
        active=False))
    assert response.status_code == 302
    await _served_within(customer_api, index, question, None)
    for _ in range(3):
        sent = await customer_api.send_text(USER + 500 + _, question)
        reply = await customer_api.wait_for_bot_message(USER + 500 + _, after=sent["message"]["message_id"])
        assert "Gift cards" not in reply["plain_text"]

    # 4. Delete another entry through the admin's delete confirmation: never served again.
    # (Its uk/ru copies go first: they would rightly answer the question in their language.)
    await FaqEntry.objects.filter(key__in=["store-hours-pickup-uk", "store-hours-pickup-ru"]).adelete()
    hours = await FaqEntry.objects.aget(key="store-hours-pickup-en")
    response = await sync_to_async(client.post)(f"/admin/support/faqentry/{hours.pk}/delete/", {"post": "yes"})
    assert response.status_code == 302
    sent = await customer_api.send_text(USER + 900, "What are your opening hours?")
    await customer_api.wait_for_bot_message(USER + 900, after=sent["message"]["message_id"])
    await _served_within(customer_api, index, "What are your opening hours on weekends?", None)
    assert not await FaqEmbedding.objects.filter(entry_id=hours.pk).aexists()
