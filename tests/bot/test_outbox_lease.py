"""A bot that dies between claiming an operator's reply and recording the result.

The crash is simulated the way it leaves the database: the reply claimed through the
real ``claim_outbox`` and its claim time moved into the past, with no worker alive to
finish it. The real bot then runs against the sandbox Bot API over HTTP.

Policy (README, operators' guide): a reply left "sending" longer than the lease is
re-sent once and marked "may have arrived twice" in the ticket thread; abandoned a
second time, it is failed for good and never re-sent.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from asgiref.sync import sync_to_async
from django.contrib.auth import get_user_model
from django.db import transaction
from django.test import Client
from django.utils import timezone

from supportbot.support import services
from supportbot.support.models import Message, TelegramUser, Ticket

from ..conftest import wait_until

pytestmark = pytest.mark.django_db(transaction=True)

USER = 7101
LEASE = timedelta(seconds=300)  # the default OUTBOX_LEASE_SECONDS


def _operator():
    return get_user_model().objects.get_or_create(username="op", defaults={"is_staff": True, "is_superuser": True})[0]


def _thread(ticket_id: int) -> str:
    client = Client()
    client.force_login(_operator())
    page = client.get(f"/admin/support/ticket/{ticket_id}/change/")
    assert page.status_code == 200
    return page.content.decode()


def _claimed_by_a_worker_that_died(ticket_id: int, text: str, *, claimed_ago: timedelta,
                                   interrupted_before: bool = False) -> Message:
    """An operator reply, claimed by the real outbox claim, whose worker never reported back.

    Queued and claimed in one transaction, so the running bot never sees it pending.
    """
    with transaction.atomic():
        reply = services.do_operator_reply(ticket=Ticket.objects.get(pk=ticket_id), operator=_operator(), text=text)
        [claimed] = services.claim_outbox(limit=1)
        assert claimed.pk == reply.pk and claimed.delivery_status == Message.Delivery.SENDING
        Message.objects.filter(pk=reply.pk).update(
            delivery_claimed_at=claimed.delivery_claimed_at - claimed_ago,
            delivery_interrupted=interrupted_before, delivery_attempts=int(interrupted_before))
    return Message.objects.get(pk=reply.pk)


def _age_claim(message_id: int, by: timedelta) -> None:
    Message.objects.filter(pk=message_id).update(delivery_claimed_at=timezone.now() - by)


async def _handed_over_ticket(customer_api, user_id: int) -> Ticket:
    sent = await customer_api.send_text(user_id, "/operator")
    await customer_api.wait_for_bot_message(user_id, after=sent["message"]["message_id"])
    return await Ticket.objects.aget(user_id=user_id)


async def _copies(customer_api, user_id: int, prefix: str) -> list[dict]:
    return [m for m in await customer_api.bot_messages(user_id) if m["plain_text"].startswith(prefix)]


@pytest.mark.slow
async def test_abandoned_reply_is_resent_once_after_its_lease_and_marked(bot_app, customer_api):
    ticket = await _handed_over_ticket(customer_api, USER)
    text = "Your refund was approved <today> & is on its way."

    # Claimed 4 minutes ago: still within the lease, so its worker may be sending it right
    # now (a slow Telegram). The running bot leaves it alone.
    row = await sync_to_async(_claimed_by_a_worker_that_died)(ticket.pk, text, claimed_ago=timedelta(minutes=4))
    await asyncio.sleep(1.5)  # several outbox rounds (every 0.2 s in the tests)
    await row.arefresh_from_db()
    assert row.delivery_status == Message.Delivery.SENDING and not row.delivery_interrupted
    assert await _copies(customer_api, USER, "Your refund") == []
    page = await sync_to_async(_thread)(ticket.pk)
    assert "Sending" in page and "stuck since" not in page

    # Past the lease with no result: the worker is gone. The admin says so even before
    # a bot picks it up...
    await sync_to_async(_age_claim)(row.pk, LEASE + timedelta(seconds=5))
    # ...and the running bot re-sends it once, marked.
    delivered = await customer_api.wait_for_bot_message(
        USER, predicate=lambda m: m["plain_text"].startswith("Your refund"), timeout=5)
    assert delivered["plain_text"] == text
    row = await wait_until(lambda: Message.objects.filter(pk=row.pk, delivery_status="sent").first())
    assert row.delivery_interrupted and row.delivery_attempts == 1
    assert row.telegram_message_id == delivered["message_id"]
    assert "the bot stopped while sending this reply" in row.delivery_error

    await asyncio.sleep(1.0)  # later rounds send nothing more
    assert len(await _copies(customer_api, USER, "Your refund")) == 1
    page = await sync_to_async(_thread)(ticket.pk)
    assert "may have arrived twice" in page
    assert "Your refund was approved &lt;today&gt; &amp; is on its way." in page


@pytest.mark.slow
async def test_reply_abandoned_a_second_time_is_failed_not_resent(bot_app, customer_api):
    ticket = await _handed_over_ticket(customer_api, USER)
    row = await sync_to_async(_claimed_by_a_worker_that_died)(
        ticket.pk, "Second try of this reply", claimed_ago=LEASE + timedelta(minutes=1), interrupted_before=True)

    row = await wait_until(lambda: Message.objects.filter(pk=row.pk, delivery_status="failed").first())
    assert row.delivery_interrupted and row.delivery_attempts == 2
    assert "stopped again" in row.delivery_error and "not re-sent" in row.delivery_error
    await asyncio.sleep(1.0)
    assert await _copies(customer_api, USER, "Second try") == []
    page = await sync_to_async(_thread)(ticket.pk)
    assert "may or may not have arrived" in page and "Failed" in page


@pytest.mark.slow
async def test_replies_without_a_crash_are_claimed_sent_once_and_not_marked(bot_app, customer_api):
    ticket = await _handed_over_ticket(customer_api, USER)
    for n in range(3):
        await sync_to_async(services.do_operator_reply)(ticket=ticket, operator=await sync_to_async(_operator)(),
                                                        text=f"Plain reply {n}")
    def all_sent():
        rows = list(Message.objects.filter(source="operator", delivery_status="sent"))
        return rows if len(rows) == 3 else None

    rows = await wait_until(all_sent)
    assert all(r.delivery_claimed_at is not None and not r.delivery_interrupted and r.delivery_attempts == 0
               for r in rows)
    await asyncio.sleep(1.0)
    assert sorted(m["plain_text"] for m in await _copies(customer_api, USER, "Plain reply")) == [
        "Plain reply 0", "Plain reply 1", "Plain reply 2"]
    # Long after the lease, a sent reply is history: never recovered.
    await sync_to_async(lambda: Message.objects.filter(source="operator").update(
        delivery_claimed_at=timezone.now() - LEASE * 3))()
    assert await sync_to_async(services.requeue_abandoned)() == 0


# -- the claim as a fence, in the database (no bot) -------------------------------------
def _ticket(user_id: int = USER) -> Ticket:
    return Ticket.objects.create(user=TelegramUser.objects.create(id=user_id), status=Ticket.Status.WITH_OPERATOR)


def test_a_worker_past_its_lease_cannot_put_back_a_recovered_reply():
    ticket = _ticket()
    services.do_operator_reply(ticket=ticket, operator=_operator(), text="hello")
    [row] = services.claim_outbox()
    _age_claim(row.pk, LEASE + timedelta(seconds=1))  # worker A stalls past its lease
    a_claim = Message.objects.values_list("delivery_claimed_at", flat=True).get(pk=row.pk)
    [theirs] = services.claim_outbox()  # worker B recovers it and claims it
    assert theirs.pk == row.pk and theirs.delivery_interrupted and theirs.delivery_claimed_at > a_claim

    # A's late "network error, retry" must not move B's claimed row back to pending,
    # or a third worker would send it while B does.
    assert not services.delivery_failed(message_id=row.pk, error="timeout", final=False, claimed_at=a_claim)
    row.refresh_from_db()
    assert row.delivery_status == Message.Delivery.SENDING and row.delivery_claimed_at == theirs.delivery_claimed_at
    assert services.claim_outbox() == []  # nobody else can take it
    # B's own result counts.
    assert services.delivery_failed(message_id=row.pk, error="timeout", final=False,
                                    claimed_at=theirs.delivery_claimed_at)
    row.refresh_from_db()
    assert row.delivery_status == Message.Delivery.PENDING and row.delivery_attempts == 2


def test_recovery_is_won_once_and_leaves_unclaimed_messages_alone():
    ticket = _ticket()
    reply = services.do_operator_reply(ticket=ticket, operator=_operator(), text="hello")
    services.claim_outbox()
    _age_claim(reply.pk, LEASE * 2)
    # The bot's own answers take the same delivery path: recorded "pending", claimed by the
    # worker that sends them. One that nobody claimed yet is not a crash to recover from.
    own = services.record_outgoing(ticket_id=ticket.pk, text="FAQ answer", source=Message.Source.FAQ)
    Message.objects.filter(pk=own.pk).update(created_at=timezone.now() - LEASE * 2)

    assert services.requeue_abandoned() == 1
    assert services.requeue_abandoned() == 0  # a second worker finds nothing to recover
    assert Message.objects.get(pk=reply.pk).delivery_status == Message.Delivery.PENDING
    own.refresh_from_db()
    assert own.delivery_status == Message.Delivery.PENDING and not own.delivery_interrupted


def test_an_abandoned_bot_answer_is_recovered_like_an_operator_reply():
    ticket = _ticket()
    own = services.record_outgoing(ticket_id=ticket.pk, text="FAQ answer", source=Message.Source.FAQ,
                                   claim=timezone.now())  # recorded by a worker to send it, which died
    assert own.delivery_status == Message.Delivery.SENDING
    _age_claim(own.pk, LEASE * 2)

    assert services.requeue_abandoned() == 1
    own.refresh_from_db()
    assert own.delivery_status == Message.Delivery.PENDING and own.delivery_interrupted
    assert "may arrive twice" in own.delivery_error


def test_the_thread_shows_a_reply_stuck_past_its_lease():
    ticket = _ticket()
    reply = services.do_operator_reply(ticket=ticket, operator=_operator(), text="hello")
    services.claim_outbox()
    _age_claim(reply.pk, LEASE + timedelta(minutes=2))  # no bot running to recover it
    page = _thread(ticket.pk)
    assert "stuck since" in page and "re-sends it once" in page
