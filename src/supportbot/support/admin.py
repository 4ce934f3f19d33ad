"""The operators' desk: tickets with their threads, replies, FAQ editing, feedback."""

from __future__ import annotations

import logging

from django.contrib import admin, messages
from django.contrib.admin.options import IncorrectLookupParameters
from django.contrib.auth import get_user_model
from django.db.models import Case, Count, F, IntegerField, OuterRef, Q, Subquery, Value, When
from django.db.models.functions import Substr
from django.http import HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from supportbot.support import services
from supportbot.support import voice as voice_messages
from supportbot.support.desk import (  # noqa: F401  (delivery_details, llm_details: used by tests and lists)
    DeskViews,
    add_as_phrasing_button,
    delivery_details,
    is_overdue,
    llm_details,
    person,
    waiting_label,
)
from supportbot.support.errors import DomainError
from supportbot.support.models import (
    CannedReply,
    FaqEntry,
    FaqPhrasing,
    Feedback,
    Language,
    Message,
    TelegramUser,
    Ticket,
)

log = logging.getLogger(__name__)

admin.site.site_header = "supportbot"
admin.site.site_title = "supportbot"
admin.site.index_title = _("Support desk")


# -- FAQ ----------------------------------------------------------------------------
class FaqPhrasingInline(admin.TabularInline):
    model = FaqPhrasing
    extra = 1
    fields = ["text"]


@admin.register(FaqEntry)
class FaqEntryAdmin(admin.ModelAdmin):
    list_display = ["key", "question_short", "language", "is_active", "phrasing_count", "updated_at"]
    list_filter = ["language", "is_active"]
    search_fields = ["key", "question", "answer", "phrasings__text"]
    inlines = [FaqPhrasingInline]
    actions = ["activate", "deactivate"]
    readonly_fields = ["created_at", "updated_at"]

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(_phrasings=Count("phrasings"))

    @admin.display(description=_("question"))
    def question_short(self, obj: FaqEntry) -> str:
        return obj.question[:80]

    @admin.display(description=_("phrasings"), ordering="_phrasings")
    def phrasing_count(self, obj) -> int:
        return obj._phrasings

    def save_related(self, request, form, formsets, change):
        super().save_related(request, form, formsets, change)
        entry = form.instance
        if not entry.is_active:
            return
        # The admin is a front door: the one place in this app that calls the FAQ index,
        # this process's (built by the assembly, like the bot's).
        from supportbot.assembly import process
        from supportbot.knowledge.index import near_duplicate

        try:
            match = near_duplicate(entry.question, entry_id=entry.pk, index=process().checks_index())
            other = None if match is None else FaqEntry.objects.filter(pk=match.entry_id, is_active=True).first()
        except Exception:  # a warning must never block an operator's save
            log.exception("near-duplicate check failed for FAQ entry %s", entry.pk)
            return
        if other is not None:
            url = reverse("admin:support_faqentry_change", args=[other.pk])
            messages.warning(request, format_html(
                gettext("Near-duplicate: the question “{}” already matches FAQ entry <a href=\"{}\">“{}”</a> ({}) "
                        "confidently, so customers asking it may get either answer. Merge the two entries, or make "
                        "the questions say what differs."), entry.question[:120], url, other.key, other.question[:80],
            ))

    @admin.action(description=_("Activate selected entries"))
    def activate(self, request, queryset):
        for entry in queryset:  # per-row save keeps the FAQ index in step
            entry.is_active = True
            entry.save(update_fields=["is_active", "updated_at"])
        self.message_user(request, gettext("%(n)d entries activated.") % {"n": queryset.count()})

    @admin.action(description=_("Deactivate selected entries"))
    def deactivate(self, request, queryset):
        for entry in queryset:
            entry.is_active = False
            entry.save(update_fields=["is_active", "updated_at"])
        self.message_user(request, gettext("%(n)d entries deactivated.") % {"n": queryset.count()})


# -- customers ------------------------------------------------------------------------
@admin.register(TelegramUser)
class TelegramUserAdmin(admin.ModelAdmin):
    list_display = ["id", "username", "first_name", "last_name", "language_code", "is_blocked", "first_seen",
                    "last_seen"]
    list_filter = ["language_code", "is_blocked"]
    search_fields = ["id", "username", "first_name", "last_name"]
    readonly_fields = ["id", "first_seen", "last_seen"]


# -- tickets: the queue (the list) and the conversation page (desk.py) --------------------------
class LanguageFilter(admin.SimpleListFilter):
    title = _("language")
    parameter_name = "language"

    def lookups(self, request, model_admin):
        return [*Language.choices, ("other", _("Other"))]

    def queryset(self, request, queryset):
        value = self.value()
        if value is None:
            return queryset
        known = Q()
        for code in Language.values:
            known |= Q(user__language_code__iexact=code) | Q(user__language_code__istartswith=f"{code}-")
        if value == "other":
            return queryset.exclude(known)
        if value not in Language.values:
            raise IncorrectLookupParameters(f"unknown language {value!r}")
        return queryset.filter(Q(user__language_code__iexact=value) | Q(user__language_code__istartswith=f"{value}-"))


class AssigneeFilter(admin.SimpleListFilter):
    title = _("assignee")
    parameter_name = "assignee"

    def lookups(self, request, model_admin):
        operators = get_user_model().objects.filter(assigned_tickets__isnull=False).distinct().order_by("username")
        return [("mine", _("Mine")), ("none", _("Unassigned")), *((str(u.pk), person(u)) for u in operators)]

    def queryset(self, request, queryset):
        value = self.value()
        if value is None:
            return queryset
        if value == "mine":
            return queryset.filter(assignee=request.user)
        if value == "none":
            return queryset.filter(assignee__isnull=True)
        if not value.isdigit():
            raise IncorrectLookupParameters(f"unknown assignee {value!r}")
        return queryset.filter(assignee_id=int(value))


@admin.register(Ticket)
class TicketAdmin(admin.ModelAdmin):
    """The queue: waiting tickets first, longest waiting first; then the rest, latest first.
    A row opens the ticket as a conversation (``desk.DeskViews``)."""

    list_display = ["id", "customer", "last_question", "waiting", "language", "last_answer_source", "assigned_to",
                    "status"]
    list_display_links = ["id", "customer"]
    list_filter = ["status", LanguageFilter, AssigneeFilter]
    list_select_related = ["user", "assignee"]
    search_fields = ["user__username", "user__first_name", "messages__text"]
    actions = ["close_tickets"]
    list_per_page = 50

    class Media:
        css = {"all": ["support/desk.css"]}
        js = ["support/queue.js"]

    def changelist_view(self, request, extra_context=None):
        # The count in the title shows in the browser tab: someone waits, even in a background tab.
        waiting = Ticket.objects.filter(status__in=Ticket.WAITING).count()
        context = {"title": _("Queue: %(n)d waiting") % {"n": waiting}, **(extra_context or {})}
        return super().changelist_view(request, context)

    def get_queryset(self, request):
        rows = Message.objects.filter(ticket=OuterRef("pk")).order_by("-id")
        question = rows.filter(direction=Message.Direction.IN).annotate(short=Substr("text", 1, 200))
        answer = rows.filter(direction=Message.Direction.OUT, source__in=Message.AUTOMATIC_SOURCES)
        return super().get_queryset(request).annotate(
            _last_question=Subquery(question.values("short")[:1]),
            _last_answer_source=Subquery(answer.values("source")[:1]),
            _queue_rank=Case(When(status__in=Ticket.WAITING, then=Value(0)), default=Value(1),
                             output_field=IntegerField()),
        )

    def get_ordering(self, request):
        return [F("_queue_rank").asc(), F("waiting_since").asc(nulls_last=True), F("updated_at").desc()]

    def get_urls(self):
        return [*DeskViews(self).urls(), *super().get_urls()]

    def change_view(self, request, object_id, form_url="", extra_context=None):
        """The ticket as a conversation (reply, take, resolve, close, reopen, notes)."""
        return DeskViews(self).page(request, object_id)

    def has_add_permission(self, request) -> bool:
        return False  # tickets start in Telegram

    @admin.display(description=_("customer"), ordering="user__first_name")
    def customer(self, obj: Ticket) -> str:
        return str(obj.user)

    @admin.display(description=_("last customer message"))
    def last_question(self, obj) -> str:
        text = " ".join((obj._last_question or "").split())
        return text if len(text) <= 90 else text[:89] + "…"

    @admin.display(description=_("waiting"), ordering="waiting_since")
    def waiting(self, obj: Ticket):
        now = timezone.now()
        label = waiting_label(obj.waiting_since, now=now)
        if label and is_overdue(obj, now=now):
            return format_html('<span class="queue-overdue" title="{}">⚠ {}</span>',
                               _("Waiting too long: answer or take this ticket"), label)
        return label or "—"

    @admin.display(description=_("language"), ordering="user__language_code")
    def language(self, obj: Ticket) -> str:
        return obj.user.language_code or "—"

    @admin.display(description=_("last automatic answer"))
    def last_answer_source(self, obj) -> str:
        source = obj._last_answer_source
        return str(Message.Source(source).label) if source in Message.Source.values else "—"

    @admin.display(description=_("assignee"), ordering="assignee__username")
    def assigned_to(self, obj: Ticket) -> str:
        return person(obj.assignee) or "—"

    @admin.action(description=_("Close selected tickets"))
    def close_tickets(self, request, queryset):
        closed = sum(services.close_ticket(ticket=t, operator=request.user) for t in queryset)
        self.message_user(request, _("%(n)d tickets closed.") % {"n": closed})


@admin.register(CannedReply)
class CannedReplyAdmin(admin.ModelAdmin):
    """Replies operators insert in the ticket page with /shortcut + Tab, in the customer's language."""

    list_display = ["shortcut", "language", "title", "text_short", "is_active", "updated_at"]
    list_display_links = ["shortcut", "title"]
    list_filter = ["language", "is_active"]
    search_fields = ["shortcut", "title", "text"]
    readonly_fields = ["created_at", "updated_at"]
    fields = ["shortcut", "language", "title", "text", "is_active", "created_at", "updated_at"]

    @admin.display(description=_("text"))
    def text_short(self, obj: CannedReply) -> str:
        return obj.text[:80]


@admin.register(Message)
class MessageAdmin(admin.ModelAdmin):
    list_display = ["id", "ticket", "direction", "kind", "source", "text_short", "faq_entry", "score",
                    "processing_ms", "delivery_status", "created_at"]
    list_filter = ["source", "direction", "kind", "delivery_status", "delivery_interrupted"]
    list_select_related = ["ticket", "ticket__user", "faq_entry"]
    search_fields = ["text"]
    raw_id_fields = ["ticket", "faq_entry", "in_reply_to", "operator"]

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False  # the message log is append-only

    @admin.display(description=_("text"))
    def text_short(self, obj: Message) -> str:
        return obj.text[:80]

    def get_urls(self):
        return [
            path("<int:message_id>/save-to-faq/", self.admin_site.admin_view(self.save_to_faq_view),
                 name="support_message_save_to_faq"),
            path("<int:message_id>/audio/", self.admin_site.admin_view(voice_messages.audio_view),
                 name="support_message_audio"),
            path("<int:message_id>/add-as-phrasing/", self.admin_site.admin_view(self.add_as_phrasing_view),
                 name="support_message_add_as_phrasing"),
            *super().get_urls(),
        ]

    def save_to_faq_view(self, request, message_id: int):
        if not request.user.has_perm("support.add_faqentry"):
            messages.error(request, gettext("You may not add FAQ entries."))
            return HttpResponseRedirect(reverse("admin:index"))
        message = get_object_or_404(Message.objects.select_related("ticket__user"), pk=message_id)
        if request.method != "POST":  # a state change needs a POST: show what will be saved first
            context = {**self.admin_site.each_context(request), "message": message,
                       "title": gettext("Save this answer to the FAQ?"), "opts": self.model._meta}
            return TemplateResponse(request, "support/save_to_faq.html", context)
        try:
            entry = services.save_answer_to_faq(message=message)
        except DomainError as exc:
            self.message_user(request, gettext(exc.message), level=messages.ERROR)
            return HttpResponseRedirect(reverse("admin:support_ticket_change", args=[message.ticket_id]))
        messages.success(request,
                         gettext("Saved as FAQ entry “%(key)s”. Review the wording below.") % {"key": entry.key})
        return HttpResponseRedirect(reverse("admin:support_faqentry_change", args=[entry.pk]))


    def add_as_phrasing_view(self, request, message_id: int):
        message = get_object_or_404(Message.objects.select_related("faq_entry", "ticket"), pk=message_id)
        back = reverse("admin:support_ticket_change", args=[message.ticket_id])
        if request.method != "POST":
            return HttpResponseRedirect(back)
        if not request.user.has_perm("support.add_faqphrasing"):
            messages.error(request, gettext("You may not add FAQ phrasings."))
            return HttpResponseRedirect(back)
        try:
            phrasing = services.add_question_as_phrasing(answer=message)
        except DomainError as exc:
            self.message_user(request, gettext(exc.message), level=messages.ERROR)
        else:
            assert message.faq_entry is not None  # the phrasing was added to it
            url = reverse("admin:support_faqentry_change", args=[phrasing.entry_id])
            messages.success(request, format_html(
                gettext("Added “{}” to FAQ entry <a href=\"{}\">“{}”</a> as a phrasing."),
                phrasing.text[:120], url, message.faq_entry.key))
        return HttpResponseRedirect(back)


@admin.register(Feedback)
class FeedbackAdmin(admin.ModelAdmin):
    list_display = ["id", "helpful", "answer_source", "answer_text", "created_at", "faq_phrasing"]
    list_filter = ["helpful", "message__source"]
    list_select_related = ["message", "message__faq_entry"]
    raw_id_fields = ["message"]

    @admin.display(description=_("source"))
    def answer_source(self, obj: Feedback) -> str:
        return obj.message.source

    @admin.display(description=_("answer"))
    def answer_text(self, obj: Feedback) -> str:
        return obj.message.text[:80]

    @admin.display(description="")
    def faq_phrasing(self, obj: Feedback):
        if obj.helpful and obj.message.source == Message.Source.FAQ:
            return add_as_phrasing_button(obj.message)
        return ""
