"""End-to-end after the operator: the unmodified bot over the sandbox Bot API (real HTTP).

An operator resolves -> the rating question with buttons 1-5 arrives in the customer's chat
-> a click stores the rating; a waiting customer presses "Ask the bot instead" and the bot
answers their next question from the FAQ. The FAQ is matched with the fast fake embedder:
these tests are about the buttons' path, not the matching.
"""

from __future__ import annotations

import pytest
from asgiref.sync import sync_to_async
from django.contrib.auth import get_user_model

from supportbot.support import services
from supportbot.support.models import CsatRating, Message, Ticket

from ..conftest import wait_until

pytestmark = pytest.mark.django_db(transaction=True)

CUSTOMER, OTHER = 5301, 5302
FAQ_QUESTION = "How much does shipping cost?"  # the sample FAQ's delivery-cost-en
MISS = "Can you recommend a good pizza recipe?"
BACK_TO_BOT = "🤖 Ask the bot instead"


@pytest.fixture
async def fake_bot(fake, sample_faq, bot_app):
    """The bot process over the sandbox, matching with the fake embedder (``fake`` first)."""
    return bot_app


def _buttons(msg: dict) -> list[dict]:
    markup = msg.get("reply_markup") or {}
    return [b for row in markup.get("inline_keyboard", []) for b in row]


def _ticket(user_id: int) -> Ticket:
    return Ticket.objects.filter(user_id=user_id).order_by("-id").first()


async def _ask(api, user_id: int, text: str, language: str = "en") -> dict:
    sent = await api.send_text(user_id, text, language_code=language, first_name="Olena")
    return await api.wait_for_bot_message(user_id, after=sent["message"]["message_id"])


async def _press(api, user_id: int, message_id: int, data: str) -> dict:
    callback_id = await api.press(user_id, message_id, data)
    return await api.wait_for_callback_answer(callback_id)


async def test_resolve_sends_rating_buttons_and_a_click_is_stored(fake_bot, customer_api):
    handed = await _ask(customer_api, CUSTOMER, MISS)
    assert "operator" in handed["plain_text"]
    operator = await sync_to_async(get_user_model().objects.create_user)("olena", password="x-123456-long")
    ticket = await sync_to_async(_ticket)(CUSTOMER)
    assert await sync_to_async(services.resolve_ticket)(ticket=ticket, operator=operator)

    question = await customer_api.wait_for_bot_message(
        CUSTOMER, after=handed["message_id"], predicate=lambda m: "Did we solve your problem?" in m["plain_text"])
    buttons = _buttons(question)
    assert [b["text"] for b in buttons] == ["1 ⭐", "2 ⭐", "3 ⭐", "4 ⭐", "5 ⭐"]
    assert all(len(b["callback_data"].encode()) <= 64 for b in buttons)

    answer = await _press(customer_api, CUSTOMER, question["message_id"], buttons[3]["callback_data"])
    assert answer["show_alert"] is False and answer["text"] == "Thank you for your rating!"
    rating = await wait_until(lambda: CsatRating.objects.first())
    assert (rating.score, rating.ticket_id, rating.operator_id) == (4, ticket.pk, operator.pk)
    row = await Message.objects.aget(pk=rating.question_id)
    assert row.telegram_message_id == question["message_id"] and row.source == Message.Source.CSAT
    # The buttons go (an edit), so the rating cannot be given twice...
    await customer_api.wait_for_bot_message(
        CUSTOMER, after=question["message_id"] - 1, timeout=3,
        predicate=lambda m: m["message_id"] == question["message_id"] and not m.get("reply_markup"))
    # ...and a second click on the old data changes nothing.
    again = await _press(customer_api, CUSTOMER, question["message_id"], buttons[0]["callback_data"])
    assert again["show_alert"] is True and "already rated" in again["text"]
    assert (await CsatRating.objects.aget()).score == 4

    # After resolve the bot answers this customer again (the same ticket, reopened for the bot).
    reply = await _ask(customer_api, CUSTOMER, FAQ_QUESTION)
    assert "1500 UAH" in reply["plain_text"] and len(_buttons(reply)) == 2  # Helpful / Not helpful
    reopened = await sync_to_async(_ticket)(CUSTOMER)
    assert reopened.pk == ticket.pk and reopened.status == Ticket.Status.OPEN


async def test_forged_and_foreign_rating_clicks_are_refused(fake_bot, customer_api):
    handed = await _ask(customer_api, CUSTOMER, MISS)
    await sync_to_async(services.resolve_ticket)(ticket=await sync_to_async(_ticket)(CUSTOMER))
    question = await customer_api.wait_for_bot_message(
        CUSTOMER, after=handed["message_id"], predicate=lambda m: "Did we solve" in m["plain_text"])
    valid = _buttons(question)[4]["callback_data"]
    row_id = valid.split(":")[1]
    await _ask(customer_api, OTHER, "hello")  # gives the other customer a chat

    for data in ("csat:999999:5", "csat:abc:1", f"csat:{row_id}:9", f"csat:{row_id}:0", f"csat:{row_id}",
                 "tobot:abc", "tobot:999999"):
        answer = await _press(customer_api, CUSTOMER, question["message_id"], data)
        assert answer["show_alert"] is True, data
    other_chat = await customer_api.messages(OTHER)
    foreign = await _press(customer_api, OTHER, other_chat[-1]["message_id"], valid)
    assert foreign["show_alert"] is True and "not for you" in foreign["text"]
    assert not await CsatRating.objects.aexists()


async def test_ask_the_bot_instead_brings_back_automatic_answers(fake_bot, customer_api):
    handed = await _ask(customer_api, CUSTOMER, MISS)
    [button] = _buttons(handed)
    assert button["text"] == BACK_TO_BOT
    # While a person owns the ticket the bot stays quiet...
    sent = await customer_api.send_text(CUSTOMER, FAQ_QUESTION, language_code="en")
    with pytest.raises(TimeoutError):
        await customer_api.wait_for_bot_message(CUSTOMER, after=sent["message"]["message_id"], timeout=1.0)

    # ...until the customer asks the bot instead.
    answer = await _press(customer_api, CUSTOMER, handed["message_id"], button["callback_data"])
    assert answer["show_alert"] is False
    told = await customer_api.wait_for_bot_message(
        CUSTOMER, after=sent["message"]["message_id"],
        predicate=lambda m: "answer your questions myself again" in m["plain_text"])
    assert not _buttons(told)
    ticket = await sync_to_async(_ticket)(CUSTOMER)
    assert ticket.status == Ticket.Status.OPEN
    change = await ticket.status_changes.alast()
    assert (change.actor, change.reason) == ("customer", "asked the bot instead")

    reply = await _ask(customer_api, CUSTOMER, FAQ_QUESTION)
    assert "1500 UAH" in reply["plain_text"] and reply["message_id"] > told["message_id"]

    # The old button does nothing now.
    stale = await _press(customer_api, CUSTOMER, handed["message_id"], button["callback_data"])
    assert stale["show_alert"] is True and "no longer active" in stale["text"]


async def test_the_bot_process_runs_the_overdue_watch(fake_bot):
    from datetime import timedelta

    # OVERDUE_MINUTES (default 30) reaches the watch; the group desk appends to its notifiers.
    assert fake_bot.overdue.overdue_after == timedelta(minutes=30)
    [task] = [t for t in fake_bot._tasks if t.get_name() == "overdue-tickets"]
    assert not task.done()
