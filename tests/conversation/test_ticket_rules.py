"""The conversation service on its own: ticket rules, answers, hand-overs and what goes out.

No Bot API and no aiogram: the service is called the way the bot's handlers (and
``supportbot ask``) call it, and the tests read what it recorded in the message log.
"""

from __future__ import annotations

import pytest
from asgiref.sync import sync_to_async
from django.contrib.auth import get_user_model

from supportbot.conversation import Command, ConversationService, Heard
from supportbot.support import services
from supportbot.support.models import Message, Ticket, TicketStatusChange

pytestmark = pytest.mark.django_db(transaction=True)

ALICE = services.CustomerInfo(id=8101, first_name="Alice", language_code="en")
FAQ_QUESTION = "How much does shipping cost?"  # the sample FAQ's delivery-cost-en
MISS = "Can you recommend a good pizza recipe?"


@pytest.fixture
def service(fake, sample_faq) -> ConversationService:
    from supportbot.assembly import build_pipeline, prepare_index

    pipeline = build_pipeline(fake, llm=None)
    prepare_index(pipeline)
    return ConversationService(pipeline)


def _rows(ids: list[int]) -> list[Message]:
    return services.messages_by_id(ids)


@sync_to_async
def _ticket(customer: services.CustomerInfo) -> Ticket:
    return Ticket.objects.filter(user_id=customer.id).order_by("-id").first()


async def test_a_confident_match_is_answered_and_queued_for_delivery(service):
    outcome = await service.ask(ALICE, FAQ_QUESTION, language="en", telegram_message_id=11)
    [answer] = await sync_to_async(_rows)(outcome.outgoing)
    assert answer.source == Message.Source.FAQ and "1500 UAH" in answer.text
    assert answer.faq_entry_id is not None and answer.score is not None and answer.processing_ms is not None
    # Claimed for the delivery path by the worker that recorded it: it sends it at once.
    assert answer.delivery_status == Message.Delivery.SENDING and answer.delivery_claimed_at == outcome.claim
    assert answer.in_reply_to_id == outcome.incoming_id and not outcome.handed_over
    assert (await _ticket(ALICE)).status == Ticket.Status.OPEN


async def test_a_miss_hands_over_once_and_then_the_bot_stays_quiet(service):
    first = await service.ask(ALICE, MISS, language="en")
    [notice] = await sync_to_async(_rows)(first.outgoing)
    assert first.handed_over and notice.source == Message.Source.SYSTEM and "operator" in notice.text
    ticket = await _ticket(ALICE)
    assert ticket.status == Ticket.Status.WITH_OPERATOR
    change = await sync_to_async(lambda: ticket.status_changes.last())()
    assert change.actor == TicketStatusChange.Actor.BOT and change.reason == "no confident FAQ match"

    # A person owns the ticket now: even an FAQ question gets no automatic answer...
    second = await service.ask(ALICE, FAQ_QUESTION, language="en")
    assert second.with_operator and second.answer is None and second.outgoing == []  # told once already
    assert second.ticket_id == first.ticket_id


async def test_after_an_operator_reply_the_customer_is_told_once_that_a_person_handles_it(service):
    await service.command(ALICE, Command.OPERATOR, text="/operator", language="en")
    ticket = await _ticket(ALICE)
    operator = await sync_to_async(get_user_model().objects.create_user)("olena")
    await sync_to_async(services.do_operator_reply)(ticket=ticket, operator=operator, text="Let me check.")

    again = await service.ask(ALICE, FAQ_QUESTION, language="en")
    [waiting] = await sync_to_async(_rows)(again.outgoing)
    assert "An operator is handling your request" in waiting.text
    assert (await _ticket(ALICE)).status == Ticket.Status.WITH_OPERATOR
    assert (await service.ask(ALICE, "hello?", language="en")).outgoing == []


async def test_commands_are_never_questions(service):
    start = await service.command(ALICE, Command.START, text="/start", language="uk")
    [hello] = await sync_to_async(_rows)(start.outgoing)
    assert "Alice" in hello.text and hello.source == Message.Source.SYSTEM
    unknown = await service.command(ALICE, Command.UNKNOWN, text="/shipping", language="en")
    [help_text] = await sync_to_async(_rows)(unknown.outgoing)
    assert "/operator" in help_text.text and unknown.answer is None


async def test_operator_command_hands_over_and_says_so(service):
    outcome = await service.command(ALICE, Command.OPERATOR, text="/operator", language="en")
    assert outcome.handed_over and len(outcome.outgoing) == 1
    change = await sync_to_async(lambda: Ticket.objects.get(pk=outcome.ticket_id).status_changes.last())()
    assert change.actor == TicketStatusChange.Actor.CUSTOMER


async def test_not_helpful_hands_over_and_a_second_vote_is_stale(service):
    answered = await service.ask(ALICE, FAQ_QUESTION, language="en")
    [answer_id] = answered.outgoing
    result, outcome = await service.feedback(ALICE, message_id=answer_id, helpful=False, language="en")
    assert result is services.FeedbackOutcome.STORED and outcome is not None and len(outcome.outgoing) == 1
    assert (await _ticket(ALICE)).status == Ticket.Status.WITH_OPERATOR
    again, nothing = await service.feedback(ALICE, message_id=answer_id, helpful=True, language="en")
    assert again is services.FeedbackOutcome.STALE and nothing is None
    bob = services.CustomerInfo(id=8102, first_name="Bob")
    assert (await service.feedback(bob, message_id=answer_id, helpful=True, language="en"))[0] \
        is services.FeedbackOutcome.NOT_YOURS


async def test_a_voice_transcript_is_echoed_then_answered(service):
    heard = Heard(text=FAQ_QUESTION, language="en", probability=0.97, seconds=2.5, transcription_ms=400)
    outcome = await service.heard(ALICE, heard, language="en", telegram_message_id=21)
    echo, answer = await sync_to_async(_rows)(outcome.outgoing)
    assert echo.text == f"I heard: {FAQ_QUESTION}" and echo.quote_reply  # quotes the voice message
    assert answer.source == Message.Source.FAQ
    incoming = await sync_to_async(Message.objects.get)(pk=outcome.incoming_id)
    assert incoming.kind == Message.Kind.VOICE and incoming.transcript_language == "en"


async def test_nothing_heard_and_failures(service):
    silent = await service.heard(ALICE, Heard(text=""), language="en", telegram_message_id=31)
    [notice] = await sync_to_async(_rows)(silent.outgoing)
    assert "could not hear anything" in notice.text and silent.answer is None
    broken = await service.not_heard(ALICE, notice="Sorry", telegram_message_id=32, hand_over=True)
    assert broken.handed_over and (await _ticket(ALICE)).status == Ticket.Status.WITH_OPERATOR
    failed = await service.failed(services.CustomerInfo(id=8103), language="ru", reason="bot error: KeyError")
    [apology] = await sync_to_async(_rows)(failed.outgoing)
    assert failed.handed_over and apology.source == Message.Source.SYSTEM


async def test_without_delivery_nothing_is_queued_for_telegram(service):
    quiet = ConversationService(service.pipeline, deliver=False)  # what `supportbot ask` runs
    outcome = await quiet.ask(ALICE, FAQ_QUESTION, language="en")
    [answer] = await sync_to_async(_rows)(outcome.outgoing)
    assert answer.delivery_status == Message.Delivery.NOT_APPLICABLE  # logged, never sent
    assert await sync_to_async(services.claim_outbox)() == []


async def test_the_echo_of_a_voice_message_can_go_out_before_the_answer_is_found(service):
    seen: list[list[str]] = []

    async def flush(outcome):  # the bot delivers here: "I heard" must not wait for an LLM's answer
        seen.append([m.text for m in outcome.messages])

    heard = Heard(text=FAQ_QUESTION, language="en")
    outcome = await service.heard(ALICE, heard, language="en", telegram_message_id=41, flush=flush)
    assert seen == [[f"I heard: {FAQ_QUESTION}"]]  # only the echo existed when it was flushed
    assert len(outcome.messages) == 2 and outcome.answer is not None and outcome.answer.source == "faq"
