"""The operators' Telegram group as a second desk (``OPERATOR_CHAT_ID``): the database side.

A forum supergroup with one topic per customer (:class:`~supportbot.support.models.ForumTopic`,
reused for the customer's later tickets). What goes into a topic is recorded here as messages
of the ticket with ``direction=DESK`` and ``chat_id`` = the group (``message_thread_id`` = the
topic, when known), pending; the bot's one delivery path (``bot.delivery`` with
``bot.group_desk``) sends them in order, within Telegram's 20 messages a minute per group,
creating the topic on the first post and re-creating it when someone deleted it. Nothing here
calls Telegram, so the admin, the CLI and the bot's handlers record the same way:

- **copies of the conversation** (signal receivers, connected by :func:`connect` from the
  app's ``ready()``): the hand-over (its reason and the customer's recent messages, voice
  transcripts included), every later customer message while the ticket is with a person,
  replies an operator sent from the web admin, and status changes (taken, resolved, closed,
  reopened, back to the bot);
- **topic state**: a status notice is also the topic's open/closed switch. After posting one,
  the bot closes the topic when the customer has no ticket with a person any more (resolved,
  closed, back to the bot), and reopens it when they have: so closing in the web closes the
  topic, and the admin never talks to Telegram itself;
- **operators writing in a topic** (:func:`reply_from_topic`, :func:`close_from_topic`,
  :func:`resolve_from_topic`): the Telegram user is mapped to a Django user through
  :class:`~supportbot.support.models.OperatorAccount`; the reply goes through
  ``services.do_operator_reply`` (the outbox: delivered once) and the operator's message is
  logged as a DESK row with its Telegram id, so a redelivered update never replies twice.

Off without ``OPERATOR_CHAT_ID``: every receiver returns at once.
"""

from __future__ import annotations

import contextvars
import logging
from dataclasses import dataclass
from enum import Enum

from django.db import IntegrityError, transaction
from django.db.models.signals import post_save

from supportbot.support import services
from supportbot.support.errors import EmptyReply, TicketClosed
from supportbot.support.models import (
    ForumTopic,
    Message,
    OperatorAccount,
    TelegramUser,
    Ticket,
    TicketStatusChange,
)

log = logging.getLogger(__name__)

#: Telegram's limit on a topic's name.
MAX_TOPIC_NAME = 128
#: Messages of the ticket quoted in the hand-over post (the newest ones).
DIGEST_MESSAGES = 10
#: Each quoted message is cut to this many characters in the hand-over post.
DIGEST_LINE = 600
#: Statuses in which a person owns the ticket: the customer's topic is open, their messages copied.
WITH_A_PERSON = (Ticket.Status.WITH_OPERATOR, Ticket.Status.ANSWERED)

_KIND_LABELS: dict[str, str] = {
    Message.Kind.PHOTO: "[photo]",
    Message.Kind.STICKER: "[sticker]",
    Message.Kind.DOCUMENT: "[document]",
    Message.Kind.OTHER: "[a message the bot cannot show]",
}

#: Set while :func:`reply_from_topic` records the reply: it came from the topic, so it is not
#: copied back into it.
_replying_from_topic: contextvars.ContextVar[bool] = contextvars.ContextVar("replying_from_topic", default=False)


def operator_chat_id() -> int | None:
    """``OPERATOR_CHAT_ID`` as this process read it (None: no group desk)."""
    from django.conf import settings

    cfg = getattr(settings, "SUPPORTBOT", None)
    desk = getattr(cfg, "desk", None)
    return getattr(desk, "operator_chat_id", None)


# -- names and texts -----------------------------------------------------------------------------
def customer_label(user: TelegramUser) -> str:
    name = " ".join(p for p in (user.first_name, user.last_name) if p).strip()
    handle = f"@{user.username}" if user.username else ""
    return " ".join(p for p in (name, handle) if p) or f"Customer {user.pk}"


def topic_name(ticket: Ticket) -> str:
    """The customer's name, @username and ticket id, within Telegram's 128 characters (the
    name is shortened, never the ticket id)."""
    suffix = f" · #{ticket.pk}"
    label = customer_label(ticket.user)
    room = MAX_TOPIC_NAME - len(suffix)
    if len(label) > room:
        label = label[: room - 1].rstrip() + "…"
    return label + suffix


def _operator_name(user) -> str:
    if user is None:
        return "the system"
    full = user.get_full_name() if hasattr(user, "get_full_name") else ""
    return full or user.get_username()


def _quoted(message: Message) -> str:
    """One message of the conversation as the topic shows it."""
    text = message.text.strip()
    if message.direction == Message.Direction.IN:
        if message.kind == Message.Kind.VOICE:
            return f"🎤 {text}" if text else "🎤 (a voice message that could not be transcribed)"
        label = _KIND_LABELS.get(message.kind)
        if label:
            return f"{label} {text}".strip()
        return text
    if message.source == Message.Source.OPERATOR:
        return f"💬 {_operator_name(message.operator)}: {text}"
    return f"🤖 {message.get_source_display()}: {text}"


def _digest_lines(ticket: Ticket) -> list[str]:
    """The ticket's conversation since its last post in the topic (the newest
    :data:`DIGEST_MESSAGES`): the customer's messages and transcripts, the bot's answers and the
    operators' replies (notices to the customer left out)."""
    last_post = (Message.objects.filter(ticket=ticket, direction=Message.Direction.DESK)
                 .order_by("-id").values_list("id", flat=True).first())
    rows = (Message.objects.filter(ticket=ticket)
            .exclude(direction=Message.Direction.DESK)
            .exclude(direction=Message.Direction.OUT, source__in=(Message.Source.SYSTEM, Message.Source.SMALLTALK,
                                                                  Message.Source.CSAT))
            .select_related("operator"))
    if last_post is not None:
        rows = rows.filter(id__gt=last_post)
    recent = list(rows.order_by("-id")[:DIGEST_MESSAGES])[::-1]
    lines = []
    for row in recent:
        quoted = _quoted(row)
        if len(quoted) > DIGEST_LINE:
            quoted = quoted[: DIGEST_LINE - 1] + "…"
        lines.append(("👤 " if row.direction == Message.Direction.IN else "") + quoted)
    return lines


# -- recording posts -------------------------------------------------------------------------------
def _topic_thread(customer_id: int, chat_id: int) -> int | None:
    return (ForumTopic.objects.filter(customer_id=customer_id, chat_id=chat_id)
            .values_list("message_thread_id", flat=True).first())


def post(*, ticket: Ticket, text: str, source: str, chat_id: int, in_reply_to: Message | None = None,
         operator=None) -> Message:
    """Record a post into the customer's topic, pending for the bot's delivery path."""
    return Message.objects.create(
        ticket=ticket, direction=Message.Direction.DESK, kind=Message.Kind.TEXT, text=text[:services.MAX_TEXT],
        source=source, in_reply_to=in_reply_to, operator=operator, delivery_status=Message.Delivery.PENDING,
        chat_id=chat_id, message_thread_id=_topic_thread(ticket.user_id, chat_id),
    )


def _in_the_desk(ticket: Ticket) -> bool:
    """The ticket has been posted into the group before."""
    return Message.objects.filter(ticket=ticket, direction=Message.Direction.DESK).exists()


def _message_saved(sender, instance: Message, created: bool, raw: bool = False, **kwargs) -> None:
    """A customer message while a person owns the ticket, or an operator's reply from the web
    admin: copied into the customer's topic."""
    if not created or raw or instance.direction == Message.Direction.DESK:
        return
    chat_id = operator_chat_id()
    if chat_id is None:
        return
    ticket = instance.ticket
    if instance.direction == Message.Direction.IN:
        # The status as stored now (the instance's ticket may be an older copy).
        status = Ticket.objects.filter(pk=ticket.pk).values_list("status", flat=True).first()
        if status in WITH_A_PERSON:
            post(ticket=ticket, text="👤 " + _quoted(instance), source=Message.Source.USER, chat_id=chat_id,
                 in_reply_to=instance)
    elif (instance.source == Message.Source.OPERATOR and not _replying_from_topic.get()
          and _in_the_desk(ticket)):
        post(ticket=ticket, text=f"💬 {_operator_name(instance.operator)} (web): {instance.text}",
             source=Message.Source.OPERATOR, chat_id=chat_id, operator=instance.operator)


def _status_changed(sender, instance: TicketStatusChange, created: bool, raw: bool = False, **kwargs) -> None:
    """Hand-over, take, resolve, close, reopen, back to the bot: a notice in the topic (and, when
    the bot posts it, the topic opened or closed to match)."""
    if not created or raw:
        return
    chat_id = operator_chat_id()
    if chat_id is None:
        return
    text = status_notice(instance)
    if text is None:
        return
    ticket = instance.ticket
    handed_over = instance.new_status in WITH_A_PERSON and instance.old_status not in WITH_A_PERSON
    if not handed_over and not _in_the_desk(ticket):
        return  # never in the group: nothing to tell it
    if handed_over:
        lines = _digest_lines(ticket)
        if lines:
            text += "\n\n" + "\n".join(lines)
    post(ticket=ticket, text=text, source=Message.Source.SYSTEM, chat_id=chat_id, operator=instance.changed_by)


def status_notice(change: TicketStatusChange) -> str | None:
    """What the topic is told about a status change (None: nothing)."""
    ticket_ref = f"Ticket #{change.ticket_id}"
    who = _operator_name(change.changed_by) if change.changed_by_id else change.get_actor_display().lower()
    old, new = change.old_status, change.new_status
    if old == new:  # the assignment changed (services.take_ticket / release_ticket)
        if change.reason.startswith("taken"):
            return f"👤 {ticket_ref} taken by {who}."
        if change.reason.startswith("released"):
            return f"👐 {ticket_ref} released by {who}: back in the queue."
        return None
    if new in WITH_A_PERSON:
        if old in WITH_A_PERSON:
            return None  # a reply, or the customer wrote again after one: copied as such
        # A hand-over, or a reopen (by an operator, or by an operator's reply to a resolved ticket).
        user = change.ticket.user
        language = f", language {user.language_code}" if user.language_code else ""
        verb = "reopened" if old in (Ticket.Status.RESOLVED, Ticket.Status.CLOSED) else "handed over"
        return f"🙋 {ticket_ref} {verb} ({change.reason}). {customer_label(user)}{language}."
    if old not in WITH_A_PERSON:
        return None  # the bot's own business (an open ticket closed, a resolved one reopened to the bot)
    if new == Ticket.Status.RESOLVED:
        return f"✅ {ticket_ref} resolved by {who}. The customer is asked to rate the help."
    if new == Ticket.Status.CLOSED:
        return f"🔒 {ticket_ref} closed by {who} ({change.reason})."
    if new == Ticket.Status.OPEN:
        return f"↩️ {ticket_ref}: the customer went back to the bot ({change.reason})."
    return None


def post_overdue(*, ticket_id: int, waited_minutes: int, last_question: str = "") -> Message | None:
    """The overdue reminder (``aftercare.OverdueWatch``'s notifier): "⏰ waiting N min" in the
    ticket's topic. None without a group desk, or for a ticket never posted to the group."""
    chat_id = operator_chat_id()
    ticket = Ticket.objects.select_related("user").filter(pk=ticket_id).first()
    if chat_id is None or ticket is None or not _in_the_desk(ticket):
        return None
    text = f"⏰ Ticket #{ticket_id}: {customer_label(ticket.user)} has been waiting {waited_minutes} min for a reply."
    if last_question:
        text += f"\n👤 {last_question[:DIGEST_LINE]}"
    return post(ticket=ticket, text=text, source=Message.Source.SYSTEM, chat_id=chat_id)


def connect() -> None:
    """Connect the receivers (the support app's ``ready()``)."""
    post_save.connect(_message_saved, sender=Message, dispatch_uid="group_desk_message_saved")
    post_save.connect(_status_changed, sender=TicketStatusChange, dispatch_uid="group_desk_status_changed")


# -- the bot's side: topics ---------------------------------------------------------------------------
@dataclass(frozen=True)
class TopicTarget:
    """Where a DESK post goes: the customer, the topic's wanted name, its thread (None: none yet)."""

    customer_id: int
    name: str
    message_thread_id: int | None
    topic_name: str  # the name the topic has now ("" when there is none)


def target_of(*, message_id: int) -> TopicTarget:
    message = Message.objects.select_related("ticket", "ticket__user").get(pk=message_id)
    ticket = message.ticket
    topic = ForumTopic.objects.filter(customer_id=ticket.user_id).first()
    return TopicTarget(ticket.user_id, topic_name(ticket), topic.message_thread_id if topic else None,
                       topic.name if topic else "")


def save_topic(*, customer_id: int, chat_id: int, message_thread_id: int, name: str,
               replaces: int | None = None) -> int:
    """Remember the customer's topic (just created by the bot); returns the topic to use.

    ``replaces``: the topic it re-creates (deleted by hand). Another bot process may have
    created or re-created it a moment earlier: then that one is kept and returned, and the
    caller deletes its own."""
    if replaces is None:
        try:
            with transaction.atomic():
                ForumTopic.objects.create(customer_id=customer_id, chat_id=chat_id,
                                          message_thread_id=message_thread_id, name=name[:MAX_TOPIC_NAME])
            return message_thread_id
        except IntegrityError:
            pass
    else:
        updated = ForumTopic.objects.filter(customer_id=customer_id, message_thread_id=replaces).update(
            chat_id=chat_id, message_thread_id=message_thread_id, name=name[:MAX_TOPIC_NAME])
        if updated:
            return message_thread_id
    existing = ForumTopic.objects.filter(customer_id=customer_id).values_list("message_thread_id", flat=True).first()
    if existing is None:  # the row went away meanwhile (customer deleted): this one it is
        ForumTopic.objects.create(customer_id=customer_id, chat_id=chat_id, message_thread_id=message_thread_id,
                                  name=name[:MAX_TOPIC_NAME])
        return message_thread_id
    return existing


def renamed(*, customer_id: int, name: str) -> None:
    ForumTopic.objects.filter(customer_id=customer_id).update(name=name[:MAX_TOPIC_NAME])


def posted_to(*, message_id: int, message_thread_id: int) -> None:
    """The topic a DESK post went to (it may have been re-created since the post was recorded)."""
    Message.objects.filter(pk=message_id).update(message_thread_id=message_thread_id)


def topic_should_be_open(*, customer_id: int) -> bool:
    """A person owns one of the customer's tickets: their topic is open."""
    return Ticket.objects.filter(user_id=customer_id, status__in=WITH_A_PERSON).exists()


# -- the bot's side: operators writing in a topic --------------------------------------------------
class TopicOutcome(str, Enum):
    SENT = "sent"
    CLOSED = "closed"
    RESOLVED = "resolved"
    #: A redelivered update: done the first time, nothing more.
    DUPLICATE = "duplicate"
    #: Not a customer's topic (the General topic, the team's own topics): ignored.
    UNKNOWN_TOPIC = "unknown_topic"
    #: The Telegram user is not linked to an active staff account (admin: Operator accounts).
    UNMAPPED = "unmapped"
    #: The customer has no open ticket (closed): nothing to reply to.
    NO_TICKET = "no_ticket"
    #: /resolve or /close on a ticket that already was.
    UNCHANGED = "unchanged"
    #: Only white space: nothing to send.
    EMPTY = "empty"


@dataclass(frozen=True)
class TopicResult:
    outcome: TopicOutcome
    ticket_id: int | None = None
    message_id: int | None = None


def _operator(telegram_user_id: int):
    account = (OperatorAccount.objects.select_related("user").filter(telegram_user_id=telegram_user_id).first())
    if account is None or not account.user.is_active or not account.user.is_staff:
        return None
    return account.user


def _topic_ticket(chat_id: int, message_thread_id: int) -> tuple[ForumTopic | None, Ticket | None]:
    topic = ForumTopic.objects.filter(chat_id=chat_id, message_thread_id=message_thread_id).first()
    if topic is None:
        return None, None
    ticket = (Ticket.objects.select_for_update().filter(user_id=topic.customer_id)
              .exclude(status=Ticket.Status.CLOSED).order_by("-id").first())
    return topic, ticket


def _logged(chat_id: int, telegram_message_id: int) -> bool:
    return Message.objects.filter(direction=Message.Direction.DESK, chat_id=chat_id,
                                  telegram_message_id=telegram_message_id).exists()


def _log_operator_message(ticket: Ticket, *, operator, text: str, chat_id: int, message_thread_id: int,
                          telegram_message_id: int) -> None:
    Message.objects.create(
        ticket=ticket, direction=Message.Direction.DESK, kind=Message.Kind.TEXT, text=text[:services.MAX_TEXT],
        source=Message.Source.OPERATOR, operator=operator, telegram_message_id=telegram_message_id,
        chat_id=chat_id, message_thread_id=message_thread_id, delivery_status=Message.Delivery.SENT,
    )


@transaction.atomic
def reply_from_topic(*, chat_id: int, message_thread_id: int, telegram_user_id: int, telegram_message_id: int,
                     text: str) -> TopicResult:
    """An operator wrote ``text`` in a customer's topic: queue it as the operator's reply to the
    customer's open ticket (``services.do_operator_reply``: the outbox delivers it once, and the
    web thread shows who answered). The Telegram message is logged with its id, in the same
    transaction, so the same update handled again (a redelivery) finds it and sends nothing."""
    refused, ticket, operator = _from_topic(chat_id, message_thread_id, telegram_user_id, telegram_message_id)
    if refused is not None:
        return refused
    token = _replying_from_topic.set(True)
    try:
        reply = services.do_operator_reply(ticket=ticket, operator=operator, text=text)
    except EmptyReply:
        return TopicResult(TopicOutcome.EMPTY, ticket.pk)
    except TicketClosed:
        return TopicResult(TopicOutcome.NO_TICKET, ticket.pk)
    finally:
        _replying_from_topic.reset(token)
    _log_operator_message(ticket, operator=operator, text=text, chat_id=chat_id,
                          message_thread_id=message_thread_id, telegram_message_id=telegram_message_id)
    return TopicResult(TopicOutcome.SENT, ticket.pk, reply.pk)


@transaction.atomic
def close_from_topic(*, chat_id: int, message_thread_id: int, telegram_user_id: int,
                     telegram_message_id: int, text: str = "/close") -> TopicResult:
    """``/close`` in a customer's topic: their open ticket is closed (the notice and the topic's
    closing follow through the delivery path, as for a close in the web)."""
    return _change_from_topic(chat_id, message_thread_id, telegram_user_id, telegram_message_id, text,
                              lambda ticket, operator: services.close_ticket(
                                  ticket=ticket, operator=operator, reason="closed in the operators' group"),
                              TopicOutcome.CLOSED)


@transaction.atomic
def resolve_from_topic(*, chat_id: int, message_thread_id: int, telegram_user_id: int,
                       telegram_message_id: int, text: str = "/resolve", default_language: str = "en") -> TopicResult:
    """``/resolve`` in a customer's topic: ``services.resolve_ticket`` (the customer is asked to
    rate the help; the topic closes)."""
    return _change_from_topic(chat_id, message_thread_id, telegram_user_id, telegram_message_id, text,
                              lambda ticket, operator: _resolve(ticket, operator, default_language),
                              TopicOutcome.RESOLVED)


def _resolve(ticket: Ticket, operator, default_language: str) -> bool:
    if ticket.status == Ticket.Status.RESOLVED:
        return False
    return services.resolve_ticket(ticket=ticket, operator=operator, reason="resolved in the operators' group",
                                   default_language=default_language)


def _from_topic(chat_id: int, message_thread_id: int, telegram_user_id: int, telegram_message_id: int):
    """What a message in a topic acts on: (None, the customer's open ticket, the linked operator),
    or (why not, as a TopicResult, None, None): unknown topic, unlinked operator, no open ticket,
    or this Telegram message handled before (a redelivery)."""
    topic, ticket = _topic_ticket(chat_id, message_thread_id)
    if topic is None:
        return TopicResult(TopicOutcome.UNKNOWN_TOPIC), None, None
    operator = _operator(telegram_user_id)
    if operator is None:
        return TopicResult(TopicOutcome.UNMAPPED), None, None
    if ticket is None:
        return TopicResult(TopicOutcome.NO_TICKET), None, None
    if _logged(chat_id, telegram_message_id):
        return TopicResult(TopicOutcome.DUPLICATE, ticket.pk), None, None
    return None, ticket, operator


def _change_from_topic(chat_id, message_thread_id, telegram_user_id, telegram_message_id, text, change,
                       done: TopicOutcome) -> TopicResult:
    refused, ticket, operator = _from_topic(chat_id, message_thread_id, telegram_user_id, telegram_message_id)
    if refused is not None:
        return refused
    changed = change(ticket, operator)
    _log_operator_message(ticket, operator=operator, text=text, chat_id=chat_id,
                          message_thread_id=message_thread_id, telegram_message_id=telegram_message_id)
    return TopicResult(done if changed else TopicOutcome.UNCHANGED, ticket.pk)


def target_of_customer(*, customer_id: int) -> int | None:
    """The customer's topic now (None: none)."""
    return ForumTopic.objects.filter(customer_id=customer_id).values_list("message_thread_id", flat=True).first()


def target_of_thread(*, chat_id: int, message_thread_id: int) -> bool:
    """The topic is a customer's."""
    return ForumTopic.objects.filter(chat_id=chat_id, message_thread_id=message_thread_id).exists()
