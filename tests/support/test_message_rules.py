"""Desk rules that live on the models: which answers are automatic, which replies are
stuck, who changed a ticket (``Actor``), and one list of message sources for everyone."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.utils import timezone

from supportbot import pipeline
from supportbot.support import services
from supportbot.support.admin import delivery_details
from supportbot.support.choices import MessageSource
from supportbot.support.models import Message, TelegramUser, Ticket, TicketStatusChange

pytestmark = pytest.mark.django_db(transaction=True)

LEASE = timedelta(minutes=5)


def _ticket() -> Ticket:
    user = TelegramUser.objects.create(id=90000 + Ticket.objects.count())
    return Ticket.objects.create(user=user)


def test_automatic_answers_are_the_bots_own_faq_and_llm_answers():
    automatic = {(d, s) for d in Message.Direction for s in Message.Source if Message(direction=d, source=s)
                 .is_automatic_answer}
    assert automatic == {("out", "faq"), ("out", "local_llm"), ("out", "api_llm")}
    assert set(Message.LLM_SOURCES) == {"local_llm", "api_llm"}


def test_the_pipeline_names_its_answers_with_the_message_log_sources():
    assert Message.Source is MessageSource
    for name in ("FAQ", "LOCAL_LLM", "API_LLM"):
        assert getattr(pipeline.Source, name) == getattr(Message.Source, name)
    assert pipeline.Source.HANDOVER not in Message.Source.values  # a decision, never a logged source


def test_a_reply_is_stuck_once_its_claim_outlives_the_lease():
    ticket, now = _ticket(), timezone.now()

    def message(status, claimed_ago, source=Message.Source.OPERATOR):
        claimed = None if claimed_ago is None else now - claimed_ago
        return Message.objects.create(ticket=ticket, direction="out", source=source, text="x",
                                      delivery_status=status, delivery_claimed_at=claimed)

    stuck = message(Message.Delivery.SENDING, LEASE + timedelta(seconds=1))
    stuck_answer = message(Message.Delivery.SENDING, LEASE * 3, source=Message.Source.FAQ)  # same delivery path
    sending = message(Message.Delivery.SENDING, LEASE - timedelta(seconds=1))
    sent = message(Message.Delivery.SENT, LEASE * 2)
    pending = message(Message.Delivery.PENDING, None)

    assert set(Message.objects.stuck(lease=LEASE, now=now)) == {stuck, stuck_answer}
    for row in (stuck, stuck_answer, sending, sent, pending):
        assert row.is_stuck(lease=LEASE, now=now) == (row in (stuck, stuck_answer))
    assert not stuck.is_stuck(lease=LEASE * 2, now=now)
    # The admin thread warns about exactly these.
    assert "stuck since" in str(delivery_details(stuck_answer))
    assert "stuck since" not in str(delivery_details(sending))


def test_status_changes_record_who_made_them():
    operator = get_user_model().objects.create_user("op", password="pw-123456-long")
    ticket = _ticket()
    services.do_operator_reply(ticket=ticket, operator=operator, text="hello")
    services.close_ticket(ticket=ticket, operator=operator)
    other = _ticket()
    services.close_ticket(ticket=other, reason="inactive")

    actors = list(TicketStatusChange.objects.order_by("id").values_list("ticket_id", "actor"))
    # The reply (which also assigns the unassigned ticket to its operator), the close, the other close.
    assert actors == [(ticket.pk, TicketStatusChange.Actor.OPERATOR), (ticket.pk, TicketStatusChange.Actor.OPERATOR),
                      (ticket.pk, TicketStatusChange.Actor.OPERATOR), (other.pk, TicketStatusChange.Actor.SYSTEM)]
    change = TicketStatusChange.objects.filter(ticket=other).get()
    assert change.get_actor_display() == "System"
    assert {a.value for a in TicketStatusChange.Actor} == {"customer", "bot", "operator", "system"}
