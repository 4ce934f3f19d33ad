"""Support-desk workflows as explicit keyword-only functions.

The bot, the admin, the CLI and the benchmarks all call these (sync; async code
runs them through ``sync_to_async``), so ticket rules live in one place.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import Enum
from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import Case, F, Q, Value, When
from django.utils import timezone
from django.utils.text import slugify

from supportbot.support import aftercare
from supportbot.support.errors import (
    AlreadyAPhrasing,
    CustomerHasOpenTicket,
    EmptyReply,
    NoQuestionBeforeAnswer,
    NotAHelpfulFaqAnswer,
    NotAnOperatorAnswer,
    TicketClosed,
)
from supportbot.support.models import (
    FaqEntry,
    FaqPhrasing,
    Feedback,
    Message,
    TelegramUser,
    Ticket,
    TicketStatusChange,
    UpdateClaim,
)
from supportbot.text import clean

log = logging.getLogger(__name__)

MAX_TEXT = 20_000  # stored text cap; Telegram itself caps a message at 4096
LAST_SEEN_RESOLUTION = timedelta(minutes=1)


@dataclass(frozen=True)
class CustomerInfo:
    id: int
    username: str = ""
    first_name: str = ""
    last_name: str = ""
    language_code: str = ""


@dataclass(frozen=True)
class Incoming:
    ticket_id: int
    message_id: int
    #: The ticket belongs to a person: the bot must not auto-answer.
    with_operator: bool
    #: Tell the customer, once, that a person will reply.
    notify_waiting: bool


def upsert_customer(info: CustomerInfo) -> TelegramUser:
    defaults = {
        "username": (info.username or "")[:64],
        "first_name": (info.first_name or "")[:128],
        "last_name": (info.last_name or "")[:128],
        "language_code": (info.language_code or "")[:16],
        "is_blocked": False,
    }
    user = TelegramUser.objects.filter(id=info.id).first()
    if user is None:
        try:
            with transaction.atomic():
                return TelegramUser.objects.create(id=info.id, **defaults)
        except IntegrityError:  # created by a concurrent update a moment ago
            user = TelegramUser.objects.get(id=info.id)
    changed = {k: v for k, v in defaults.items() if getattr(user, k) != v}
    # last_seen is kept to the minute: skipping an UPDATE per message matters under load.
    if changed or timezone.now() - user.last_seen > LAST_SEEN_RESOLUTION:
        for key, value in changed.items():
            setattr(user, key, value)
        user.save(update_fields=[*changed, "last_seen"])
    return user


#: The customer's one non-closed ticket (``one_active_ticket_per_user``): where their message lands.
_NOT_CLOSED = (*Ticket.ACTIVE, Ticket.Status.RESOLVED)


def _active_ticket(user_id: int, *, reopen_window: timedelta = aftercare.DEFAULT_REOPEN_WINDOW) -> Ticket:
    """The ticket a customer's new message goes to, opened if need be.

    A resolved ticket is the customer's one non-closed ticket too: within ``reopen_window`` of
    its resolve the message reopens it (open: the bot answers again); after that the resolved
    ticket is closed and a new one opens. ``reopen_window``: ``REOPEN_WINDOW_HOURS``, passed
    down by the conversation service.
    """
    ticket = (
        Ticket.objects.select_for_update()
        .filter(user_id=user_id, status__in=_NOT_CLOSED)
        .first()
    )
    if ticket is not None and ticket.status == Ticket.Status.RESOLVED:
        if timezone.now() - (ticket.resolved_at or ticket.updated_at) <= reopen_window:
            change_status(ticket=ticket, new_status=Ticket.Status.OPEN, actor=TicketStatusChange.Actor.CUSTOMER,
                          reason="customer wrote after resolve")
            return ticket
        change_status(ticket=ticket, new_status=Ticket.Status.CLOSED, actor=TicketStatusChange.Actor.SYSTEM,
                      reason="reopen window passed")
        ticket = None
    if ticket is not None:
        return ticket
    try:
        with transaction.atomic():
            ticket = Ticket.objects.create(user_id=user_id)
            TicketStatusChange.objects.create(
                ticket=ticket, old_status="", new_status=ticket.status,
                actor=TicketStatusChange.Actor.CUSTOMER, reason="first message",
            )
            return ticket
    except IntegrityError:  # another worker opened it a moment ago
        return Ticket.objects.get(user_id=user_id, status__in=_NOT_CLOSED)


def change_status(
    *, ticket: Ticket, new_status: str, actor: str, reason: str, operator=None, draft_answer: str = ""
) -> bool:
    if ticket.status == new_status:
        return False
    old = ticket.status
    ticket.status = new_status
    fields = ["status", "updated_at", "waiting_since"]
    now = timezone.now()
    if new_status == Ticket.Status.WITH_OPERATOR:
        ticket.handed_over_at = now
        fields.append("handed_over_at")
        # The customer waits for a person from now (the queue's order and its "waiting" time).
        ticket.waiting_since = ticket.waiting_since or now
    else:
        ticket.waiting_since = None
    if new_status == Ticket.Status.RESOLVED:
        ticket.resolved_at = now
        fields.append("resolved_at")
    if new_status == Ticket.Status.CLOSED:
        ticket.closed_at = now
        fields.append("closed_at")
    ticket.save(update_fields=fields)
    TicketStatusChange.objects.create(
        ticket=ticket, old_status=old, new_status=new_status,
        actor=actor, reason=reason[:255], changed_by=operator, draft_answer=draft_answer,
    )
    return True


@transaction.atomic
def record_incoming(
    *, customer: CustomerInfo, kind: str, text: str, telegram_message_id: int | None,
    reopen_window: timedelta = aftercare.DEFAULT_REOPEN_WINDOW,
) -> Incoming:
    """Log a customer's message on their active ticket (opening one if needed; a resolved
    ticket reopens within ``reopen_window``, see :func:`_active_ticket`)."""
    upsert_customer(customer)
    ticket = _active_ticket(customer.id, reopen_window=reopen_window)
    message = Message.objects.create(
        ticket=ticket, direction=Message.Direction.IN, kind=kind, text=(text or "")[:MAX_TEXT],
        telegram_message_id=telegram_message_id, source=Message.Source.USER,
    )
    with_operator = ticket.status in (Ticket.Status.WITH_OPERATOR, Ticket.Status.ANSWERED)
    notify = False
    if with_operator:
        if ticket.status == Ticket.Status.ANSWERED:
            change_status(ticket=ticket, new_status=Ticket.Status.WITH_OPERATOR,
                          actor=TicketStatusChange.Actor.CUSTOMER, reason="customer wrote after the operator's reply")
        notify = not ticket.waiting_notice_sent
        if notify:
            ticket.waiting_notice_sent = True
        ticket.save(update_fields=["waiting_notice_sent", "updated_at"])
    else:
        ticket.save(update_fields=["updated_at"])
    return Incoming(ticket.pk, message.pk, with_operator, notify)


@transaction.atomic
def hand_over(*, ticket_id: int, actor: str, reason: str, notice_sent: bool = True, draft_answer: str = "") -> bool:
    """Give the ticket to a person. Returns False when it already was.

    ``draft_answer``: an LLM's checked answer that was not sent (``LLM_ANSWER_MODE=draft``),
    kept on the hand-over for the operator.
    """
    ticket = Ticket.objects.select_for_update().get(pk=ticket_id)
    if ticket.status == Ticket.Status.CLOSED:
        return False
    changed = change_status(ticket=ticket, new_status=Ticket.Status.WITH_OPERATOR,
                            actor=actor, reason=reason, draft_answer=draft_answer)
    if notice_sent and not ticket.waiting_notice_sent:
        ticket.waiting_notice_sent = True
        ticket.save(update_fields=["waiting_notice_sent"])
    return changed


def attach_draft(*, ticket_id: int, draft_answer: str, reason: str) -> bool:
    """An LLM draft written after the hand-over (``LLM_ANSWER_MODE=draft``): kept on the ticket's
    latest hand-over for the operator, with what the LLM step did added to its reason."""
    change = (TicketStatusChange.objects.filter(ticket_id=ticket_id, new_status=Ticket.Status.WITH_OPERATOR)
              .order_by("-pk").first())
    if change is None:
        return False
    change.draft_answer = draft_answer
    if reason:
        change.reason = f"{change.reason}; {reason}"[:change._meta.get_field("reason").max_length or None]
    change.save(update_fields=["draft_answer", "reason"])
    return True


@transaction.atomic
def hand_over_after_error(*, customer: CustomerInfo, reason: str,
                          reopen_window: timedelta = aftercare.DEFAULT_REOPEN_WINDOW) -> tuple[int, bool]:
    """Handling the customer's update failed: their active ticket (opened if need be) goes to
    a person. Returns the ticket id and whether its status changed."""
    upsert_customer(customer)
    ticket = _active_ticket(customer.id, reopen_window=reopen_window)
    return ticket.pk, hand_over(ticket_id=ticket.pk, actor=TicketStatusChange.Actor.SYSTEM, reason=reason)


def close_customer_ticket(*, user_id: int, reason: str) -> bool:
    """Close the customer's active (or resolved) ticket, if any (their next message opens a new one)."""
    ticket = Ticket.objects.filter(user_id=user_id, status__in=_NOT_CLOSED).first()
    return ticket is not None and close_ticket(ticket=ticket, reason=reason)


def messages_by_id(ids: list[int]) -> list[Message]:
    """The given messages, in the order of ``ids``."""
    rows = Message.objects.in_bulk(ids)
    return [rows[i] for i in ids if i in rows]


def ticket_summary(*, ticket_id: int | None) -> dict[str, Any]:
    ticket = Ticket.objects.filter(pk=ticket_id).values("id", "status").first() if ticket_id is not None else None
    return dict(ticket) if ticket is not None else {"id": None, "status": None}


def ticket_of(*, message_id: int) -> int | None:
    return Message.objects.filter(pk=message_id).values_list("ticket_id", flat=True).first()


def record_outgoing(
    *,
    ticket_id: int,
    text: str,
    source: str,
    in_reply_to_id: int | None = None,
    faq_entry_id: int | None = None,
    score: float | None = None,
    processing_ms: int | None = None,
    telegram_message_id: int | None = None,
    llm: dict | None = None,
    quote_reply: bool = False,
    deliver: bool = True,
    claim: datetime | None = None,
) -> Message:
    """Log a message the bot itself sends (answers, notices) and queue it for delivery.

    The delivery path (``bot.delivery``) claims, sends and confirms it like every other
    outgoing message. ``claim``: the recording worker sends it at once, so the row is
    written already claimed by it ("sending", with its claim time: one write instead of a
    second conditional UPDATE), unless an earlier message of the ticket has not gone out
    yet; then it is written "pending" and the delivery loop sends it after that one.
    ``claim`` is the claim time: the messages of one event share it, so the second of
    them ("I heard: ...", then the answer) does not wait for the first.
    Without ``claim`` it is "pending" for any worker's loop. A worker that dies after
    recording is covered by the lease, like any claim. ``deliver=False``: only logged,
    never sent (``supportbot ask``). ``llm``: for an LLM answer, its model, context
    entries, token counts and timings (``pipeline.Answer.llm_fields()``).
    """
    claimed_at = None
    if telegram_message_id is not None:
        status = Message.Delivery.SENT
    elif not deliver:
        status = Message.Delivery.NOT_APPLICABLE
    elif claim is not None:
        status, claimed_at = Message.Delivery.SENDING, claim
    else:
        status = Message.Delivery.PENDING
    message = Message.objects.create(
        ticket_id=ticket_id, direction=Message.Direction.OUT, kind=Message.Kind.TEXT,
        text=text[:MAX_TEXT], source=source, in_reply_to_id=in_reply_to_id,
        faq_entry_id=faq_entry_id, score=score, processing_ms=processing_ms,
        telegram_message_id=telegram_message_id, delivery_status=status,
        delivery_claimed_at=claimed_at, quote_reply=quote_reply,
        **(llm or {}),
    )
    # Checked after the insert, not before: two events of one customer recorded at the same
    # time would both find nothing waiting and both send at once, in either order. The row
    # with the higher id yields to any earlier one not of this event: pending, after it.
    if claimed_at is not None and _undelivered(ticket_id).filter(id__lt=message.pk).exclude(
            delivery_status=Message.Delivery.SENDING, delivery_claimed_at=claim).exists():
        Message.objects.filter(pk=message.pk, delivery_status=Message.Delivery.SENDING,
                               delivery_claimed_at=claim).update(delivery_status=Message.Delivery.PENDING,
                                                                 delivery_claimed_at=None)
        message.delivery_status, message.delivery_claimed_at = Message.Delivery.PENDING, None
    return message


def mark_sent(*, message_id: int, telegram_message_id: int | None, claimed_at=None) -> bool:
    """Confirm a delivery. ``claimed_at``: only while the caller still holds its claim."""
    rows = Message.objects.filter(pk=message_id)
    if claimed_at is not None:
        rows = rows.filter(delivery_status=Message.Delivery.SENDING, delivery_claimed_at=claimed_at)
    return bool(rows.update(telegram_message_id=telegram_message_id, delivery_status=Message.Delivery.SENT,
                            delivery_not_before=None))


# -- feedback -------------------------------------------------------------------
class FeedbackOutcome(str, Enum):
    STORED = "stored"
    NOT_YOURS = "not_yours"
    STALE = "stale"
    UNKNOWN = "unknown"


@transaction.atomic
def record_feedback(*, message_id: int, customer_id: int, helpful: bool) -> FeedbackOutcome:
    """Store a Helpful / Not helpful click; "Not helpful" hands the ticket over.

    Checks the click against the database, never trusting the callback data:
    the answer must exist, be automatic, belong to this customer's ticket, the
    ticket must still be active, and each answer takes one vote.
    """
    message = (
        Message.objects.select_related("ticket")
        .filter(pk=message_id, direction=Message.Direction.OUT,
                source__in=Message.AUTOMATIC_SOURCES)
        .first()
    )
    if message is None:
        return FeedbackOutcome.UNKNOWN
    if message.ticket.user_id != customer_id:
        return FeedbackOutcome.NOT_YOURS
    if message.ticket.status == Ticket.Status.CLOSED or Feedback.objects.filter(message=message).exists():
        return FeedbackOutcome.STALE
    Feedback.objects.create(message=message, helpful=helpful)
    if not helpful:
        hand_over(ticket_id=message.ticket_id, actor=TicketStatusChange.Actor.CUSTOMER,
                  reason="answer marked not helpful")
    return FeedbackOutcome.STORED


# -- operators --------------------------------------------------------------------
@transaction.atomic
def do_operator_reply(*, ticket: Ticket, operator, text: str) -> Message:
    """Queue an operator's reply; the bot process delivers it (outbox), once. An unassigned
    ticket is assigned to the operator who replied.

    Raises :class:`EmptyReply` or :class:`TicketClosed` (nothing written)."""
    text = (text or "").strip()
    if not text:
        raise EmptyReply()
    ticket = Ticket.objects.select_for_update().get(pk=ticket.pk)
    if ticket.status == Ticket.Status.CLOSED:
        raise TicketClosed()
    last_in = ticket.messages.filter(direction=Message.Direction.IN).order_by("-id").first()
    message = Message.objects.create(
        ticket=ticket, direction=Message.Direction.OUT, kind=Message.Kind.TEXT,
        text=text[:MAX_TEXT], source=Message.Source.OPERATOR, operator=operator,
        in_reply_to=last_in, delivery_status=Message.Delivery.PENDING,
    )
    if ticket.assignee_id is None and operator is not None:
        # Who answers an unassigned ticket owns it, wherever they answered (the web desk or the
        # operators' group): under the row lock, so a concurrent take cannot be overwritten.
        ticket.assignee, ticket.assigned_at = operator, timezone.now()
        ticket.save(update_fields=["assignee", "assigned_at"])
        TicketStatusChange.objects.create(
            ticket=ticket, old_status=ticket.status, new_status=ticket.status,
            actor=TicketStatusChange.Actor.OPERATOR, changed_by=operator, reason="taken by operator (replied)")
    change_status(ticket=ticket, new_status=Ticket.Status.ANSWERED, actor=TicketStatusChange.Actor.OPERATOR,
                  reason="operator replied", operator=operator)
    ticket.waiting_notice_sent = False
    ticket.save(update_fields=["waiting_notice_sent"])
    return message


def close_ticket(*, ticket: Ticket, operator=None, reason: str = "closed by operator") -> bool:
    with transaction.atomic():
        ticket = Ticket.objects.select_for_update().get(pk=ticket.pk)
        actor = TicketStatusChange.Actor.OPERATOR if operator else TicketStatusChange.Actor.SYSTEM
        return change_status(ticket=ticket, new_status=Ticket.Status.CLOSED, actor=actor, reason=reason,
                             operator=operator)


class TakeOutcome(str, Enum):
    TAKEN = "taken"
    ALREADY_YOURS = "already_yours"
    TAKEN_BY_OTHER = "taken_by_other"
    CLOSED = "closed"


def take_ticket(*, ticket_id: int, operator) -> tuple[TakeOutcome, Ticket]:
    """Assign the ticket to ``operator``. Of two operators taking it at once exactly one wins:
    the assignment is one conditional UPDATE (``assignee IS NULL``); the other is told who has it.
    The customer sees nothing of this."""
    now = timezone.now()
    won = Ticket.objects.filter(pk=ticket_id, assignee__isnull=True).exclude(
        status=Ticket.Status.CLOSED).update(assignee=operator, assigned_at=now)
    ticket = Ticket.objects.select_related("assignee", "user").get(pk=ticket_id)
    if won:
        TicketStatusChange.objects.create(
            ticket=ticket, old_status=ticket.status, new_status=ticket.status,
            actor=TicketStatusChange.Actor.OPERATOR, changed_by=operator, reason="taken by operator")
        return TakeOutcome.TAKEN, ticket
    if ticket.status == Ticket.Status.CLOSED:
        return TakeOutcome.CLOSED, ticket
    if ticket.assignee_id == getattr(operator, "pk", None):
        return TakeOutcome.ALREADY_YOURS, ticket
    return TakeOutcome.TAKEN_BY_OTHER, ticket


def release_ticket(*, ticket_id: int, operator, anyone: bool = False) -> bool:
    """Give a taken ticket back to the queue (unassigned), so another operator can take it.
    Only its assignee may, unless ``anyone`` (a superuser unassigning a colleague who left):
    one conditional UPDATE on the assignee seen, so a release never undoes a newer take.
    Returns False when the ticket was not (or no longer) assigned to whom it may release."""
    rows = Ticket.objects.filter(pk=ticket_id, assignee__isnull=False)
    if not anyone:
        rows = rows.filter(assignee=operator)
    ticket = rows.select_related("assignee").first()
    if ticket is None or ticket.assignee is None or not Ticket.objects.filter(
            pk=ticket_id, assignee_id=ticket.assignee_id).update(assignee=None, assigned_at=None):
        return False
    TicketStatusChange.objects.create(
        ticket=ticket, old_status=ticket.status, new_status=ticket.status, actor=TicketStatusChange.Actor.OPERATOR,
        changed_by=operator, reason=f"released by operator (was {ticket.assignee.get_username()})"[:255])
    return True


def resolve_ticket(*, ticket: Ticket, operator=None, reason: str = "resolved by operator",
                   default_language: str = "en") -> bool:
    """The operator solved the customer's problem: the ticket is resolved (the bot answers
    that customer automatically again) and the customer is asked to rate the help (the
    question "Did we solve your problem?" with buttons 1-5, recorded in the same transaction
    and sent by the bot's delivery path: ``aftercare.ask_for_rating``). Returns False when it
    already was resolved, or is closed (nothing asked). ``default_language``: the question's
    language for a customer whose Telegram language is not one of ours (``DEFAULT_LANGUAGE``)."""
    with transaction.atomic():
        ticket = Ticket.objects.select_for_update().get(pk=ticket.pk)
        if ticket.status == Ticket.Status.CLOSED:
            return False
        actor = TicketStatusChange.Actor.OPERATOR if operator else TicketStatusChange.Actor.SYSTEM
        changed = change_status(ticket=ticket, new_status=Ticket.Status.RESOLVED, actor=actor, reason=reason,
                                operator=operator)
        if changed:
            aftercare.ask_for_rating(ticket=ticket, operator=operator, default_language=default_language)
        return changed


def reopen_ticket(*, ticket: Ticket, operator=None, reason: str = "reopened by operator") -> bool:
    """Reopen a resolved or closed ticket for a person (with operator). A closed ticket reopens
    only while the customer has no other open ticket (one active ticket per customer): raises
    :class:`CustomerHasOpenTicket` otherwise."""
    with transaction.atomic():
        ticket = Ticket.objects.select_for_update().get(pk=ticket.pk)
        if ticket.status not in (Ticket.Status.RESOLVED, Ticket.Status.CLOSED):
            return False
        if ticket.status == Ticket.Status.CLOSED and Ticket.objects.filter(
                user_id=ticket.user_id).exclude(status=Ticket.Status.CLOSED).exists():
            raise CustomerHasOpenTicket()
        actor = TicketStatusChange.Actor.OPERATOR if operator else TicketStatusChange.Actor.CUSTOMER
        return change_status(ticket=ticket, new_status=Ticket.Status.WITH_OPERATOR, actor=actor, reason=reason,
                             operator=operator)


def save_answer_to_faq(*, message: Message, key: str | None = None, question: str | None = None) -> FaqEntry:
    """Turn an operator's answer into an FAQ entry (the customer's question + that answer).

    Only operator answers qualify: saving an automatic answer would feed the
    FAQ with its own (or an LLM's) output. Raises :class:`NotAnOperatorAnswer` or
    :class:`NoQuestionBeforeAnswer` (nothing written).
    """
    if message.source != Message.Source.OPERATOR:
        raise NotAnOperatorAnswer()
    if question is None:
        asked = _question_behind(message)
        if asked is None or not asked.text.strip():
            raise NoQuestionBeforeAnswer()
        question = asked.text.strip()
    language = (message.ticket.user.language_code or "")[:2]
    if language not in {"uk", "ru", "en"}:
        from django.conf import settings

        language = settings.SUPPORTBOT.default_language
    base = key or slugify(question, allow_unicode=False)[:60] or "operator-answer"
    candidate, n = base, 2
    while FaqEntry.objects.filter(key=candidate).exists():
        candidate, n = f"{base}-{n}", n + 1
    return FaqEntry.objects.create(key=candidate, question=question[:2000],
                                   answer=message.text, language=language)


def _question_behind(message: Message) -> Message | None:
    """The customer's message that ``message`` answered."""
    return message.in_reply_to or (
        message.ticket.messages.filter(direction=Message.Direction.IN, id__lt=message.id,
                                       kind__in=[Message.Kind.TEXT, Message.Kind.VOICE])
        .exclude(text="").order_by("-id").first()
    )


def question_to_add_as_phrasing(*, answer: Message) -> str | None:
    """The customer question that may become a phrasing of ``answer``'s FAQ entry, or None.

    Only an FAQ answer the customer marked Helpful qualifies, and only while the
    question is not already the entry's question or one of its phrasings.
    """
    if answer.source != Message.Source.FAQ or answer.faq_entry_id is None:
        return None
    if not Feedback.objects.filter(message=answer, helpful=True).exists():
        return None
    asked = _question_behind(answer)
    text = clean(asked.text)[:2000] if asked is not None and asked.direction == Message.Direction.IN else ""
    if not text:
        return None
    entry = answer.faq_entry
    assert entry is not None  # faq_entry_id is set
    phrasings = entry.phrasings.values_list("text", flat=True)
    known = {clean(entry.question).casefold(), *(clean(t).casefold() for t in phrasings)}
    return None if text.casefold() in known else text


@transaction.atomic
def add_question_as_phrasing(*, answer: Message) -> FaqPhrasing:
    """Add the question behind a Helpful FAQ answer to that entry as a phrasing.

    The FAQ learns the customers' own wording; the running bots pick the new
    phrasing up through the usual after-commit embedding sync. Raises
    :class:`NotAHelpfulFaqAnswer` or :class:`AlreadyAPhrasing` (nothing written).
    """
    if answer.source != Message.Source.FAQ or answer.faq_entry_id is None:
        raise NotAHelpfulFaqAnswer(NotAHelpfulFaqAnswer.NOT_FROM_FAQ)
    if not Feedback.objects.filter(message=answer, helpful=True).exists():
        raise NotAHelpfulFaqAnswer()
    text = question_to_add_as_phrasing(answer=answer)
    if text is None:
        raise AlreadyAPhrasing()
    return FaqPhrasing.objects.create(entry_id=answer.faq_entry_id, text=text)


# -- delivery (the outbox) -------------------------------------------------------------
#
# Every outgoing message (FAQ and LLM answers, notices, hand-over texts, operator replies) is
# a row that goes pending -> sending (claimed by one bot worker, with a claim time) -> sent |
# failed | pending again (a retryable error, not before a given time). The bot's delivery path
# (``bot.delivery``) claims, sends and confirms; these functions are its database side.
#
# If the worker dies between its claim and its result, the row would stay "sending" for
# ever. A claim is therefore a lease (OUTBOX_LEASE_SECONDS): a row still "sending" after it
# was abandoned. Whether Telegram got that attempt is unknowable (the Bot API has no
# idempotency key), so the policy is: re-send it ONCE, marked ``delivery_interrupted``
# ("may have arrived twice", shown in the ticket thread); a row abandoned a second time is
# failed for good, never re-sent again (a message that crashes the bot must not crash it for
# ever), and the thread says it may or may not have arrived. Without a crash nothing
# changes: a row is claimed immediately before it is sent, and every step is a conditional
# UPDATE on the claim, so no healthy worker's row is ever taken over.
#
# Order: messages to one ticket go out in the order they were recorded, per target: the
# customer's chat, or the operators' group (DESK rows, ``chat_id`` set). A row is claimed only
# when no earlier row of its ticket to the same target is still pending or sending, so an answer
# never overtakes the "I heard: ..." before it, nor a reply waiting out a 429; and a post to the
# group waiting for the group's 20-a-minute slot never holds up the customer's own answers.
MAX_DELIVERY_ATTEMPTS = 5
_UNDELIVERED = (Message.Delivery.PENDING, Message.Delivery.SENDING)


def outbox_lease() -> timedelta:
    """``OUTBOX_LEASE_SECONDS``, as this process read it."""
    from django.conf import settings

    return settings.SUPPORTBOT.outbox.lease


def requeue_abandoned(*, now=None, lease: timedelta | None = None) -> int:
    """Recover messages whose worker stopped mid-send (claim older than the lease).

    Returns how many rows were recovered. Each recovery is a conditional UPDATE on the
    old claim time: of several workers recovering at once, one wins, and a worker that
    still holds its claim is never overtaken (its claim time is within the lease).
    """
    stale = list(
        Message.objects.stuck(lease=lease if lease is not None else outbox_lease(), now=now)
        .order_by("id").values_list("id", "delivery_claimed_at", "delivery_interrupted", "delivery_attempts")
    )
    recovered = 0
    for message_id, claimed_at, interrupted, attempts in stale:
        since = f"claimed {claimed_at:%Y-%m-%d %H:%M:%S} UTC"
        give_up = interrupted or attempts + 1 >= MAX_DELIVERY_ATTEMPTS
        if give_up:
            status = Message.Delivery.FAILED
            error = (f"the bot stopped {'again ' if interrupted else ''}while sending this reply ({since}) "
                     f"{'' if interrupted else 'on its last attempt '}and it was not re-sent: "
                     "it may or may not have arrived")
        else:
            status = Message.Delivery.PENDING
            error = f"the bot stopped while sending this reply ({since}); re-sent once, may arrive twice"
        won = Message.objects.filter(
            pk=message_id, delivery_status=Message.Delivery.SENDING, delivery_claimed_at=claimed_at,
        ).update(delivery_status=status, delivery_interrupted=True, delivery_error=error[:255],
                 delivery_attempts=F("delivery_attempts") + 1, delivery_not_before=None)
        if won:
            recovered += 1
            log.warning("message %s was abandoned mid-send (%s): %s", message_id, since,
                        "failed for good" if give_up else "re-queued once, marked as possibly duplicated")
    return recovered


def _undelivered(ticket_id: int, chat_id: int | None = None):
    """The ticket's messages to one target that have not gone out yet (pending or being sent):
    to the customer (``chat_id`` None) or to the operators' group ``chat_id`` (DESK rows)."""
    return Message.objects.filter(ticket_id=ticket_id, delivery_status__in=_UNDELIVERED, chat_id=chat_id)


def _waits_for_earlier(message_id: int, ticket_id: int, chat_id: int | None = None) -> bool:
    """An earlier message of the same ticket to the same target has not gone out yet."""
    return _undelivered(ticket_id, chat_id).filter(id__lt=message_id).exists()


def _claim(message_id: int, now) -> Message | None:
    won = Message.objects.filter(pk=message_id, delivery_status=Message.Delivery.PENDING).update(
        delivery_status=Message.Delivery.SENDING, delivery_claimed_at=now)
    if not won:
        return None
    return Message.objects.select_related("ticket", "ticket__user", "in_reply_to").get(pk=message_id)


def claim_outbox(*, limit: int = 20, recover: bool = True) -> list[Message]:
    """Claim messages that are due for delivery (recovering abandoned ones first, unless
    ``recover`` is False: a worker claiming row after row recovers once per pass).

    Due: pending, past its ``delivery_not_before``, and the first undelivered message of its
    ticket. The conditional UPDATE is the claim: of several bot workers polling the same
    rows, exactly one moves a row from pending to sending. The claim time it writes is the
    worker's lease on the row, and its fence (``delivery_failed``, ``mark_sent``).
    """
    if recover:
        requeue_abandoned()
    now = timezone.now()
    claimed: list[Message] = []
    seen: set[tuple[int, int | None]] = set()
    due = (Message.objects.filter(delivery_status=Message.Delivery.PENDING)
           .filter(Q(delivery_not_before__isnull=True) | Q(delivery_not_before__lte=now)))
    # Customers' messages and the operators' group's posts are looked at apart, customers' first:
    # a backlog of group posts (20 a minute) never crowds the customers' messages out of a pass.
    candidates = [
        *due.filter(chat_id__isnull=True).order_by("id").values_list("id", "ticket_id", "chat_id")[: limit * 4],
        *due.filter(chat_id__isnull=False).order_by("id").values_list("id", "ticket_id", "chat_id")[: limit * 4],
    ]
    for message_id, ticket_id, chat_id in candidates:
        if len(claimed) >= limit:
            break
        if (ticket_id, chat_id) in seen:
            continue
        seen.add((ticket_id, chat_id))
        if _waits_for_earlier(message_id, ticket_id, chat_id):
            continue
        message = _claim(message_id, now)
        if message is not None:
            claimed.append(message)
    return claimed


def release(*, message_ids: list[int], claimed_at) -> None:
    """Give back messages this worker claimed but will not send now (an earlier one failed):
    pending again, for any worker's delivery loop to send in order."""
    Message.objects.filter(pk__in=message_ids, delivery_status=Message.Delivery.SENDING,
                           delivery_claimed_at=claimed_at).update(delivery_status=Message.Delivery.PENDING)


def delivery_failed(*, message_id: int, error: str, final: bool, claimed_at=None,
                    retry_at=None, counts: bool = True) -> bool:
    """Record a failed attempt: failed for good (``final`` or too many attempts) or pending again.

    ``retry_at``: not sent again before this time (Telegram's ``retry_after``, a back-off).
    ``counts=False``: the attempt does not count towards :data:`MAX_DELIVERY_ATTEMPTS` (a 429
    is Telegram asking to wait, not a failure of the message).
    ``claimed_at``: the worker's claim; the row changes only while it still holds that
    claim, so a worker that outlived its lease cannot put back a row another worker
    recovered (and is sending). Returns whether the row changed.
    """
    rows = Message.objects.filter(pk=message_id)
    if claimed_at is not None:
        rows = rows.filter(delivery_status=Message.Delivery.SENDING, delivery_claimed_at=claimed_at)
    status: Value | Case
    if final:
        status = Value(Message.Delivery.FAILED)
    elif not counts:
        status = Value(Message.Delivery.PENDING)
    else:  # CASE reads the row as it was: the attempt being recorded is attempt n + 1
        status = Case(When(delivery_attempts__gte=MAX_DELIVERY_ATTEMPTS - 1, then=Value(Message.Delivery.FAILED)),
                      default=Value(Message.Delivery.PENDING))
    changes = {"delivery_error": error[:255], "delivery_status": status, "delivery_not_before": retry_at}
    if counts or final:
        changes["delivery_attempts"] = F("delivery_attempts") + 1
    changed = rows.update(**changes)
    if not changed:
        log.warning("delivery result of message %s dropped: its claim was taken over (%s)", message_id, error)
    return bool(changed)


def parts_delivered(*, message_id: int, parts: int, claimed_at) -> None:
    """Part ``parts`` of a long message went out: a retry goes on with the next part."""
    Message.objects.filter(pk=message_id, delivery_status=Message.Delivery.SENDING,
                           delivery_claimed_at=claimed_at).update(delivery_parts_sent=parts)


def mark_customer_blocked(*, user_id: int) -> None:
    TelegramUser.objects.filter(pk=user_id).update(is_blocked=True)


# -- update claims (webhook and polling: each Telegram update is handled once) -------------------
#: Telegram redelivers an update for up to 24 h; a claim must outlive that, and no longer.
UPDATE_CLAIM_KEEP = timedelta(hours=24)


def claim_update(*, bot_id: int, update_id: int) -> bool:
    """Claim one update for this process: True for the one caller that claimed it, False for
    every other (a redelivery, a retry, a second worker), whichever came first.

    One INSERT under the ``one_claim_per_update`` constraint, in its own savepoint so a
    caller's transaction survives the loss. Never "check, then insert" (two workers both
    see no row) and never "the highest id seen" (updates arrive out of order). Any other
    database failure (the database is down) is raised: the caller must not do the work,
    and a webhook answers 503 so that Telegram delivers the update again later.
    """
    try:
        with transaction.atomic():
            UpdateClaim.objects.create(bot_id=bot_id, update_id=update_id)
    except IntegrityError:
        return False
    return True


def prune_update_claims(*, now: datetime | None = None, keep: timedelta = UPDATE_CLAIM_KEEP,
                        batch: int = 1000) -> int:
    """Delete at most ``batch`` claims older than ``keep``; the number deleted.

    Bounded, so a backlog after a long pause never becomes one long DELETE holding locks
    while updates are being claimed: the caller repeats while a full batch came back.
    The ids are read first because MySQL cannot DELETE ... WHERE id IN (SELECT ... LIMIT).
    """
    cutoff = (now or timezone.now()) - keep
    ids = list(UpdateClaim.objects.filter(claimed_at__lt=cutoff).order_by("claimed_at")
               .values_list("pk", flat=True)[:batch])
    if not ids:
        return 0
    deleted, _ = UpdateClaim.objects.filter(pk__in=ids).delete()
    return deleted


# -- the task queue (supportbot.tasks): a task delivered again after its worker died --------------
#: Clocks of two hosts (the webhook that claimed an update, the worker that logs it) may differ.
CLOCK_SKEW = timedelta(minutes=1)


def handled_before(*, customer_id: int, telegram_message_id: int, bot_id: int, update_id: int,
                   since: datetime) -> bool:
    """Whether an earlier run of this customer message's task already recorded a reply.

    A worker that dies before acknowledging its task gets the task delivered again. When the
    first run recorded a reply, the outbox sends it (once: delivery claims the row) and the
    message must not be answered again: True. When it logged the message but died before any
    reply (in the middle of transcribing or of an LLM answer), that log row is removed so the
    new run logs the message once and answers it: False.

    Only what was logged after this update was claimed counts (less a minute for clocks that
    differ between hosts): the sandbox numbers a chat's messages from 1 again after a restart,
    so an old message may share the id. Where the claim is gone (pruned after 24 h), ``since``.
    """
    claimed_at = (UpdateClaim.objects.filter(bot_id=bot_id, update_id=update_id)
                  .values_list("claimed_at", flat=True).first())
    if claimed_at is not None:
        since = claimed_at - CLOCK_SKEW
    incoming = Message.objects.filter(ticket__user_id=customer_id, direction=Message.Direction.IN,
                                      telegram_message_id=telegram_message_id, created_at__gte=since)
    if Message.objects.filter(in_reply_to__in=incoming).exists():
        return True
    incoming.delete()
    return False
