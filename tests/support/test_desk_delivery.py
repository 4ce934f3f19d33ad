"""End to end over the sandbox Bot API: a reply sent from the ticket page, submitted twice with
one form, reaches the customer once, and the page's poll sees its delivery state turn to Sent;
a new customer message shows up in the poll without a reload."""

from __future__ import annotations

import asyncio

import pytest
from asgiref.sync import sync_to_async
from django.contrib.auth import get_user_model
from django.test import Client
from django.urls import reverse

from supportbot.support.models import Message, Ticket

from ..browser import form_fields
from ..conftest import wait_until

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

USER = 7301
JSON = {"Accept": "application/json"}


def _operator_client() -> Client:
    client = Client()
    client.force_login(get_user_model().objects.create_superuser("olga", password="pw-123456-long"))
    return client


async def test_a_double_submitted_reply_reaches_the_customer_once_and_turns_sent(
        transactional_db, bot_app, customer_api):
    sent = await customer_api.send_text(USER, "/operator")
    await customer_api.wait_for_bot_message(USER, after=sent["message"]["message_id"])
    ticket = await Ticket.objects.aget(user_id=USER)
    client = await sync_to_async(_operator_client)()
    page_url = reverse("admin:support_ticket_change", args=[ticket.pk])
    poll_url = reverse("admin:support_ticket_poll", args=[ticket.pk])

    page = await sync_to_async(client.get)(page_url)
    fields = form_fields(page.content.decode(), "ticket_form")
    fields["reply"] = "Hello, Olga here. How can I help?"
    first, again = await asyncio.gather(  # a double click: two requests with one form's token
        sync_to_async(client.post, thread_sensitive=False)(page_url, fields, headers=JSON),
        sync_to_async(client.post, thread_sensitive=False)(page_url, fields, headers=JSON))
    assert first.status_code == again.status_code == 200
    assert sorted([first.json()["duplicate"], again.json()["duplicate"]]) == [False, True]
    reply_id = first.json()["id"]

    await customer_api.wait_for_bot_message(USER, predicate=lambda m: m["plain_text"].startswith("Hello, Olga"))

    async def delivery() -> str:
        data = (await sync_to_async(client.get)(poll_url, {"after": reply_id})).json()
        return next(d["label"] for d in data["deliveries"] if d["id"] == reply_id)

    deadline = asyncio.get_running_loop().time() + 5
    while await delivery() != "Sent":
        assert asyncio.get_running_loop().time() < deadline, "the poll never showed Sent"
        await asyncio.sleep(0.1)
    await asyncio.sleep(1.0)  # several outbox rounds later, still one copy
    copies = [m for m in await customer_api.bot_messages(USER) if m["plain_text"].startswith("Hello, Olga")]
    assert len(copies) == 1
    assert await Message.objects.filter(source="operator").acount() == 1

    # The customer answers: the open page's poll brings the new message.
    await customer_api.send_text(USER, "My parcel is lost")
    await wait_until(lambda: Message.objects.filter(text="My parcel is lost").exists())
    data = (await sync_to_async(client.get)(poll_url, {"after": reply_id})).json()
    assert any("My parcel is lost" in item["html"] for item in data["items"])
