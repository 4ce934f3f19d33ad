"""An operator's reply typed in the admin reaches the customer in Telegram exactly once."""

from __future__ import annotations

import asyncio

import pytest
from asgiref.sync import sync_to_async
from django.contrib.auth import get_user_model
from django.test import Client

from supportbot.support import services
from supportbot.support.models import FaqEntry, Message, Ticket

from ..browser import form_fields
from ..conftest import wait_until

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

USER = 7001


def _operator_client() -> Client:
    user = get_user_model().objects.create_superuser("op", password="pw-123456-long")
    client = Client()
    client.force_login(user)
    return client


async def test_reply_is_delivered_once_and_can_be_saved_to_faq(transactional_db, bot_app, customer_api):
    sent = await customer_api.send_text(USER, "Can I pay with crypto?")
    await customer_api.wait_for_bot_message(USER, after=sent["message"]["message_id"])  # handed over
    ticket = await Ticket.objects.aget(user_id=USER)
    assert ticket.status == Ticket.Status.WITH_OPERATOR

    client = await sync_to_async(_operator_client)()
    page = await sync_to_async(client.get)(f"/admin/support/ticket/{ticket.pk}/change/")
    assert page.status_code == 200 and "Can I pay with crypto?" in page.content.decode()
    fields = form_fields(page.content.decode(), "ticket_form")
    fields["reply"] = "No, only cards & bank transfer <for now>."
    response = await sync_to_async(client.post)(f"/admin/support/ticket/{ticket.pk}/change/", fields)
    assert response.status_code == 302, response.content.decode()[-3000:]

    reply = await customer_api.wait_for_bot_message(
        USER, predicate=lambda m: m["plain_text"].startswith("No, only cards"), timeout=5)
    assert reply["plain_text"] == "No, only cards & bank transfer <for now>."
    row = await wait_until(lambda: Message.objects.filter(source="operator", delivery_status="sent").first())
    assert row.telegram_message_id == reply["message_id"]
    assert row.delivery_claimed_at is not None and not row.delivery_interrupted  # no crash: never marked
    await asyncio.sleep(1.0)  # several outbox rounds later, still exactly one copy
    copies = [m for m in await customer_api.bot_messages(USER) if m["plain_text"].startswith("No, only cards")]
    assert len(copies) == 1
    await ticket.arefresh_from_db()
    assert ticket.status == Ticket.Status.ANSWERED

    # "Save to FAQ": the customer's question + the operator's answer become an entry.
    confirm = await sync_to_async(client.get)(f"/admin/support/message/{row.pk}/save-to-faq/")
    assert confirm.status_code == 200 and await FaqEntry.objects.acount() == 0
    saved = await sync_to_async(client.post)(f"/admin/support/message/{row.pk}/save-to-faq/")
    assert saved.status_code == 302
    entry = await FaqEntry.objects.aget()
    assert entry.question == "Can I pay with crypto?"
    assert entry.answer == "No, only cards & bank transfer <for now>."


async def test_blocked_customer_fails_delivery_finally(transactional_db, bot_app, customer_api):
    sent = await customer_api.send_text(USER, "/operator")
    await customer_api.wait_for_bot_message(USER, after=sent["message"]["message_id"])
    await customer_api.block(USER, True)
    ticket = await Ticket.objects.select_related("user").aget(user_id=USER)
    operator = await sync_to_async(get_user_model().objects.create_user)("op2", password="x-123456-long")
    await sync_to_async(services.do_operator_reply)(ticket=ticket, operator=operator, text="Hello?")
    row = await wait_until(lambda: Message.objects.filter(source="operator", delivery_status="failed").first())
    assert "blocked" in row.delivery_error
    await ticket.user.arefresh_from_db()
    assert ticket.user.is_blocked


def test_automatic_answers_cannot_be_saved_to_faq(db):
    from supportbot.support.models import TelegramUser

    user = TelegramUser.objects.create(id=1)
    ticket = Ticket.objects.create(user=user)
    auto = Message.objects.create(ticket=ticket, direction="out", source="faq", text="x")
    with pytest.raises(ValueError, match="operator"):
        services.save_answer_to_faq(message=auto)
