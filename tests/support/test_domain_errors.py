"""A refused workflow raises a typed ``DomainError`` (stable code, human message), writes
nothing, and the admin shows the operator that message."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from django.urls import reverse

from supportbot.support import errors, services
from supportbot.support.models import FaqEntry, FaqPhrasing, Feedback, Message, TelegramUser, Ticket, TicketStatusChange

from ..browser import form_fields

# ``fake``: FAQ rows written here are embedded with the fake model, after commit.
pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("fake")]


@pytest.fixture
def operator():
    return get_user_model().objects.create_superuser("op", password="pw-123456-long")


@pytest.fixture
def operator_client(operator):
    client = Client()
    client.force_login(operator)
    return client


def _ticket(status=Ticket.Status.WITH_OPERATOR) -> Ticket:
    user = TelegramUser.objects.create(id=80000 + Ticket.objects.count(), first_name="Olena")
    return Ticket.objects.create(user=user, status=status)


def _written() -> tuple:
    """Everything a workflow could write."""
    return (Message.objects.count(), TicketStatusChange.objects.count(), FaqEntry.objects.count(),
            FaqPhrasing.objects.count(), list(Ticket.objects.values_list("status", "waiting_notice_sent")))


def _faq_answer(*, helpful: bool | None, question: str = "parcel late??") -> Message:
    entry, _ = FaqEntry.objects.get_or_create(
        key="delivery", defaults={"question": "delivery time", "answer": "3 days"})
    ticket = _ticket(Ticket.Status.OPEN)
    asked = Message.objects.create(ticket=ticket, direction="in", text=question, source="user")
    answer = Message.objects.create(ticket=ticket, direction="out", text=entry.answer, source="faq",
                                    faq_entry=entry, in_reply_to=asked)
    if helpful is not None:
        Feedback.objects.create(message=answer, helpful=helpful)
    return answer


def test_every_error_has_its_own_stable_code_and_is_a_value_error():
    classes = [errors.EmptyReply, errors.TicketClosed, errors.NotAnOperatorAnswer, errors.NoQuestionBeforeAnswer,
               errors.NotAHelpfulFaqAnswer, errors.AlreadyAPhrasing]
    assert len({c.code for c in classes}) == len(classes)
    for cls in classes:
        error = cls()
        assert isinstance(error, errors.DomainError) and isinstance(error, ValueError)
        assert str(error) == error.message == cls.message and error.message.endswith(".")


# -- the services: the typed error, nothing written -------------------------------------
def test_operator_reply_refusals(operator):
    ticket = _ticket()
    before = _written()
    with pytest.raises(errors.EmptyReply):
        services.do_operator_reply(ticket=ticket, operator=operator, text="   ")
    assert _written() == before
    closed = _ticket(Ticket.Status.CLOSED)
    before = _written()
    with pytest.raises(errors.TicketClosed) as refused:
        services.do_operator_reply(ticket=closed, operator=operator, text="hello")
    assert refused.value.code == "ticket_closed"
    assert _written() == before


def test_save_to_faq_refusals():
    automatic = _faq_answer(helpful=True)
    before = _written()
    with pytest.raises(errors.NotAnOperatorAnswer):
        services.save_answer_to_faq(message=automatic)
    assert _written() == before
    orphan = Message.objects.create(ticket=_ticket(), direction="out", text="Out of the blue", source="operator")
    before = _written()
    with pytest.raises(errors.NoQuestionBeforeAnswer):
        services.save_answer_to_faq(message=orphan)
    assert _written() == before


def test_add_as_phrasing_refusals():
    unrated, unhelpful = _faq_answer(helpful=None), _faq_answer(helpful=False, question="refund??")
    operator_reply = Message.objects.create(ticket=unrated.ticket, direction="out", text="x", source="operator")
    helpful = _faq_answer(helpful=True, question="delivery time")  # the entry's own question
    before = _written()
    for answer in (unrated, unhelpful):
        with pytest.raises(errors.NotAHelpfulFaqAnswer) as refused:
            services.add_question_as_phrasing(answer=answer)
        assert refused.value.message == errors.NotAHelpfulFaqAnswer.message
    with pytest.raises(errors.NotAHelpfulFaqAnswer) as refused:
        services.add_question_as_phrasing(answer=operator_reply)
    assert refused.value.message == errors.NotAHelpfulFaqAnswer.NOT_FROM_FAQ
    with pytest.raises(errors.AlreadyAPhrasing):
        services.add_question_as_phrasing(answer=helpful)
    assert _written() == before


# -- the admin: the operator reads the message, nothing is written ---------------------------
def _shown(response) -> list[str]:
    return [str(m) for m in response.context["messages"]]


def test_admin_shows_a_closed_ticket_refusal(operator_client):
    ticket = _ticket(Ticket.Status.CLOSED)
    url = reverse("admin:support_ticket_change", args=[ticket.pk])
    fields = form_fields(operator_client.get(url).content.decode(), "ticket_form")
    fields["reply"] = "Are you still there?"
    before = _written()
    response = operator_client.post(url, fields, follow=True)
    assert errors.TicketClosed.message in _shown(response)
    assert _written() == before


@pytest.mark.parametrize("case", ["automatic", "no_question"])
def test_admin_shows_a_save_to_faq_refusal(operator_client, case):
    if case == "automatic":
        message, expected = _faq_answer(helpful=True), errors.NotAnOperatorAnswer.message
    else:
        message = Message.objects.create(ticket=_ticket(), direction="out", text="Hi", source="operator")
        expected = errors.NoQuestionBeforeAnswer.message
    before = _written()
    response = operator_client.post(reverse("admin:support_message_save_to_faq", args=[message.pk]), follow=True)
    assert expected in _shown(response)
    assert _written() == before


@pytest.mark.parametrize("case", ["unrated", "operator_reply", "known_question"])
def test_admin_shows_an_add_as_phrasing_refusal(operator_client, case):
    if case == "unrated":
        message, expected = _faq_answer(helpful=None), errors.NotAHelpfulFaqAnswer.message
    elif case == "operator_reply":
        message = Message.objects.create(ticket=_ticket(), direction="out", text="Hi", source="operator")
        expected = errors.NotAHelpfulFaqAnswer.NOT_FROM_FAQ
    else:
        message, expected = _faq_answer(helpful=True, question="delivery time"), errors.AlreadyAPhrasing.message
    before = _written()
    response = operator_client.post(reverse("admin:support_message_add_as_phrasing", args=[message.pk]), follow=True)
    assert expected in _shown(response)
    assert _written() == before
