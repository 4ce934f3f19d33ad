"""End-to-end: a customer talks to the unmodified bot through the sandbox Bot API
over real HTTP; the default (real) embedding model answers from the sample FAQ."""

from __future__ import annotations

import json

import pytest
from asgiref.sync import sync_to_async
from django.contrib.auth import get_user_model

from supportbot.support import services
from supportbot.support.models import FaqEntry, Feedback, Message, Ticket

from ..conftest import wait_until

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

UK_USER, RU_USER, EN_USER = 5001, 5002, 5003


def _buttons(msg: dict) -> list[dict]:
    markup = msg.get("reply_markup") or {}
    return [b for row in markup.get("inline_keyboard", []) for b in row]


def _ticket(user_id: int) -> Ticket:
    return Ticket.objects.filter(user_id=user_id).order_by("-id").first()


async def _ask(api, user_id: int, text: str, language: str) -> tuple[dict, dict]:
    sent = await api.send_text(user_id, text, language_code=language, first_name="Olena")
    reply = await api.wait_for_bot_message(user_id, after=sent["message"]["message_id"])
    return sent, reply


@pytest.mark.parametrize(
    ("user_id", "language", "question", "key", "helpful_label"),
    [
        (UK_USER, "uk", "Скільки коштує доставка додому?", "delivery-cost-uk", "Корисно"),
        (RU_USER, "ru", "Как вернуть товар, который не подошёл?", "returns-ru", "Полезно"),
        (EN_USER, "en", "How can I track my parcel?", "order-tracking-en", "Helpful"),
    ],
)
async def test_faq_answer_in_the_customers_language_with_buttons(
    sample_faq, bot_app, customer_api, user_id, language, question, key, helpful_label
):
    entry = await FaqEntry.objects.aget(key=key)
    _, reply = await _ask(customer_api, user_id, question, language)

    assert reply["plain_text"] == entry.answer  # intact: < & * _ [ included
    labels = [b["text"] for b in _buttons(reply)]
    assert any(helpful_label in label for label in labels) and len(labels) == 2

    out = await Message.objects.select_related("faq_entry").aget(
        direction="out", source="faq", ticket__user_id=user_id)
    assert out.faq_entry.key == key
    assert out.score is not None and out.score > 0.6  # the entry's cosine
    assert out.processing_ms is not None
    # The bot confirms the send after Telegram's answer reached it, a moment after the customer saw it.
    assert await wait_until(lambda: Message.objects.filter(
        pk=out.pk, telegram_message_id=reply["message_id"]).exists())
    incoming = await Message.objects.aget(direction="in", ticket__user_id=user_id)
    assert incoming.text == question and incoming.source == "user"


async def test_helpful_click_stores_feedback_and_removes_buttons(sample_faq, bot_app, customer_api):
    _, reply = await _ask(customer_api, EN_USER, "Can I pay for a laptop in installments?", "en")
    helpful = next(b for b in _buttons(reply) if "Helpful" in b["text"] and "Not" not in b["text"])
    callback_id = await customer_api.press(EN_USER, reply["message_id"], helpful["callback_data"])
    answer = await customer_api.wait_for_callback_answer(callback_id)
    assert answer["show_alert"] is False

    feedback = await wait_until(lambda: Feedback.objects.select_related("message").first())
    assert feedback.helpful is True
    assert await wait_until(lambda: Message.objects.filter(
        pk=feedback.message_id, telegram_message_id=reply["message_id"]).exists())
    ticket = await sync_to_async(_ticket)(EN_USER)
    assert ticket.status == Ticket.Status.OPEN

    # The buttons go with an edit, which Telegram counts like a message: within a second of the
    # answer it waits for the chat's next slot (bot.limits).
    await customer_api.wait_for_bot_message(
        EN_USER, after=reply["message_id"] - 1, timeout=3,
        predicate=lambda m: m["message_id"] == reply["message_id"] and not m.get("reply_markup"))

    # A second click on the same answer (stale) changes nothing.
    again = await customer_api.press(EN_USER, reply["message_id"], helpful["callback_data"])
    assert (await customer_api.wait_for_callback_answer(again))["show_alert"] is True
    assert await Feedback.objects.acount() == 1


async def test_not_helpful_hands_over_and_bot_then_stays_quiet(sample_faq, bot_app, customer_api):
    _, reply = await _ask(customer_api, UK_USER, "Де зараз моя посилка, як її відстежити?", "uk")
    not_helpful = next(b for b in _buttons(reply) if "Не допомогло" in b["text"])
    await customer_api.press(UK_USER, reply["message_id"], not_helpful["callback_data"])
    notice = await customer_api.wait_for_bot_message(UK_USER, after=reply["message_id"])
    assert "оператору" in notice["plain_text"]

    ticket = await sync_to_async(_ticket)(UK_USER)
    assert ticket.status == Ticket.Status.WITH_OPERATOR
    feedback = await Feedback.objects.aget()
    assert feedback.helpful is False

    # During hand-over the bot does not auto-answer; the customer was already told
    # a person will reply, so FAQ-answerable questions get nothing more.
    for text in ("Скільки коштує доставка?", "Алло?"):
        sent = await customer_api.send_text(UK_USER, text, language_code="uk")
        await wait_until(lambda text=text: Message.objects.filter(direction="in", text=text).exists())
        with pytest.raises(TimeoutError):
            await customer_api.wait_for_bot_message(UK_USER, after=sent["message"]["message_id"], timeout=1.0)
    assert await Message.objects.filter(ticket__user_id=UK_USER, source="faq").acount() == 1
    assert await Message.objects.filter(ticket=ticket, direction="in").acount() == 3


async def test_hand_over_notice_is_sent_once(sample_faq, bot_app, customer_api):
    _, first = await _ask(customer_api, EN_USER, "Can you recommend a good pizza recipe?", "en")
    assert "passed your question to an operator" in first["plain_text"]
    # The operator replied, the customer writes again: told once that a person is on it.
    ticket = await sync_to_async(_ticket)(EN_USER)
    operator = await sync_to_async(get_user_model().objects.create_user)("op", password="x-123456-long")
    await sync_to_async(services.do_operator_reply)(ticket=ticket, operator=operator, text="Let me check.")
    await customer_api.wait_for_bot_message(EN_USER, predicate=lambda m: m["plain_text"] == "Let me check.")
    _, waiting = await _ask(customer_api, EN_USER, "How long does delivery take?", "en")
    # No Helpful / Not helpful under a notice; the one button takes the customer back to the bot.
    assert "operator is handling" in waiting["plain_text"]
    assert [b["text"] for b in _buttons(waiting)] == ["🤖 Ask the bot instead"]
    again = await customer_api.send_text(EN_USER, "Hello?")
    with pytest.raises(TimeoutError):
        await customer_api.wait_for_bot_message(EN_USER, after=again["message"]["message_id"], timeout=1.0)
    assert not await Message.objects.filter(source="faq").aexists()


async def test_unknown_question_is_handed_over(sample_faq, bot_app, customer_api):
    _, reply = await _ask(customer_api, EN_USER, "Can you recommend a good pizza recipe?", "en")
    assert "operator" in reply["plain_text"]
    assert [b["text"] for b in _buttons(reply)] == ["🤖 Ask the bot instead"]  # no Helpful / Not helpful
    ticket = await sync_to_async(_ticket)(EN_USER)
    assert ticket.status == Ticket.Status.WITH_OPERATOR
    change = await ticket.status_changes.filter(new_status="with_operator").aget()
    assert change.actor == "bot" and "no confident" in change.reason
    assert not await Message.objects.filter(source="faq").aexists()
    assert await Message.objects.filter(source="system", ticket=ticket).aexists()


async def test_empty_faq_hands_everything_over(transactional_db, bot_app, customer_api):
    _, reply = await _ask(customer_api, EN_USER, "How long does delivery take?", "en")
    assert "operator" in reply["plain_text"]
    assert (await sync_to_async(_ticket)(EN_USER)).status == Ticket.Status.WITH_OPERATOR


async def test_operator_command_hands_over_and_commands_are_not_questions(sample_faq, bot_app, customer_api):
    _, reply = await _ask(customer_api, RU_USER, "/operator", "ru")
    assert "оператору" in reply["plain_text"]
    ticket = await sync_to_async(_ticket)(RU_USER)
    assert ticket.status == Ticket.Status.WITH_OPERATOR
    change = await ticket.status_changes.filter(new_status="with_operator").aget()
    assert change.actor == "customer"

    _, help_reply = await _ask(customer_api, EN_USER, "/help", "en")
    assert "/operator" in help_reply["plain_text"]
    _, unknown = await _ask(customer_api, EN_USER, "/delivery", "en")
    assert "/operator" in unknown["plain_text"]  # an unknown command gets help, not an FAQ lookup
    assert not await Message.objects.filter(source="faq").aexists()


async def test_start_greets_by_name_in_the_users_language(transactional_db, bot_app, customer_api):
    _, reply = await _ask(customer_api, UK_USER, "/start", "uk")
    assert reply["plain_text"].startswith("Вітаю, Olena!")
    _, reply = await _ask(customer_api, 5009, "/start", "de")  # unsupported -> DEFAULT_LANGUAGE
    assert reply["plain_text"].startswith("Hello, Olena!")


@pytest.mark.parametrize("kind", ["sticker", "photo", "document"])
async def test_other_kinds_get_a_polite_reply_and_are_logged(transactional_db, bot_app, customer_api, kind):
    sent = await customer_api.send_kind(EN_USER, kind, language_code="en")
    reply = await customer_api.wait_for_bot_message(EN_USER, after=sent["message"]["message_id"])
    assert "text and voice" in reply["plain_text"]
    logged = await Message.objects.aget(direction="in", ticket__user_id=EN_USER)
    assert logged.kind == kind


async def test_forged_and_foreign_callbacks_change_nothing(sample_faq, bot_app, customer_api):
    _, reply = await _ask(customer_api, EN_USER, "What are your opening hours?", "en")
    button = _buttons(reply)[0]
    other_user = 5077
    await _ask(customer_api, other_user, "hello", "en")  # gives the other user a chat

    forged = [
        (EN_USER, reply["message_id"], "fb:999999:1"),        # no such answer
        (EN_USER, reply["message_id"], "fb:not-a-number:1"),  # malformed
        (EN_USER, reply["message_id"], "x" * 40),             # not ours at all
        (EN_USER, reply["message_id"], json.dumps({"a": 1})),
    ]
    for user, message_id, data in forged:
        callback_id = await customer_api.press(user, message_id, data)
        assert (await customer_api.wait_for_callback_answer(callback_id))["show_alert"] is True

    # Someone else's (valid) callback data, pressed from another chat.
    other_messages = await customer_api.messages(other_user)
    callback_id = await customer_api.press(other_user, other_messages[-1]["message_id"], button["callback_data"])
    answer = await customer_api.wait_for_callback_answer(callback_id)
    assert answer["show_alert"] is True and "not for you" in answer["text"]

    assert await Feedback.objects.acount() == 0
    ticket = await sync_to_async(_ticket)(EN_USER)
    assert ticket.status == Ticket.Status.OPEN


async def test_long_message_and_markup_characters_go_through(transactional_db, bot_app, customer_api):
    tricky = "Use code <WELCOME_10> & get *10%* off [today] `now` _really_ </b> &amp;"
    long_answer = ("Delivery details. " * 278).strip()[:5000]  # a 5,000-character answer
    assert len(long_answer) == 5000
    await sync_to_async(FaqEntry.objects.create)(
        key="tricky", question="Which promo code can I use?", answer=tricky, language="en")
    await sync_to_async(FaqEntry.objects.create)(
        key="long", question="Tell me everything about parcel lockers", answer=long_answer, language="en")
    await wait_until(lambda: bot_app.pipeline.index.entry_count == 2, timeout=3)

    _, reply = await _ask(customer_api, EN_USER, "Which promo code can I use?", "en")
    assert reply["plain_text"] == tricky

    sent = await customer_api.send_text(EN_USER, "Tell me everything about parcel lockers")
    first = await customer_api.wait_for_bot_message(EN_USER, after=sent["message"]["message_id"])
    last = await customer_api.wait_for_bot_message(EN_USER, after=first["message_id"])
    assert len(first["plain_text"]) <= 4096 and _buttons(last)
    assert (first["plain_text"] + " " + last["plain_text"]) == long_answer

    # Telegram apps split what a person types at 4096 characters: the longest
    # customer message is stored intact.
    huge = "Please help. " + "x" * 4083
    assert len(huge) == 4096
    sent = await customer_api.send_text(EN_USER, huge)
    await customer_api.wait_for_bot_message(EN_USER, after=sent["message"]["message_id"])
    logged = await Message.objects.aget(direction="in", text__startswith="Please help.")
    assert logged.text == huge


async def test_a_failure_gets_an_apology_and_a_person(transactional_db, sandbox, customer_api):
    from supportbot.assembly import build_pipeline
    from supportbot.bot.runner import BotApp
    from supportbot.config import SANDBOX_BOT_TOKEN
    from supportbot.pipeline import AnswerPipeline

    class CrashingPipeline(AnswerPipeline):
        async def answer(self, question, **kwargs):
            raise RuntimeError("model crashed")

    app = BotApp(token=SANDBOX_BOT_TOKEN, api_url=sandbox.url, polling_timeout=1,
                 pipeline=CrashingPipeline(build_pipeline().index))
    await app.start()
    try:
        _, reply = await _ask(customer_api, UK_USER, "Де моя посилка?", "uk")
    finally:
        await app.stop()
    assert reply["plain_text"].startswith("Вибачте, у нас сталася помилка")
    assert await Message.objects.filter(direction="in", text="Де моя посилка?").aexists()
    assert (await sync_to_async(_ticket)(UK_USER)).status == Ticket.Status.WITH_OPERATOR
