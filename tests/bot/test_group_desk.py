"""The operators' Telegram forum group as a second desk (``OPERATOR_CHAT_ID``), end to end: the
unmodified bot polls the sandbox Bot API over HTTP, a customer writes in a private chat, an
operator writes in the customer's topic of a forum supergroup.

Asserted as the people involved see it: the topic's name and what is posted into it, the reply
in the customer's chat (once, even when Telegram delivers the operator's update again), the
message log's operator, the topic closed and re-created in the sandbox.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
from asgiref.sync import sync_to_async
from django.contrib.auth import get_user_model
from django.utils import timezone

from supportbot.config import SANDBOX_BOT_TOKEN
from supportbot.support import services
from supportbot.support.models import ForumTopic, Message, OperatorAccount, Ticket

from ..conftest import wait_until

pytestmark = [pytest.mark.django_db(transaction=True)]

GROUP = -1001500000001
CUSTOMER = 6101
ANNA = {"id": 701, "first_name": "Anna", "username": "anna_support"}  # linked to the staff user "anna"
STRANGER = {"id": 702, "first_name": "Bohdan"}  # in the group, not linked


def use_group_desk(settings, chat_id: int = GROUP) -> None:
    """``OPERATOR_CHAT_ID`` for this test: the settings the support app reads (the admin's and the
    bot's records) and, through ``BotApp(operator_chat_id=...)``, the bot's."""
    cfg = settings.SUPPORTBOT.model_copy(update={"operator_chat_id": chat_id})
    cfg.__dict__.pop("desk", None)  # computed from the fields again
    settings.SUPPORTBOT = cfg


@pytest.fixture
async def desk(settings, fake, sandbox, customer_api) -> AsyncIterator:
    """The bot with the group desk on, the forum group with the bot as admin, the linked operator."""
    from supportbot.assembly import build_pipeline
    from supportbot.bot.runner import BotApp

    use_group_desk(settings)
    await customer_api.create_group("Support team", chat_id=GROUP)
    anna = await sync_to_async(_operator)("anna", ANNA["id"])
    app = BotApp(token=SANDBOX_BOT_TOKEN, api_url=sandbox.url, default_language="en", refresh_seconds=1.0,
                 polling_timeout=1, outbox_interval=0.1, delivery_backoff=(0.2,) * 4,
                 pipeline=build_pipeline(fake, llm=None), operator_chat_id=GROUP)
    await app.start()
    try:
        yield app, anna
    finally:
        await app.stop()


def _operator(username: str, telegram_user_id: int):
    user = get_user_model().objects.create_user(username, password="x-123456-long", is_staff=True,
                                                first_name=username.capitalize())
    OperatorAccount.objects.create(user=user, telegram_user_id=telegram_user_id, telegram_username=username)
    return user


def _ticket(user_id: int = CUSTOMER) -> Ticket:
    return Ticket.objects.filter(user_id=user_id).order_by("-id").first()


async def _hand_over(customer_api, text: str = "My parcel arrived broken, what now?") -> Ticket:
    """The customer asks something the (empty) FAQ cannot answer: handed over to a person."""
    sent = await customer_api.send_text(CUSTOMER, text, first_name="Olena", last_name="Petrenko", username="olena_p")
    await customer_api.wait_for_bot_message(CUSTOMER, after=sent["message"]["message_id"],
                                            predicate=lambda m: "operator" in m["plain_text"])
    return await wait_until(lambda: (t := _ticket()) is not None and t.status == Ticket.Status.WITH_OPERATOR and t)


async def _topic(customer_api) -> dict:
    async def found():
        topics = [t for t in await customer_api.topics(GROUP) if not t["deleted"]]
        return topics[-1] if topics else None

    for _ in range(200):
        topic = await found()
        if topic is not None:
            return topic
        await asyncio.sleep(0.05)
    raise AssertionError(f"no topic in the group: {await customer_api.topics(GROUP)}")


async def _topic_closed(customer_api, closed: bool) -> None:
    """Wait until the customer's topic is closed (or open): the bot does it right after a post."""
    for _ in range(200):
        if (await _topic(customer_api))["closed"] is closed:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"the topic is not {'closed' if closed else 'open'}: {await customer_api.topics(GROUP)}")


async def _topic_text(customer_api, thread: int, needle: str, *, after: int = 0) -> dict:
    return await customer_api.wait_for_group_message(GROUP, thread_id=thread, after=after,
                                                     predicate=lambda m: needle in (m["plain_text"] or ""))


async def test_hand_over_opens_a_topic_and_an_operators_reply_there_reaches_the_customer_once(desk, customer_api):
    _app, anna = desk
    ticket = await _hand_over(customer_api)

    topic = await _topic(customer_api)
    assert topic["name"] == f"Olena Petrenko @olena_p · #{ticket.pk}"
    thread = topic["message_thread_id"]
    handed = await _topic_text(customer_api, thread, "handed over")
    assert f"Ticket #{ticket.pk}" in handed["plain_text"]
    assert "My parcel arrived broken, what now?" in handed["plain_text"]  # the conversation so far

    # The customer writes again while waiting: copied into the topic.
    await customer_api.send_text(CUSTOMER, "Order 4412, the screen is cracked.", first_name="Olena")
    copy = await _topic_text(customer_api, thread, "Order 4412", after=handed["message_id"])
    assert copy["plain_text"] == "👤 Order 4412, the screen is cracked."

    # Anna answers in the topic: the customer gets it once, and the log says Anna answered.
    before = len(await customer_api.bot_messages(CUSTOMER))
    posted = await customer_api.send_group_text(GROUP, ANNA, "Sorry! We send a new one today.", thread_id=thread)
    reply = await customer_api.wait_for_bot_message(
        CUSTOMER, predicate=lambda m: m["plain_text"] == "Sorry! We send a new one today.")
    row = await wait_until(lambda: Message.objects.select_related("operator").filter(
        direction=Message.Direction.OUT, source=Message.Source.OPERATOR, delivery_status=Message.Delivery.SENT).first())
    assert row.operator == anna and row.ticket_id == ticket.pk
    assert row.telegram_message_id == reply["message_id"]
    assert (await sync_to_async(_ticket)()).status == Ticket.Status.ANSWERED

    # Telegram delivers the same update again (its confirmation got lost): nothing more is sent.
    await customer_api.requeue_update(posted["update_id"])
    await customer_api.requeue_update(posted["update_id"])
    await asyncio.sleep(1.0)
    after = await customer_api.bot_messages(CUSTOMER)
    assert len(after) == before + 1
    assert [m["plain_text"] for m in after].count("Sorry! We send a new one today.") == 1
    assert await Message.objects.filter(source=Message.Source.OPERATOR, direction=Message.Direction.OUT).acount() == 1
    # The topic does not echo Anna's own reply back to her.
    texts = [m["plain_text"] for m in await customer_api.group_messages(GROUP, thread_id=thread) if m["from"] == "bot"]
    assert not any("Sorry! We send" in (t or "") for t in texts)


async def test_a_web_reply_and_a_web_close_show_in_the_topic_which_closes(desk, customer_api):
    _app, anna = desk
    ticket = await _hand_over(customer_api)
    thread = (await _topic(customer_api))["message_thread_id"]
    await _topic_text(customer_api, thread, "handed over")

    await sync_to_async(services.do_operator_reply)(ticket=ticket, operator=anna, text="Checking with the courier.")
    await customer_api.wait_for_bot_message(CUSTOMER,
                                            predicate=lambda m: m["plain_text"] == "Checking with the courier.")
    await _topic_text(customer_api, thread, "💬 Anna (web): Checking with the courier.")

    # Closed in the web admin (the same service the admin calls): a notice, then the topic closes.
    await sync_to_async(services.close_ticket)(ticket=ticket, operator=anna, reason="closed by operator")
    await _topic_text(customer_api, thread, f"Ticket #{ticket.pk} closed by Anna")
    await _topic_closed(customer_api, True)


async def test_close_and_resolve_in_the_topic(desk, customer_api):
    _app, _anna = desk
    ticket = await _hand_over(customer_api)
    thread = (await _topic(customer_api))["message_thread_id"]
    handed = await _topic_text(customer_api, thread, "handed over")

    await customer_api.send_group_text(GROUP, ANNA, "/resolve", thread_id=thread)
    await _topic_text(customer_api, thread, f"Ticket #{ticket.pk} resolved by Anna", after=handed["message_id"])
    assert (await sync_to_async(_ticket)()).status == Ticket.Status.RESOLVED
    await _topic_closed(customer_api, True)
    # The customer is asked to rate the help (the rating question of the resolve).
    await customer_api.wait_for_bot_message(CUSTOMER, predicate=lambda m: "rate" in m["plain_text"].lower())

    # A closed topic takes no more members' messages (Telegram: only admins write there); the
    # customer asks for a person again: the same topic, opened again; /close closes the ticket.
    await customer_api.send_text(CUSTOMER, "/operator", first_name="Olena", last_name="Petrenko", username="olena_p")
    await wait_until(lambda: _ticket().status == Ticket.Status.WITH_OPERATOR)
    await _topic_text(customer_api, thread, "🙋", after=handed["message_id"])
    await _topic_closed(customer_api, False)
    await customer_api.send_group_text(GROUP, ANNA, "/close", thread_id=thread)
    await wait_until(lambda: _ticket().status == Ticket.Status.CLOSED)
    await _topic_text(customer_api, thread, "closed by Anna (closed in the operators' group)")


async def test_a_later_ticket_reuses_the_topic_and_a_deleted_topic_is_recreated(desk, customer_api):
    _app, anna = desk
    first = await _hand_over(customer_api)
    topic = await _topic(customer_api)
    thread = topic["message_thread_id"]
    await _topic_text(customer_api, thread, "handed over")
    await sync_to_async(services.close_ticket)(ticket=first, operator=anna)
    await _topic_text(customer_api, thread, "closed by Anna")

    # A new ticket of the same customer: the same topic, renamed after the new ticket.
    second = await _hand_over(customer_api, "And my second order is late.")
    assert second.pk != first.pk
    await _topic_text(customer_api, thread, "And my second order is late.")
    topics = await customer_api.topics(GROUP)
    assert len(topics) == 1 and topics[0]["name"] == f"Olena Petrenko @olena_p · #{second.pk}"
    assert not topics[0]["closed"]  # opened again before the hand-over was posted

    # Someone deletes the topic by hand: the next post creates it again and goes there.
    await customer_api.delete_topic(GROUP, thread)
    await customer_api.send_text(CUSTOMER, "Hello? Anyone there?", first_name="Olena")
    new_topic = await _topic(customer_api)
    assert new_topic["message_thread_id"] != thread and new_topic["name"] == topics[0]["name"]
    await _topic_text(customer_api, new_topic["message_thread_id"], "Hello? Anyone there?")
    stored = await ForumTopic.objects.aget(customer_id=CUSTOMER)
    assert stored.message_thread_id == new_topic["message_thread_id"]
    # Anna answers in the new topic: it still reaches the customer.
    await customer_api.send_group_text(GROUP, ANNA, "Yes, here!", thread_id=new_topic["message_thread_id"])
    await customer_api.wait_for_bot_message(CUSTOMER, predicate=lambda m: m["plain_text"] == "Yes, here!")


async def test_what_is_not_sent_from_the_group_and_who_is_told(desk, customer_api):
    app, _anna = desk
    await _hand_over(customer_api)
    thread = (await _topic(customer_api))["message_thread_id"]
    handed = await _topic_text(customer_api, thread, "handed over")
    customer_messages = len(await customer_api.bot_messages(CUSTOMER))

    # A group member not linked to an operator account: told how to link, nothing sent.
    await customer_api.send_group_text(GROUP, STRANGER, "I can help!", thread_id=thread)
    told = await _topic_text(customer_api, thread, "not linked to an operator", after=handed["message_id"])
    assert "Operator accounts" in told["plain_text"] and "702" in told["plain_text"]

    # A sticker (no text): not sent; the operator is told.
    await customer_api.send_group_sticker(GROUP, ANNA, thread_id=thread)
    await _topic_text(customer_api, thread, "Only text is sent", after=told["message_id"])

    # A topic that is not a customer's (the team's own): plain text ignored, a command answered.
    own = await app.bot.create_forum_topic(GROUP, "Team chat")
    await customer_api.send_group_text(GROUP, ANNA, "Lunch at 1?", thread_id=own.message_thread_id)
    await customer_api.send_group_text(GROUP, ANNA, "/close", thread_id=own.message_thread_id)
    await _topic_text(customer_api, own.message_thread_id, "does not belong to a customer")
    # The General topic: the team's conversation, left alone.
    await customer_api.send_group_text(GROUP, ANNA, "Good morning all")
    await asyncio.sleep(0.8)

    assert len(await customer_api.bot_messages(CUSTOMER)) == customer_messages
    assert not await Message.objects.filter(source=Message.Source.OPERATOR, direction=Message.Direction.OUT).aexists()
    assert (await sync_to_async(_ticket)()).status == Ticket.Status.WITH_OPERATOR
    own_topic = [m for m in await customer_api.group_messages(GROUP, thread_id=own.message_thread_id)
                 if m["from"] == "bot" and m["kind"] == "text"]
    assert len(own_topic) == 1  # only the answer to /close
    # Nobody in the group became a customer.
    assert not await Ticket.objects.filter(user_id__in=[ANNA["id"], STRANGER["id"]]).aexists()


async def test_an_overdue_ticket_is_recalled_in_its_topic(desk, customer_api):
    app, _anna = desk
    ticket = await _hand_over(customer_api)
    thread = (await _topic(customer_api))["message_thread_id"]
    await _topic_text(customer_api, thread, "handed over")
    await Ticket.objects.filter(pk=ticket.pk).aupdate(waiting_since=timezone.now() - timedelta(minutes=42))
    await app.overdue.check_once()  # the bot's reminder loop, once
    reminder = await _topic_text(customer_api, thread, "⏰")
    assert reminder["plain_text"].startswith(f"⏰ Ticket #{ticket.pk}: Olena Petrenko @olena_p has been waiting 42 min")


async def test_telegram_failing_around_a_post_neither_loses_nor_doubles_it(desk, customer_api):
    """createForumTopic answers 500 once: the hand-over is retried and lands once, in one topic.
    closeForumTopic answers 429 after the close notice went out: the notice stays posted once
    (the row is sent; only the topic stays open)."""
    _app, anna = desk
    await customer_api.inject_fault("createForumTopic", 500, chat_id=GROUP)
    ticket = await _hand_over(customer_api)
    thread = (await _topic(customer_api))["message_thread_id"]
    await _topic_text(customer_api, thread, "handed over")
    assert len(await customer_api.topics(GROUP)) == 1

    await customer_api.inject_fault("closeForumTopic", 429, chat_id=GROUP, retry_after=1)
    await sync_to_async(services.close_ticket)(ticket=ticket, operator=anna)
    await _topic_text(customer_api, thread, "closed by Anna")
    await asyncio.sleep(1.5)
    texts = [m["plain_text"] for m in await customer_api.group_messages(GROUP, thread_id=thread) if m["from"] == "bot"]
    assert sum("closed by Anna" in (t or "") for t in texts) == 1
    assert sum("handed over" in (t or "") for t in texts) == 1
    notice = await Message.objects.filter(direction=Message.Direction.DESK, text__contains="closed by").aget()
    assert notice.delivery_status == Message.Delivery.SENT
