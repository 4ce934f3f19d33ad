"""The operators' web desk: one ticket as a conversation, live, and the queue's columns.

The ticket page replaces the admin's generic change form (``TicketAdmin.change_view``); its
actions are ``TicketAdmin.get_urls()`` views behind ``admin_site.admin_view``, so the admin's
login, look and permissions apply: viewing needs ``view_ticket`` (or ``change_ticket``), every
action (reply, take, resolve, close, reopen, note) needs ``change_ticket``. Views parse, call
:mod:`supportbot.support.services`, and render; the ticket rules stay there.

Two guarantees live here because they are about the page, not the ticket:

* a double submit of one reply is delivered once: every rendered reply form carries a random
  token, stored on the reply (``Message.reply_token``, unique); a second POST with the same
  token returns the first reply instead of queueing another (:func:`reply_once`);
* the live view never misses a row: the poll returns rows after the page's last id *and* rows
  created in the last few seconds (an id cursor alone skips a row whose transaction committed
  after a higher id's), and the page drops the ones it already shows.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.contrib import messages
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied
from django.db import IntegrityError, transaction
from django.db.models import Exists, OuterRef, Q, QuerySet, Subquery
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse
from django.template.loader import render_to_string
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString, mark_safe
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from supportbot.support import aftercare, services
from supportbot.support import voice as voice_messages
from supportbot.support.errors import DomainError
from supportbot.support.models import (
    CannedReply,
    CsatRating,
    Feedback,
    InternalNote,
    Message,
    Ticket,
    TicketStatusChange,
)

if TYPE_CHECKING:
    from django.contrib.admin import ModelAdmin

#: A reply form's idempotency token (``secrets.token_urlsafe``): letters, digits, ``-``, ``_``.
REPLY_TOKEN = re.compile(r"^[A-Za-z0-9_-]{16,64}$")
#: How far back the poll looks beyond its cursor (see the module docstring).
LATE_COMMIT_WINDOW = timedelta(seconds=10)
#: How often the page polls, in milliseconds (the page backs off after errors).
POLL_INTERVAL_MS = 2000
MAX_NOTE = services.MAX_TEXT


# -- the rendering helpers of the thread (also used by the admin's lists) ----------------------
def llm_details(message: Message):
    """Which model wrote an LLM answer, from which FAQ entries, how fast."""
    facts = [message.llm_model or "model unknown"]
    context = message.context_entries if isinstance(message.context_entries, list) else []
    shown = []
    for item in context:
        if isinstance(item, dict):
            key, score = item.get("key") or f"#{item.get('id', '?')}", item.get("score")
            shown.append(f"{key} ({score:.2f})" if isinstance(score, (int, float)) else str(key))
    facts.append("context: " + (", ".join(shown) if shown else "none"))
    if message.prompt_tokens is not None or message.completion_tokens is not None:
        def count(n):
            return "?" if n is None else str(n)
        facts.append(f"tokens: {count(message.prompt_tokens)} prompt, {count(message.completion_tokens)} completion")
    if message.first_token_ms is not None:
        facts.append(f"first token {message.first_token_ms} ms")
    if message.llm_ms is not None:
        facts.append(f"LLM {message.llm_ms} ms")
    return format_html('<div class="help">🤖 {}</div>', format_html_join(" · ", "{}", ((f,) for f in facts)))


def delivery_notes(message: Message) -> list[str]:
    """What an operator must know about a message's delivery beyond its status.

    Above all a reply whose bot stopped mid-send (outbox lease, ``services.requeue_abandoned``):
    it was re-sent once and may have arrived twice, or, interrupted again, may not have arrived.
    """
    notes = []
    if message.delivery_interrupted and message.delivery_status == Message.Delivery.FAILED:
        notes.append("⚠ the bot stopped while sending it: it may or may not have arrived "
                     "(ask the customer, or reply again)")
    elif message.delivery_interrupted:
        notes.append("⚠ may have arrived twice: the bot stopped while sending it, so it was re-sent once")
    elif message.is_stuck(lease=services.outbox_lease()):
        assert message.delivery_claimed_at is not None  # stuck means claimed
        notes.append(f"⚠ stuck since {message.delivery_claimed_at:%Y-%m-%d %H:%M} UTC: the bot stopped while "
                     "sending it; a running bot re-sends it once (it may arrive twice)")
    if message.delivery_error and message.delivery_status != Message.Delivery.SENT:
        notes.append(message.delivery_error)
    if message.delivery_attempts:
        n = message.delivery_attempts
        notes.append(f"{n} {'earlier ' if message.delivery_status == Message.Delivery.SENT else ''}"
                     f"attempt{'s' if n != 1 else ''} without a result")
    return notes


def delivery_details(message: Message):
    """The delivery status and its notes, as one cell (the message list, the old thread)."""
    status = message.get_delivery_status_display() if message.delivery_status else ""
    notes = delivery_notes(message)
    if not notes:
        return status or "—"
    return format_html('{}<div class="help">{}</div>', status,
                       format_html_join(mark_safe("<br>"), "{}", ((n,) for n in notes)))


def add_as_phrasing_button(answer: Message):
    """One click (a POST through the page's own form, CSRF token included) adds the
    customer's question behind a Helpful FAQ answer to that entry as a phrasing."""
    entry = answer.faq_entry
    if services.question_to_add_as_phrasing(answer=answer) is None:
        return format_html("✓ in FAQ “{}”", entry.key) if entry is not None else ""
    assert entry is not None  # a phrasing to add belongs to an FAQ answer
    url = reverse("admin:support_message_add_as_phrasing", args=[answer.pk])
    return format_html(
        '<button type="submit" class="button" formaction="{}" formmethod="post" formnovalidate '
        'title="Add the customer\'s question to FAQ entry “{}” as another phrasing">'
        "Add question as phrasing</button>", url, entry.key,
    )


def person(user) -> str:
    """An operator as the desk names them: full name, else username ("" for nobody)."""
    if user is None:
        return ""
    return user.get_full_name() or user.get_username()


def waiting_label(since: datetime | None, *, now: datetime | None = None) -> str:
    """How long a customer has waited: "4 min", "2 h 05 min", "3 d 4 h" ("" when not waiting)."""
    if since is None:
        return ""
    minutes = max(0, int(((now or timezone.now()) - since).total_seconds() // 60))
    if minutes < 60:
        return str(_("%(m)d min") % {"m": minutes})
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return str(_("%(h)d h %(m)02d min") % {"h": hours, "m": minutes})
    days, hours = divmod(hours, 24)
    return str(_("%(d)d d %(h)d h") % {"d": days, "h": hours})


def overdue_minutes() -> int:
    """Waiting longer than this flags a ticket in the queue (``OVERDUE_MINUTES``)."""
    return int(getattr(settings, "SUPPORTBOT_OVERDUE_MINUTES", 30))


def is_overdue(ticket: Ticket, *, now: datetime | None = None) -> bool:
    """The queue's red mark: the same rule as the reminders (``aftercare.is_overdue``)."""
    return aftercare.is_overdue(ticket, now=now or timezone.now(), overdue_after=timedelta(minutes=overdue_minutes()))


# -- the thread ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class ThreadItem:
    """One row of the conversation: a message, a status change, or an internal note."""

    kind: str  # "message" | "change" | "note"
    obj: Any

    @property
    def id(self) -> int:
        return self.obj.pk

    @property
    def key(self) -> str:
        return f"{self.kind}-{self.obj.pk}"

    @property
    def created_at(self) -> datetime:
        return self.obj.created_at


def thread_messages(ticket_id: int) -> QuerySet[Message]:
    """The customer's conversation: every message but the copies posted to the operators' group."""
    feedback = Feedback.objects.filter(message=OuterRef("pk"))
    return (Message.objects.filter(ticket_id=ticket_id).exclude(direction=Message.Direction.DESK)
            .select_related("faq_entry", "operator")
            .annotate(_feedback=Subquery(feedback.values("helpful")[:1]),
                      _helpful=Exists(feedback.filter(helpful=True)),
                      _csat=Subquery(CsatRating.objects.filter(question=OuterRef("pk")).values("score")[:1]))
            .order_by("created_at", "id"))


def _since(rows: QuerySet, after: int | None, now: datetime) -> QuerySet:
    if after is None:
        return rows
    return rows.filter(Q(pk__gt=after) | Q(created_at__gte=now - LATE_COMMIT_WINDOW))


def thread(ticket_id: int, *, after: int | None = None, after_change: int | None = None,
           after_note: int | None = None, everything: bool = True) -> list[ThreadItem]:
    """The thread's rows in time order. With cursors: only the rows after them (plus the late
    commit window); without ``everything``, a kind whose cursor is None is left out."""
    now = timezone.now()
    items: list[ThreadItem] = []
    if everything or after is not None:
        items += [ThreadItem("message", m) for m in _since(thread_messages(ticket_id), after, now)]
    if everything or after_change is not None:
        changes = TicketStatusChange.objects.filter(ticket_id=ticket_id).select_related("changed_by")
        items += [ThreadItem("change", c) for c in _since(changes, after_change, now)]
    if everything or after_note is not None:
        notes = InternalNote.objects.filter(ticket_id=ticket_id).select_related("author")
        items += [ThreadItem("note", n) for n in _since(notes, after_note, now)]
    order = {"change": 0, "message": 1, "note": 2}
    return sorted(items, key=lambda item: (item.created_at, order[item.kind], item.id))


def message_facts(message: Message) -> dict[str, Any]:
    """What the template shows for one message (kept out of the template: it is the logic)."""
    side = {Message.Direction.IN: "customer"}.get(message.direction, "")  # type: ignore[call-overload]
    if not side:
        side = {Message.Source.OPERATOR: "operator", Message.Source.SYSTEM: "system"}.get(
            message.source, "bot")  # type: ignore[call-overload]
    facts: dict[str, Any] = {"side": side, "message": message}
    if message.kind == Message.Kind.VOICE:
        facts["voice"] = voice_messages.voice_details(message)
    elif message.kind != Message.Kind.TEXT:
        facts["kind_label"] = message.get_kind_display()
    if side == "bot":
        facts["source_label"] = message.get_source_display()
        if message.faq_entry_id is not None:
            facts["faq_url"] = reverse("admin:support_faqentry_change", args=[message.faq_entry_id])
        if message.score is not None:
            facts["score"] = f"{message.score:.2f}"
        feedback = getattr(message, "_feedback", None)
        if feedback is not None:
            facts["feedback"] = _("Helpful") if feedback else _("Not helpful")
            facts["feedback_class"] = "helpful" if feedback else "not-helpful"
        if message.source in Message.LLM_SOURCES:
            facts["llm"] = llm_details(message)
        if message.source == Message.Source.FAQ and feedback:
            facts["phrasing_button"] = add_as_phrasing_button(message)
    if side == "operator":
        facts["operator_name"] = person(message.operator) or _("an operator")
        facts["save_to_faq_url"] = reverse("admin:support_message_save_to_faq", args=[message.pk])
    if message.direction == Message.Direction.OUT and message.delivery_status:
        facts["delivery_state"] = message.delivery_status
        facts["delivery_label"] = message.get_delivery_status_display()
        facts["delivery_notes"] = delivery_notes(message)
    csat = getattr(message, "_csat", None)
    if csat is not None:
        facts["csat"] = csat
    return facts


def change_facts(change: TicketStatusChange) -> dict[str, Any]:
    status = dict(Ticket.Status.choices)
    facts: dict[str, Any] = {"change": change, "by": person(change.changed_by) or change.get_actor_display()}
    if change.old_status == change.new_status:
        facts["title"] = change.reason  # not a status change: "taken by operator"
    else:
        facts["title"] = format_html("{} → {}", status.get(change.old_status, change.old_status or "—"),
                                     status.get(change.new_status, change.new_status))
        facts["reason"] = change.reason
    return facts


def render_item(item: ThreadItem, request: HttpRequest | None = None) -> SafeString:
    context: dict[str, Any] = {"item": item}
    if item.kind == "message":
        context["m"] = message_facts(item.obj)
    elif item.kind == "change":
        context["c"] = change_facts(item.obj)
    else:
        context["note"] = item.obj
        context["author"] = person(item.obj.author) or _("an operator")
    return mark_safe(render_to_string("support/desk/_item.html", context, request=request))


def delivery_state(message: Message) -> dict[str, Any]:
    return {"id": message.pk, "state": message.delivery_status, "label": message.get_delivery_status_display(),
            "notes": delivery_notes(message)}


# -- the ticket's state and actions ------------------------------------------------------------
def available_actions(ticket: Ticket, *, can_change: bool, user=None) -> list[str]:
    """The buttons that make sense now for ``user`` (the page hides the others)."""
    if not can_change:
        return []
    actions = []
    if ticket.assignee_id is None and ticket.status != Ticket.Status.CLOSED:
        actions.append("take")
    if ticket.assignee_id is not None and user is not None and (
            ticket.assignee_id == user.pk or user.is_superuser):
        actions.append("release")
    if ticket.status in Ticket.ACTIVE:
        actions.append("resolve")
    if ticket.status != Ticket.Status.CLOSED:
        actions.append("close")
    if ticket.status in (Ticket.Status.RESOLVED, Ticket.Status.CLOSED):
        actions.append("reopen")
    return actions


def ticket_state(ticket: Ticket, *, can_change: bool, user=None) -> dict[str, Any]:
    waiting = waiting_label(ticket.waiting_since)
    return {
        "id": ticket.pk, "status": ticket.status, "status_label": ticket.get_status_display(),
        "assignee": person(ticket.assignee), "assignee_text": person(ticket.assignee) or str(_("nobody")),
        "actions": available_actions(ticket, can_change=can_change, user=user),
        "waiting": waiting, "waiting_text": str(_("waiting %(time)s") % {"time": waiting}) if waiting else "",
        "overdue": is_overdue(ticket),
    }


def canned_replies_for(language: str) -> list[dict[str, str]]:
    """The active canned replies in the customer's language (``uk``, ``ru-RU``...), each
    shortcut falling back to its English text when it has none in that language."""
    code = (language or "").split("-")[0].lower()[:8] or "en"
    chosen: dict[str, CannedReply] = {}
    for reply in CannedReply.objects.filter(is_active=True, language__in={code, "en"}):
        if reply.shortcut not in chosen or reply.language == code:
            chosen[reply.shortcut] = reply
    return [{"shortcut": r.shortcut, "title": r.title, "text": r.text, "language": r.language}
            for r in sorted(chosen.values(), key=lambda r: r.shortcut)]


def new_reply_token() -> str:
    return secrets.token_urlsafe(24)


class ReplyTokenOfAnotherTicket(DomainError):
    code = "reply_token_of_another_ticket"
    message = "This reply form belongs to another ticket; reload the page and send again."


def reply_once(*, ticket: Ticket, operator, text: str, token: str) -> tuple[Message, bool]:
    """Queue an operator's reply unless this form's ``token`` already sent one: returns
    ``(reply, duplicate)``. The token is stored on the reply in the same transaction, under a
    unique constraint, so of two concurrent submits one commits and the other finds its row.
    Raises the service's :class:`DomainError` (empty reply, closed ticket)."""
    def earlier() -> Message | None:
        found = Message.objects.filter(reply_token=token).first()
        if found is not None and found.ticket_id != ticket.pk:
            raise ReplyTokenOfAnotherTicket(gettext("This reply form belongs to another ticket; reload the page and "
                                                    "send again."))
        return found

    if (found := earlier()) is not None:
        return found, True
    try:
        with transaction.atomic():
            reply = services.do_operator_reply(ticket=ticket, operator=operator, text=text)
            Message.objects.filter(pk=reply.pk).update(reply_token=token)
    except IntegrityError:  # the same form's other submit committed first
        if (found := earlier()) is not None:
            return found, True
        raise
    reply.reply_token = token
    return reply, False


# -- the views --------------------------------------------------------------------------------
def _wants_json(request: HttpRequest) -> bool:
    return "application/json" in request.headers.get("Accept", "")


def _page_url(ticket_id: int) -> str:
    return reverse("admin:support_ticket_change", args=[ticket_id])


def _answer(request: HttpRequest, ticket_id: int, text, *, level: int = messages.SUCCESS, status: int = 200,
            **data: Any) -> HttpResponse:
    """A JSON answer for the page's script, or a message and a redirect back for a plain form."""
    if _wants_json(request):
        key = "error" if status >= 400 else "message"
        return JsonResponse({key: str(text), **data}, status=status)
    messages.add_message(request, level, text)
    return HttpResponseRedirect(_page_url(ticket_id))


def _refused(request: HttpRequest, ticket_id: int, text, status: int) -> HttpResponse:
    return _answer(request, ticket_id, text, level=messages.ERROR, status=status)


class _BadParameter(ValueError):
    pass


def _cursor(params, name: str, *, required: bool) -> int | None:
    raw = params.get(name)
    if raw is None or raw == "":
        if required:
            raise _BadParameter(_("The parameter '%(name)s' is missing: give the id of the last row the page "
                                  "shows (0 for none).") % {"name": name})
        return None
    if not raw.isascii() or not raw.isdigit() or len(raw) > 18:
        raise _BadParameter(_("The parameter '%(name)s' must be a row id (a whole number, 0 or more), "
                              "not '%(value)s'.") % {"name": name, "value": raw[:40]})
    return int(raw)


class DeskViews:
    """The ticket page and its actions, for one ``TicketAdmin``."""

    def __init__(self, model_admin: ModelAdmin) -> None:
        self.model_admin = model_admin

    def urls(self) -> list:
        wrap = self.model_admin.admin_site.admin_view
        views = [("poll", self.poll), ("take", self.take), ("release", self.release), ("resolve", self.resolve),
                 ("close", self.close), ("reopen", self.reopen), ("note", self.note)]
        return [path(f"<int:ticket_id>/desk/{name}/", wrap(view), name=f"support_ticket_{name}")
                for name, view in views]

    # permissions ---------------------------------------------------------------------------
    def _ticket(self, request: HttpRequest, ticket_id: int, *, change: bool) -> Ticket | HttpResponse:
        ticket = Ticket.objects.select_related("user", "assignee").filter(pk=ticket_id).first()
        if ticket is None:
            text = _("No ticket #%(id)s: it does not exist (or was deleted).") % {"id": ticket_id}
            if _wants_json(request):
                return JsonResponse({"error": str(text)}, status=404)
            messages.error(request, text)
            return HttpResponseRedirect(reverse("admin:support_ticket_changelist"))
        allowed = (self.model_admin.has_change_permission(request, ticket) if change
                   else self.model_admin.has_view_or_change_permission(request, ticket))
        if not allowed:
            if _wants_json(request):
                return JsonResponse({"error": str(_("You may not do this: it needs the permission to change "
                                                    "tickets."))}, status=403)
            raise PermissionDenied
        return ticket

    # the page ------------------------------------------------------------------------------
    def page(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """``TicketAdmin.change_view``: GET shows the conversation, POST sends a reply."""
        try:
            ticket_id = int(unquote(object_id))
        except ValueError:
            ticket_id = 0
        if ticket_id <= 0:
            return self.model_admin._get_obj_does_not_exist_redirect(  # type: ignore[attr-defined]
                request, self.model_admin.opts, object_id)
        if request.method == "POST":
            return self.reply(request, ticket_id)
        ticket = self._ticket(request, ticket_id, change=False)
        if isinstance(ticket, HttpResponse):
            return ticket
        can_change = self.model_admin.has_change_permission(request, ticket)
        items = thread(ticket.pk)
        last = {kind: max((i.id for i in items if i.kind == kind), default=0) for kind in ("message", "change", "note")}
        context = {
            **self.model_admin.admin_site.each_context(request),
            "title": _("Ticket #%(id)s") % {"id": ticket.pk},
            "subtitle": str(ticket.user),
            "opts": self.model_admin.opts,
            "ticket": ticket,
            "customer": ticket.user,
            "state": ticket_state(ticket, can_change=can_change, user=request.user),
            "rendered": [render_item(item, request) for item in items],
            "last": last,
            "can_change": can_change,
            "reply_token": new_reply_token(),
            "canned": canned_replies_for(ticket.user.language_code),
            "earlier": list(Ticket.objects.filter(user_id=ticket.user_id).exclude(pk=ticket.pk)
                            .order_by("-created_at")[:5]),
            "poll_interval_ms": POLL_INTERVAL_MS,
            "actions": ["take", "release", "resolve", "close", "reopen"],
        }
        return TemplateResponse(request, "support/desk/conversation.html", context)

    def reply(self, request: HttpRequest, ticket_id: int) -> HttpResponse:
        ticket = self._ticket(request, ticket_id, change=True)
        if isinstance(ticket, HttpResponse):
            return ticket
        token = request.POST.get("reply_token", "")
        if not REPLY_TOKEN.match(token):
            return _refused(request, ticket.pk, _("This reply form has no valid token (the page is old or "
                                                  "broken): reload the page and send again."), 400)
        try:
            reply, duplicate = reply_once(ticket=ticket, operator=request.user, text=request.POST.get("reply", ""),
                                          token=token)
        except DomainError as exc:
            return _refused(request, ticket.pk, gettext(exc.message), 400)  # translated once the catalogue has it
        if duplicate:
            text = _("This reply was already sent once (the form was submitted twice); it is not sent again.")
        else:
            text = _("Reply queued; the bot delivers it to the customer.")
        item = ThreadItem("message", thread_messages(ticket.pk).get(pk=reply.pk))
        return _answer(request, ticket.pk, text, level=messages.INFO if duplicate else messages.SUCCESS,
                       id=reply.pk, duplicate=duplicate, key=item.key, html=render_item(item, request),
                       next_token=new_reply_token())

    # live updates --------------------------------------------------------------------------
    def poll(self, request: HttpRequest, ticket_id: int) -> HttpResponse:
        """New rows after the page's cursors, the delivery states of the ticket's outgoing
        messages, and the ticket's status and assignee (JSON)."""
        if request.method != "GET":
            return JsonResponse({"error": str(_("Poll with GET."))}, status=405)
        request.META["HTTP_ACCEPT"] = "application/json"  # errors as JSON, whatever the client asked
        ticket = self._ticket(request, ticket_id, change=False)
        if isinstance(ticket, HttpResponse):
            return ticket
        try:
            after = _cursor(request.GET, "after", required=True)
            after_change = _cursor(request.GET, "after_change", required=False)
            after_note = _cursor(request.GET, "after_note", required=False)
        except _BadParameter as exc:
            return JsonResponse({"error": str(exc)}, status=400)
        items = thread(ticket.pk, after=after, after_change=after_change, after_note=after_note, everything=False)
        outgoing = (Message.objects.filter(ticket_id=ticket.pk, direction=Message.Direction.OUT)
                    .exclude(delivery_status=Message.Delivery.NOT_APPLICABLE).order_by("id"))
        can_change = self.model_admin.has_change_permission(request, ticket)
        return JsonResponse({
            "ticket": ticket_state(ticket, can_change=can_change, user=request.user),
            "items": [{"kind": i.kind, "id": i.id, "key": i.key, "html": render_item(i, request)} for i in items],
            "deliveries": [delivery_state(m) for m in outgoing],
        })

    # status actions ------------------------------------------------------------------------
    def take(self, request: HttpRequest, ticket_id: int) -> HttpResponse:
        return self._act(request, ticket_id, self._take)

    def release(self, request: HttpRequest, ticket_id: int) -> HttpResponse:
        return self._act(request, ticket_id, self._release)

    def resolve(self, request: HttpRequest, ticket_id: int) -> HttpResponse:
        return self._act(request, ticket_id, self._resolve)

    def close(self, request: HttpRequest, ticket_id: int) -> HttpResponse:
        return self._act(request, ticket_id, self._close)

    def reopen(self, request: HttpRequest, ticket_id: int) -> HttpResponse:
        return self._act(request, ticket_id, self._reopen)

    def _act(self, request: HttpRequest, ticket_id: int, action) -> HttpResponse:
        if request.method != "POST":
            return _refused(request, ticket_id, _("Use the buttons on the ticket page (a POST)."), 405)
        ticket = self._ticket(request, ticket_id, change=True)
        if isinstance(ticket, HttpResponse):
            return ticket
        try:
            return action(request, ticket)
        except DomainError as exc:
            return _refused(request, ticket.pk, gettext(exc.message), 409)

    def _take(self, request: HttpRequest, ticket: Ticket) -> HttpResponse:
        outcome, ticket = services.take_ticket(ticket_id=ticket.pk, operator=request.user)
        if outcome == services.TakeOutcome.TAKEN:
            return _answer(request, ticket.pk, _("You took ticket #%(id)s.") % {"id": ticket.pk}, outcome=outcome)
        if outcome == services.TakeOutcome.ALREADY_YOURS:
            return _answer(request, ticket.pk, _("Ticket #%(id)s is already yours.") % {"id": ticket.pk},
                           level=messages.INFO, outcome=outcome)
        if outcome == services.TakeOutcome.CLOSED:
            return _refused(request, ticket.pk, _("Ticket #%(id)s is closed: reopen it first.") % {"id": ticket.pk},
                            409)
        return _answer(request, ticket.pk, _("Ticket #%(id)s was already taken by %(who)s.")
                       % {"id": ticket.pk, "who": person(ticket.assignee)}, level=messages.WARNING, status=409,
                       outcome=outcome, assignee=person(ticket.assignee))

    def _release(self, request: HttpRequest, ticket: Ticket) -> HttpResponse:
        user = request.user
        if services.release_ticket(ticket_id=ticket.pk, operator=user, anyone=user.is_superuser):
            return _answer(request, ticket.pk,
                           _("Ticket #%(id)s is back in the queue, unassigned.") % {"id": ticket.pk})
        ticket.refresh_from_db(fields=["assignee"])
        if ticket.assignee_id is None:
            return _refused(request, ticket.pk, _("Ticket #%(id)s is not assigned to anyone.") % {"id": ticket.pk}, 409)
        return _refused(request, ticket.pk, _("Ticket #%(id)s is assigned to %(who)s: only they (or a superuser) can "
                                              "release it.") % {"id": ticket.pk, "who": person(ticket.assignee)}, 409)

    def _resolve(self, request: HttpRequest, ticket: Ticket) -> HttpResponse:
        # The rating question's language for a customer whose Telegram language is not ours.
        default_language = getattr(getattr(settings, "SUPPORTBOT", None), "default_language", "en")
        if services.resolve_ticket(ticket=ticket, operator=request.user, default_language=default_language):
            return _answer(request, ticket.pk, _("Ticket #%(id)s resolved.") % {"id": ticket.pk})
        return _refused(request, ticket.pk, _("Ticket #%(id)s is already resolved or closed.") % {"id": ticket.pk},
                        409)

    def _close(self, request: HttpRequest, ticket: Ticket) -> HttpResponse:
        if services.close_ticket(ticket=ticket, operator=request.user):
            return _answer(request, ticket.pk, _("Ticket #%(id)s closed.") % {"id": ticket.pk})
        return _refused(request, ticket.pk, _("Ticket #%(id)s is already closed.") % {"id": ticket.pk}, 409)

    def _reopen(self, request: HttpRequest, ticket: Ticket) -> HttpResponse:
        if services.reopen_ticket(ticket=ticket, operator=request.user):
            return _answer(request, ticket.pk, _("Ticket #%(id)s reopened.") % {"id": ticket.pk})
        return _refused(request, ticket.pk, _("Ticket #%(id)s is open: only a resolved or closed ticket "
                                              "can be reopened.") % {"id": ticket.pk}, 409)

    # internal notes ------------------------------------------------------------------------
    def note(self, request: HttpRequest, ticket_id: int) -> HttpResponse:
        """An internal note: stored for the team, never sent to the customer."""
        if request.method != "POST":
            return _refused(request, ticket_id, _("Add notes with the form on the ticket page (a POST)."), 405)
        ticket = self._ticket(request, ticket_id, change=True)
        if isinstance(ticket, HttpResponse):
            return ticket
        text = (request.POST.get("note") or "").strip()
        if not text:
            return _refused(request, ticket.pk, _("The note is empty: write something for your team."), 400)
        if len(text) > MAX_NOTE:
            return _refused(request, ticket.pk, _("The note is too long (at most %(n)s characters).")
                            % {"n": MAX_NOTE}, 400)
        author = request.user if request.user.is_authenticated else None  # the admin's login: always a user
        note = InternalNote.objects.create(ticket=ticket, author=author, text=text)
        item = ThreadItem("note", InternalNote.objects.select_related("author").get(pk=note.pk))
        return _answer(request, ticket.pk, _("Note added (only operators see it)."), id=note.pk, key=item.key,
                       html=render_item(item, request))

