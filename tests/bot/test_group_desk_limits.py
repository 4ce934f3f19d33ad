"""Posts to the operators' group go through the one delivery path and its send limits (a group:
20 messages a minute), in order per ticket, and a post waiting for the group's slot never holds
up the customer's own messages: the outbox orders messages per ticket *and target* (the
customer's chat, or the group) and looks at customers' messages first (``services.claim_outbox``).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
from asgiref.sync import sync_to_async
from django.utils import timezone

from supportbot.bot.limits import SendLimiter
from supportbot.config import SANDBOX_BOT_TOKEN, SendLimitSettings
from supportbot.support import services
from supportbot.support.models import Message, TelegramUser, Ticket

from ..conftest import wait_until
from .test_group_desk import ANNA, CUSTOMER, GROUP, _hand_over, _operator, _topic, use_group_desk


def _desk_post(ticket: Ticket, text: str, **fields) -> Message:
    return Message.objects.create(ticket=ticket, direction=Message.Direction.DESK, text=text,
                                  source=Message.Source.USER, delivery_status=Message.Delivery.PENDING,
                                  chat_id=GROUP, **fields)


def _ticket(user_id: int) -> Ticket:
    TelegramUser.objects.create(id=user_id, first_name=f"C{user_id}")
    return Ticket.objects.create(user_id=user_id, status=Ticket.Status.WITH_OPERATOR)


@pytest.mark.django_db
def test_a_group_post_waiting_for_its_slot_never_holds_up_the_customers_answer():
    ticket = _ticket(CUSTOMER)
    # Two copies for the topic; the first waits for the group's next slot (deferred by the limiter).
    waiting = _desk_post(ticket, "👤 first", delivery_not_before=timezone.now() + timedelta(seconds=60))
    behind = _desk_post(ticket, "👤 second")
    answer = services.record_outgoing(ticket_id=ticket.pk, text="A person will reply soon.", source="system")
    assert answer.delivery_status == Message.Delivery.PENDING

    assert [m.pk for m in services.claim_outbox(limit=10)] == [answer.pk]  # not behind the group's posts
    # The group's posts keep their own order: the second waits for the first.
    services.mark_sent(message_id=answer.pk, telegram_message_id=1)
    assert services.claim_outbox(limit=10) == []
    Message.objects.filter(pk=waiting.pk).update(delivery_not_before=None)
    assert [m.pk for m in services.claim_outbox(limit=10)] == [waiting.pk]
    services.mark_sent(message_id=waiting.pk, telegram_message_id=2)
    assert [m.pk for m in services.claim_outbox(limit=10)] == [behind.pk]

    # A message the worker records already claimed (sent at once) is not demoted behind a group post.
    _desk_post(ticket, "👤 third", delivery_not_before=timezone.now() + timedelta(seconds=60))
    now = timezone.now()
    instant = services.record_outgoing(ticket_id=ticket.pk, text="Noted.", source="system", claim=now)
    assert instant.delivery_status == Message.Delivery.SENDING


@pytest.mark.django_db
def test_a_backlog_of_group_posts_never_crowds_customers_out_of_a_claim():
    """Many posts for the group (recorded first, lower ids, all but one per ticket waiting for an
    earlier one) and one customer's answer after them: the pass still claims the answer."""
    busy = _ticket(CUSTOMER)
    for n in range(60):
        _desk_post(busy, f"👤 message {n}")
    other = _ticket(CUSTOMER + 1)
    answer = services.record_outgoing(ticket_id=other.pk, text="Here is your answer.", source="system")
    claimed = services.claim_outbox(limit=5)
    assert answer.pk in [m.pk for m in claimed]
    assert [m.text for m in claimed if m.direction == Message.Direction.DESK] == ["👤 message 0"]


LIMITS = SendLimitSettings(group_per_minute=60.0, max_wait=0.3)  # one post a second; longer waits deferred


@pytest.fixture
async def limited_desk(settings, fake, sandbox, customer_api) -> AsyncIterator:
    from supportbot.assembly import build_pipeline
    from supportbot.bot.runner import BotApp

    use_group_desk(settings)
    await customer_api.create_group("Support team", chat_id=GROUP)
    await customer_api.set_limits(enabled=True, group_per_minute=LIMITS.group_per_minute)
    anna = await sync_to_async(_operator)("anna", ANNA["id"])
    app = BotApp(token=SANDBOX_BOT_TOKEN, api_url=sandbox.url, default_language="en", refresh_seconds=1.0,
                 polling_timeout=1, outbox_interval=0.1, delivery_backoff=(0.2,) * 4,
                 pipeline=build_pipeline(fake, llm=None), operator_chat_id=GROUP, limiter=SendLimiter(LIMITS))
    await app.start()
    try:
        yield app, anna
    finally:
        await app.stop()


@pytest.mark.django_db(transaction=True)
async def test_group_posts_are_paced_and_the_customer_is_not_kept_waiting(limited_desk, customer_api):
    _, anna = limited_desk
    ticket = await _hand_over(customer_api)
    thread = (await _topic(customer_api))["message_thread_id"]

    # Five quick messages while waiting: five copies for the topic, one a second at most.
    texts = [f"Detail {n}: order 44{n}" for n in range(5)]
    for text in texts:
        await customer_api.send_text(CUSTOMER, text, first_name="Olena")
    await wait_until(lambda: Message.objects.filter(direction=Message.Direction.DESK, text__contains="Detail 4")
                     .exists())
    # Anna answers from the web meanwhile: the customer has it at once, while copies still wait.
    reply = await sync_to_async(services.do_operator_reply)(ticket=ticket, operator=anna, text="On it!")
    started = asyncio.get_running_loop().time()
    await customer_api.wait_for_bot_message(CUSTOMER, predicate=lambda m: m["plain_text"] == "On it!", timeout=5)
    assert asyncio.get_running_loop().time() - started < 2.0
    still_waiting = await Message.objects.filter(
        direction=Message.Direction.DESK, delivery_status__in=[Message.Delivery.PENDING, Message.Delivery.SENDING],
        id__lt=reply.pk).acount()
    assert still_waiting > 0  # the group's posts were not through yet, and the reply did not wait for them

    # All copies reach the topic, in order, without one 429 from the sandbox.
    for text in texts:
        await customer_api.wait_for_group_message(GROUP, thread_id=thread, timeout=15,
                                                  predicate=lambda m, text=text: text in (m["plain_text"] or ""))
    posted = [m["plain_text"] for m in await customer_api.group_messages(GROUP, thread_id=thread)
              if m["from"] == "bot" and m["kind"] == "text"]
    copies = [p for p in posted if p.startswith("👤 Detail")]
    # In the order the bot logged them (it handles a customer's updates side by side).
    logged = [t async for t in Message.objects.filter(direction=Message.Direction.IN, text__startswith="Detail")
              .order_by("id").values_list("text", flat=True)]
    assert sorted(logged) == texts and copies == [f"👤 {t}" for t in logged]
    limits = await customer_api.limits()
    assert limits["refused"] == 0, limits
