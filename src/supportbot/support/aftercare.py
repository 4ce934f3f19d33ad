"""After the operator: the rating question, "ask the bot instead", and tickets that wait too long.

- **Rating (CSAT)**: resolving a ticket (``services.resolve_ticket``) records the question "Did
  we solve your problem?" in the customer's language (source ``csat``); the delivery path sends
  it with buttons 1-5 (``bot.render.rating_keyboard``). A click is checked against the database
  like Helpful / Not helpful (:func:`record_rating`): the question must exist, be the clicking
  customer's, and take one rating. The rating is kept per ticket and per operator: the ticket's
  assignee, or else the operator who resolved it.
- **The reopen window** lives where a customer's message finds its ticket
  (``services._active_ticket``): within ``REOPEN_WINDOW_HOURS`` of the resolve the resolved
  ticket is opened again, after it the ticket is closed and a new one starts.
- **Ask the bot instead** (:func:`back_to_bot`): a customer waiting for a person puts the ticket
  back to the bot, which answers their next questions again.
- **Overdue** (:class:`OverdueWatch`): a ticket waiting for a person longer than
  ``OVERDUE_MINUTES`` is flagged in the queue (the admin computes it from ``waiting_since``) and
  re-notified: a warning in the log, ``supportbot_overdue_tickets_total``, and each registered
  notifier (the operators' Telegram group posts into the ticket's topic). Every bot process
  runs a watch; a conditional UPDATE of ``overdue_notified_at`` makes one of them notify.

Sync functions (the ORM) for the bot's worker threads, the admin and the tests; the watch is
plain async Python (no aiogram).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import Enum

from django.db import DatabaseError, IntegrityError, transaction
from django.db.models import F, Q
from django.utils import timezone

from supportbot.background import in_worker_thread
from supportbot.i18n import gettext_for, pick_language
from supportbot.ops import metrics
from supportbot.support.models import CsatRating, Message, Ticket, TicketStatusChange

log = logging.getLogger(__name__)

#: ``REOPEN_WINDOW_HOURS``'s default, for callers that pass none (the CLI, tests).
DEFAULT_REOPEN_WINDOW = timedelta(hours=72)
#: ``OVERDUE_MINUTES``'s default.
DEFAULT_OVERDUE_AFTER = timedelta(minutes=30)
#: Scores a customer can give (the buttons under the rating question).
SCORES = range(1, 6)


# -- the rating question ----------------------------------------------------------------------------
def rating_question(language: str) -> str:
    _ = gettext_for(language)
    return _("Did we solve your problem? Please rate our help: 1 is bad, 5 is excellent.")


def ask_for_rating(*, ticket: Ticket, operator=None, default_language: str = "en") -> Message:
    """Record the rating question for the customer of a ticket just resolved, pending for the
    delivery path (which adds the buttons). Called by ``services.resolve_ticket`` inside its
    transaction. ``operator``: who resolved it (kept on the question: the rating's operator when
    the ticket has no assignee); ``default_language``: for a customer whose Telegram language is
    not one of ours (``DEFAULT_LANGUAGE``)."""
    language = pick_language(ticket.user.language_code, default_language)
    return Message.objects.create(
        ticket=ticket, direction=Message.Direction.OUT, kind=Message.Kind.TEXT, text=rating_question(language),
        source=Message.Source.CSAT, operator=operator, delivery_status=Message.Delivery.PENDING,
    )


class RatingOutcome(str, Enum):
    STORED = "stored"
    ALREADY_RATED = "already_rated"
    NOT_YOURS = "not_yours"
    #: No such rating question, or a score that no button gives (forged callback data).
    UNKNOWN = "unknown"


def record_rating(*, message_id: int, customer_id: int, score: int) -> RatingOutcome:
    """Store a click on the rating buttons, checked against the database (never trusting the
    callback data): a rating question of this customer's ticket, rated once."""
    if score not in SCORES:
        return RatingOutcome.UNKNOWN
    question = (Message.objects.select_related("ticket")
                .filter(pk=message_id, direction=Message.Direction.OUT, source=Message.Source.CSAT).first())
    if question is None:
        return RatingOutcome.UNKNOWN
    if question.ticket.user_id != customer_id:
        return RatingOutcome.NOT_YOURS
    if CsatRating.objects.filter(question=question).exists():
        return RatingOutcome.ALREADY_RATED
    try:
        with transaction.atomic():  # two clicks at once: the one-to-one question decides
            CsatRating.objects.create(question=question, ticket=question.ticket, score=score,
                                      operator_id=question.ticket.assignee_id or question.operator_id)
    except IntegrityError:
        return RatingOutcome.ALREADY_RATED
    return RatingOutcome.STORED


# -- ask the bot instead -------------------------------------------------------------------------------
#: Statuses in which the bot stays quiet for a person: the customer may call the bot back.
WAITING_FOR_A_PERSON = (Ticket.Status.WITH_OPERATOR, Ticket.Status.ANSWERED)


class BackToBotOutcome(str, Enum):
    DONE = "done"
    #: The ticket no longer waits for a person (the bot answers already, or it was closed).
    STALE = "stale"
    NOT_YOURS = "not_yours"
    UNKNOWN = "unknown"


@transaction.atomic
def back_to_bot(*, ticket_id: int, customer_id: int) -> BackToBotOutcome:
    """The customer pressed "Ask the bot instead" while waiting for a person: the ticket is
    open again (the bot answers their next questions; ``/operator`` calls a person back)."""
    from supportbot.support.services import change_status  # services calls this module too

    ticket = Ticket.objects.select_for_update().filter(pk=ticket_id).first()
    if ticket is None:
        return BackToBotOutcome.UNKNOWN
    if ticket.user_id != customer_id:
        return BackToBotOutcome.NOT_YOURS
    if ticket.status not in WAITING_FOR_A_PERSON:
        return BackToBotOutcome.STALE
    change_status(ticket=ticket, new_status=Ticket.Status.OPEN, actor=TicketStatusChange.Actor.CUSTOMER,
                  reason="asked the bot instead")
    ticket.waiting_notice_sent = False  # a later hand-over tells the customer again
    ticket.save(update_fields=["waiting_notice_sent"])
    return BackToBotOutcome.DONE


def waits_for_person(*, ticket_id: int) -> bool:
    """The ticket is with an operator now (the delivery path adds "Ask the bot instead" under
    the bot's notices then)."""
    return Ticket.objects.filter(pk=ticket_id, status=Ticket.Status.WITH_OPERATOR).exists()


# -- overdue tickets -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class OverdueTicket:
    """A ticket that has waited for a person longer than ``OVERDUE_MINUTES``."""

    ticket_id: int
    customer_id: int
    customer_name: str
    waiting_since: datetime
    waited: timedelta
    assignee_id: int | None
    #: The customer's last message (what they wait for an answer to).
    last_question: str

    @property
    def waited_minutes(self) -> int:
        return int(self.waited.total_seconds() // 60)


#: Called once per overdue ticket (and again every ``OVERDUE_MINUTES`` while it still waits), by
#: the one bot process that marked it. The operators' group desk registers one to post into the
#: ticket's topic.
OverdueNotifier = Callable[[OverdueTicket], Awaitable[object]]


def is_overdue(ticket: Ticket, *, now: datetime, overdue_after: timedelta) -> bool:
    """The queue's flag: the ticket waits for a person, for longer than ``overdue_after``."""
    return (ticket.status == Ticket.Status.WITH_OPERATOR and ticket.waiting_since is not None
            and now - ticket.waiting_since > overdue_after)


def _due(now: datetime, overdue_after: timedelta) -> Q:
    """Waiting longer than ``overdue_after`` and not reminded about during the last
    ``overdue_after`` of this wait."""
    cutoff = now - overdue_after
    return (Q(status=Ticket.Status.WITH_OPERATOR, waiting_since__lt=cutoff)
            & (Q(overdue_notified_at__isnull=True) | Q(overdue_notified_at__lt=F("waiting_since"))
               | Q(overdue_notified_at__lt=cutoff)))


def overdue_tickets(*, now: datetime | None = None, overdue_after: timedelta = DEFAULT_OVERDUE_AFTER,
                    limit: int = 100) -> list[Ticket]:
    """Overdue tickets due a reminder, longest waiting first (read only)."""
    now = now or timezone.now()
    return list(Ticket.objects.filter(_due(now, overdue_after)).select_related("user")
                .order_by("waiting_since", "id")[:limit])


def claim_overdue(*, now: datetime | None = None, overdue_after: timedelta = DEFAULT_OVERDUE_AFTER,
                  limit: int = 100) -> list[OverdueTicket]:
    """Mark the overdue tickets due a reminder as reminded now, and return those this caller
    marked: the conditional UPDATE (the same condition, on one row) is the claim, so of several
    bot processes exactly one notifies about each ticket."""
    now = now or timezone.now()
    claimed = []
    for ticket in overdue_tickets(now=now, overdue_after=overdue_after, limit=limit):
        if not Ticket.objects.filter(_due(now, overdue_after), pk=ticket.pk).update(overdue_notified_at=now):
            continue  # another process reminded, or an operator answered, a moment ago
        last = (Message.objects.filter(ticket=ticket, direction=Message.Direction.IN).order_by("-id")
                .values_list("text", flat=True).first())
        assert ticket.waiting_since is not None
        user = ticket.user
        name = " ".join(p for p in (user.first_name, user.last_name) if p) or (
            f"@{user.username}" if user.username else str(user.pk))
        claimed.append(OverdueTicket(
            ticket_id=ticket.pk, customer_id=ticket.user_id, customer_name=name,
            waiting_since=ticket.waiting_since, waited=now - ticket.waiting_since,
            assignee_id=ticket.assignee_id, last_question=last or ""))
    return claimed


class OverdueWatch:
    """The bot process's reminder loop: every ``interval`` seconds, the overdue tickets this
    process claimed are logged, counted and handed to each notifier in :attr:`notifiers`."""

    def __init__(self, *, overdue_after: timedelta = DEFAULT_OVERDUE_AFTER, interval: float = 60.0,
                 notifiers: list[OverdueNotifier] | None = None) -> None:
        self.overdue_after = overdue_after
        self.interval = interval
        #: Add a notifier here (before or after start) to hear about each overdue ticket.
        self.notifiers: list[OverdueNotifier] = list(notifiers or [])

    async def check_once(self, now: datetime | None = None) -> list[OverdueTicket]:
        claimed = await in_worker_thread(claim_overdue)(now=now, overdue_after=self.overdue_after)
        for ticket in claimed:
            metrics.OVERDUE_TICKETS.inc()
            log.warning("ticket #%s has waited %d min for a person (over %g min): reminding the operators",
                        ticket.ticket_id, ticket.waited_minutes, self.overdue_after.total_seconds() / 60,
                        extra={"ticket_id": ticket.ticket_id})
            for notify in self.notifiers:
                try:
                    await notify(ticket)
                except Exception:  # one broken notifier never stops the others, nor the loop
                    log.exception("overdue notifier %r failed for ticket #%s", notify, ticket.ticket_id)
        return claimed

    async def run(self) -> None:
        while True:
            try:
                await self.check_once()
            except DatabaseError as exc:
                log.warning("could not check for overdue tickets: %s", exc)
            await asyncio.sleep(self.interval)
