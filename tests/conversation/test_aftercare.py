"""After the operator, through the conversation service (no Bot API): the rating question at
resolve, the reopen window, ``/operator`` in every status, "ask the bot instead", and overdue
tickets re-notified once per process group."""

from __future__ import annotations

from datetime import timedelta

import pytest
from asgiref.sync import sync_to_async
from django.contrib.auth import get_user_model
from django.utils import timezone

from supportbot.conversation import Command, ConversationService
from supportbot.ops import metrics
from supportbot.support import aftercare, services
from supportbot.support.aftercare import BackToBotOutcome, OverdueWatch, RatingOutcome
from supportbot.support.models import CsatRating, Message, Ticket, TicketStatusChange

pytestmark = pytest.mark.django_db(transaction=True)

ALICE = services.CustomerInfo(id=8201, first_name="Alice", language_code="en")
OKSANA = services.CustomerInfo(id=8202, first_name="Оксана", language_code="uk")
MALLORY = services.CustomerInfo(id=8203, first_name="Mallory", language_code="en")
FAQ_QUESTION = "How much does shipping cost?"  # the sample FAQ's delivery-cost-en
MISS = "Can you recommend a good pizza recipe?"


@pytest.fixture
def service(fake, sample_faq) -> ConversationService:
    from supportbot.assembly import build_pipeline, prepare_index

    pipeline = build_pipeline(fake, llm=None)
    prepare_index(pipeline)
    return ConversationService(pipeline, reopen_window=timedelta(hours=1))


@pytest.fixture
def operator(transactional_db):
    return get_user_model().objects.create_user("olena", password="x-123456-long")


@sync_to_async
def _ticket(customer: services.CustomerInfo) -> Ticket:
    return Ticket.objects.filter(user_id=customer.id).order_by("-id").first()


@sync_to_async
def _rows(ids: list[int]) -> list[Message]:
    return services.messages_by_id(ids)


@sync_to_async
def _resolve(ticket: Ticket, operator=None, **kwargs) -> bool:
    return services.resolve_ticket(ticket=ticket, operator=operator, **kwargs)


@sync_to_async
def _question(ticket: Ticket) -> Message:
    return Message.objects.get(ticket=ticket, source=Message.Source.CSAT)


async def _handed_over(service: ConversationService, customer: services.CustomerInfo) -> Ticket:
    outcome = await service.ask(customer, MISS, language=customer.language_code)
    assert outcome.handed_over
    return await _ticket(customer)


# -- the rating question ------------------------------------------------------------------------------
async def test_resolve_asks_for_a_rating_in_the_customers_language(service, operator):
    ticket = await _handed_over(service, OKSANA)
    assert await _resolve(ticket, operator)
    question = await _question(ticket)
    assert question.text.startswith("Чи вирішили ми вашу проблему?")
    assert question.direction == Message.Direction.OUT and question.operator_id == operator.pk
    # Pending: the bot's delivery loop sends it (with the 1-5 buttons).
    assert question.delivery_status == Message.Delivery.PENDING
    ticket = await _ticket(OKSANA)
    assert ticket.status == Ticket.Status.RESOLVED and ticket.resolved_at is not None
    assert ticket.waiting_since is None

    assert not await _resolve(ticket, operator)  # resolved already: nothing asked twice
    assert await Message.objects.filter(source=Message.Source.CSAT).acount() == 1


async def test_an_unknown_language_gets_the_default_language(service):
    stranger = services.CustomerInfo(id=8209, first_name="Hans", language_code="de")
    ticket = await _handed_over(service, stranger)
    assert await _resolve(ticket, default_language="ru")
    assert (await _question(ticket)).text.startswith("Мы решили вашу проблему?")


async def test_a_rating_is_stored_once_per_question_for_the_ticket_and_its_operator(service, operator):
    ticket = await _handed_over(service, ALICE)
    await sync_to_async(services.take_ticket)(ticket_id=ticket.pk, operator=operator)
    await _resolve(ticket)  # resolved by the system: the rating goes to the assignee
    question = await _question(ticket)

    assert await service.rate(ALICE, message_id=question.pk, score=4) is RatingOutcome.STORED
    rating = await CsatRating.objects.aget()
    assert (rating.score, rating.ticket_id, rating.operator_id) == (4, ticket.pk, operator.pk)
    assert await service.rate(ALICE, message_id=question.pk, score=1) is RatingOutcome.ALREADY_RATED
    assert (await CsatRating.objects.aget()).score == 4


async def test_the_resolving_operator_is_rated_when_nobody_took_the_ticket(service, operator):
    ticket = await _handed_over(service, ALICE)
    await _resolve(ticket, operator)
    question = await _question(ticket)
    assert await service.rate(ALICE, message_id=question.pk, score=5) is RatingOutcome.STORED
    assert (await CsatRating.objects.aget()).operator_id == operator.pk


async def test_forged_and_foreign_rating_clicks_change_nothing(service, operator):
    ticket = await _handed_over(service, ALICE)
    await _resolve(ticket, operator)
    question = await _question(ticket)
    notice = await Message.objects.filter(ticket=ticket, source=Message.Source.SYSTEM).afirst()

    assert await service.rate(MALLORY, message_id=question.pk, score=1) is RatingOutcome.NOT_YOURS
    assert await service.rate(ALICE, message_id=999_999, score=5) is RatingOutcome.UNKNOWN
    assert await service.rate(ALICE, message_id=notice.pk, score=5) is RatingOutcome.UNKNOWN  # not a question
    for score in (0, 6, -1, 10**9):  # no button gives these
        assert await service.rate(ALICE, message_id=question.pk, score=score) is RatingOutcome.UNKNOWN
    assert not await CsatRating.objects.aexists()


# -- the bot answers again; the reopen window ---------------------------------------------------------------
async def test_a_message_after_resolve_reopens_the_ticket_and_the_bot_answers(service, operator):
    ticket = await _handed_over(service, ALICE)
    await _resolve(ticket, operator)

    outcome = await service.ask(ALICE, FAQ_QUESTION, language="en")
    assert outcome.ticket_id == ticket.pk and not outcome.with_operator
    [answer] = await _rows(outcome.outgoing)
    assert answer.source == Message.Source.FAQ and "1500 UAH" in answer.text
    ticket = await _ticket(ALICE)
    assert ticket.status == Ticket.Status.OPEN
    change = await TicketStatusChange.objects.filter(ticket=ticket).alast()
    assert (change.old_status, change.new_status, change.actor, change.reason) == (
        Ticket.Status.RESOLVED, Ticket.Status.OPEN, TicketStatusChange.Actor.CUSTOMER, "customer wrote after resolve")


async def test_after_the_window_the_resolved_ticket_is_closed_and_a_new_one_opens(service, operator):
    ticket = await _handed_over(service, ALICE)
    await _resolve(ticket, operator)
    await Ticket.objects.filter(pk=ticket.pk).aupdate(resolved_at=timezone.now() - timedelta(hours=2))

    outcome = await service.ask(ALICE, FAQ_QUESTION, language="en")
    assert outcome.ticket_id != ticket.pk
    [answer] = await _rows(outcome.outgoing)
    assert answer.source == Message.Source.FAQ
    old = await Ticket.objects.aget(pk=ticket.pk)
    assert old.status == Ticket.Status.CLOSED and old.closed_at is not None
    change = await TicketStatusChange.objects.filter(ticket=old).alast()
    assert (change.new_status, change.actor, change.reason) == (
        Ticket.Status.CLOSED, TicketStatusChange.Actor.SYSTEM, "reopen window passed")
    assert (await _ticket(ALICE)).status == Ticket.Status.OPEN


async def test_the_error_path_and_a_new_cli_conversation_know_resolved_tickets(service, operator):
    ticket = await _handed_over(service, ALICE)
    await _resolve(ticket, operator)
    await Ticket.objects.filter(pk=ticket.pk).aupdate(resolved_at=timezone.now() - timedelta(hours=2))
    # Handling a message failed after the window (1 h here): a new ticket goes to a person.
    failed = await service.failed(ALICE, language="en", reason="boom")
    assert failed.ticket_id != ticket.pk and failed.handed_over
    assert (await Ticket.objects.aget(pk=ticket.pk)).status == Ticket.Status.CLOSED

    # `supportbot ask` starts a new conversation: a resolved ticket is closed too.
    await sync_to_async(services.close_ticket)(ticket=await _ticket(ALICE))
    second = await _handed_over(service, ALICE)
    await _resolve(second, operator)
    assert await sync_to_async(services.close_customer_ticket)(user_id=ALICE.id, reason="a new `supportbot ask`")
    assert (await Ticket.objects.aget(pk=second.pk)).status == Ticket.Status.CLOSED


async def test_operator_command_reaches_a_person_in_every_status(service, operator):
    async def operator_command() -> str:
        outcome = await service.command(ALICE, Command.OPERATOR, text="/operator", language="en")
        [said] = await _rows(outcome.outgoing)
        assert (await _ticket(ALICE)).status == Ticket.Status.WITH_OPERATOR
        return said.text

    # open (the bot answers) -> handed over
    await service.ask(ALICE, FAQ_QUESTION, language="en")
    assert "passed your question to an operator" in await operator_command()
    # already waiting -> told again, every time it is asked for
    assert "An operator is handling your request" in await operator_command()
    assert "An operator is handling your request" in await operator_command()
    # answered by the operator -> waiting for them again
    ticket = await _ticket(ALICE)
    await sync_to_async(services.do_operator_reply)(ticket=ticket, operator=operator, text="Let me check.")
    assert "An operator is handling your request" in await operator_command()
    # resolved -> reopened and handed over (the same ticket)
    await _resolve(ticket, operator)
    assert "passed your question to an operator" in await operator_command()
    assert (await _ticket(ALICE)).pk == ticket.pk
    # closed -> a new ticket, handed over
    await sync_to_async(services.close_ticket)(ticket=ticket, operator=operator)
    assert "passed your question to an operator" in await operator_command()
    assert (await _ticket(ALICE)).pk != ticket.pk


# -- ask the bot instead ---------------------------------------------------------------------------------------
async def test_ask_the_bot_instead_puts_the_ticket_back_and_the_bot_answers(service):
    ticket = await _handed_over(service, ALICE)
    quiet = await service.ask(ALICE, FAQ_QUESTION, language="en")
    assert quiet.with_operator and quiet.outgoing == []  # today's silence while a person owns it

    result, outcome = await service.back_to_bot(ALICE, ticket_id=ticket.pk, language="en")
    assert result is BackToBotOutcome.DONE and outcome is not None
    [said] = await _rows(outcome.outgoing)
    assert "I will answer your questions myself again" in said.text
    ticket = await _ticket(ALICE)
    assert ticket.status == Ticket.Status.OPEN and ticket.waiting_since is None
    change = await TicketStatusChange.objects.filter(ticket=ticket).alast()
    assert (change.actor, change.reason) == (TicketStatusChange.Actor.CUSTOMER, "asked the bot instead")

    answered = await service.ask(ALICE, FAQ_QUESTION, language="en")
    [answer] = await _rows(answered.outgoing)
    assert answer.source == Message.Source.FAQ and "1500 UAH" in answer.text

    # A later miss hands over again, and the customer is told again.
    again = await service.ask(ALICE, MISS, language="en")
    assert again.handed_over and again.outgoing


async def test_ask_the_bot_instead_refuses_stale_foreign_and_unknown_tickets(service):
    ticket = await _handed_over(service, ALICE)
    result, outcome = await service.back_to_bot(MALLORY, ticket_id=ticket.pk, language="en")
    assert result is BackToBotOutcome.NOT_YOURS and outcome is None
    assert (await service.back_to_bot(ALICE, ticket_id=999_999, language="en"))[0] is BackToBotOutcome.UNKNOWN
    assert (await _ticket(ALICE)).status == Ticket.Status.WITH_OPERATOR

    assert (await service.back_to_bot(ALICE, ticket_id=ticket.pk, language="en"))[0] is BackToBotOutcome.DONE
    result, outcome = await service.back_to_bot(ALICE, ticket_id=ticket.pk, language="en")  # pressed twice
    assert result is BackToBotOutcome.STALE and outcome is None
    assert await TicketStatusChange.objects.filter(reason="asked the bot instead").acount() == 1


# -- overdue ----------------------------------------------------------------------------------------------------
async def test_overdue_tickets_are_claimed_once_and_reminded_again_later(service):
    waiting = await _handed_over(service, ALICE)
    fresh = await _handed_over(service, OKSANA)
    now = timezone.now()
    await Ticket.objects.filter(pk=waiting.pk).aupdate(waiting_since=now - timedelta(minutes=45))
    after = timedelta(minutes=30)

    waiting = await Ticket.objects.aget(pk=waiting.pk)
    assert aftercare.is_overdue(waiting, now=now, overdue_after=after)
    assert not aftercare.is_overdue(await Ticket.objects.aget(pk=fresh.pk), now=now, overdue_after=after)

    claim = sync_to_async(aftercare.claim_overdue)
    [overdue] = await claim(now=now, overdue_after=after)
    assert overdue.ticket_id == waiting.pk and overdue.customer_name == "Alice"
    assert overdue.waited_minutes == 45 and overdue.last_question == MISS
    # A second bot process a moment later: nothing left to claim.
    assert await claim(now=now + timedelta(seconds=5), overdue_after=after) == []
    # Still waiting one period later: reminded again (and the other ticket is overdue by now).
    again = await claim(now=now + timedelta(minutes=31), overdue_after=after)
    assert [t.ticket_id for t in again] == [waiting.pk, fresh.pk]  # longest waiting first
    # Answered meanwhile: nothing.
    operator = await sync_to_async(get_user_model().objects.create_user)("op")
    await sync_to_async(services.do_operator_reply)(ticket=waiting, operator=operator, text="Here I am.")
    later = await claim(now=now + timedelta(hours=2), overdue_after=after)
    assert [t.ticket_id for t in later] == [fresh.pk]


async def test_the_watch_logs_counts_and_tells_every_notifier(service, caplog):
    ticket = await _handed_over(service, ALICE)
    await Ticket.objects.filter(pk=ticket.pk).aupdate(waiting_since=timezone.now() - timedelta(hours=1))
    heard = []

    async def broken(overdue):
        raise RuntimeError("the group is gone")

    async def group_desk(overdue):
        heard.append(overdue.ticket_id)

    watch = OverdueWatch(overdue_after=timedelta(minutes=30), notifiers=[broken])
    watch.notifiers.append(group_desk)  # how the operators' group desk registers itself
    before = metrics.OVERDUE_TICKETS._value.get()
    with caplog.at_level("WARNING", logger="supportbot.support.aftercare"):
        claimed = await watch.check_once()
    assert [t.ticket_id for t in claimed] == heard == [ticket.pk]
    assert metrics.OVERDUE_TICKETS._value.get() == before + 1
    assert any(f"ticket #{ticket.pk} has waited 60 min" in r.getMessage() for r in caplog.records)
    assert (await Ticket.objects.aget(pk=ticket.pk)).overdue_notified_at is not None
    assert await watch.check_once() == [] and heard == [ticket.pk]
