"""The operators' desk: tickets with their threads, replies, FAQ editing, feedback."""

from __future__ import annotations

import logging

from django import forms
from django.contrib import admin, messages
from django.db.models import Count, Exists, OuterRef
from django.http import HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html, format_html_join
from django.utils.safestring import mark_safe

from supportbot.support import services
from supportbot.support import voice as voice_messages
from supportbot.support.errors import DomainError
from supportbot.support.models import (
    FaqEntry,
    FaqPhrasing,
    Feedback,
    Message,
    TelegramUser,
    Ticket,
    TicketStatusChange,
)

log = logging.getLogger(__name__)

admin.site.site_header = "supportbot"
admin.site.site_title = "supportbot"
admin.site.index_title = "Support desk"


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

    @admin.display(description="question")
    def question_short(self, obj: FaqEntry) -> str:
        return obj.question[:80]

    @admin.display(description="phrasings", ordering="_phrasings")
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
                "Near-duplicate: the question “{}” already matches FAQ entry <a href=\"{}\">“{}”</a> ({}) "
                "confidently, so customers asking it may get either answer. Merge the two entries, or make "
                "the questions say what differs.", entry.question[:120], url, other.key, other.question[:80],
            ))

    @admin.action(description="Activate selected entries")
    def activate(self, request, queryset):
        for entry in queryset:  # per-row save keeps the FAQ index in step
            entry.is_active = True
            entry.save(update_fields=["is_active", "updated_at"])
        self.message_user(request, f"{queryset.count()} entries activated.")

    @admin.action(description="Deactivate selected entries")
    def deactivate(self, request, queryset):
        for entry in queryset:
            entry.is_active = False
            entry.save(update_fields=["is_active", "updated_at"])
        self.message_user(request, f"{queryset.count()} entries deactivated.")


# -- customers ------------------------------------------------------------------------
@admin.register(TelegramUser)
class TelegramUserAdmin(admin.ModelAdmin):
    list_display = ["id", "username", "first_name", "last_name", "language_code", "is_blocked", "first_seen",
                    "last_seen"]
    list_filter = ["language_code", "is_blocked"]
    search_fields = ["id", "username", "first_name", "last_name"]
    readonly_fields = ["id", "first_seen", "last_seen"]


# -- tickets ----------------------------------------------------------------------------
class MessageInline(admin.TabularInline):
    model = Message
    extra = 0
    can_delete = False
    fk_name = "ticket"
    ordering = ["created_at", "id"]
    fields = readonly_fields = ("created_at", "direction", "kind", "source", "shown_text", "faq_entry", "score",
                                "processing_ms", "delivery", "save_to_faq")
    verbose_name_plural = "Thread"

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    @admin.display(description="text")
    def shown_text(self, obj: Message):
        text = format_html('<div style="white-space: pre-wrap; max-width: 40em">{}</div>', obj.text)
        if obj.kind == Message.Kind.VOICE:  # how it was heard, and a player when the audio is kept
            text = format_html("{}{}", text, voice_messages.voice_details(obj))
        if obj.source in Message.LLM_SOURCES:
            text = format_html("{}{}", text, llm_details(obj))
        return text

    @admin.display(description="delivery")
    def delivery(self, obj: Message):
        return delivery_details(obj)

    def get_queryset(self, request):
        helpful = Feedback.objects.filter(message=OuterRef("pk"), helpful=True)
        return super().get_queryset(request).select_related("faq_entry").annotate(_helpful=Exists(helpful))

    @admin.display(description="")
    def save_to_faq(self, obj: Message):
        if obj.source == Message.Source.FAQ and getattr(obj, "_helpful", False):
            return add_as_phrasing_button(obj)
        if obj.source != Message.Source.OPERATOR:
            return ""
        url = reverse("admin:support_message_save_to_faq", args=[obj.pk])
        return format_html('<a class="button" href="{}">Save to FAQ</a>', url)


def llm_details(message: Message):
    """For the admin thread: which model wrote an LLM answer, from which FAQ entries, how fast."""
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


def delivery_details(message: Message):
    """For the admin thread: the delivery status, and what an operator must know about it.

    Above all a reply whose bot stopped mid-send (outbox lease, ``services.requeue_abandoned``):
    it was re-sent once and may have arrived twice, or, interrupted again, may not have arrived.
    """
    status = message.get_delivery_status_display() if message.delivery_status else ""
    notes = []
    if message.delivery_interrupted and message.delivery_status == Message.Delivery.FAILED:
        notes.append("⚠ the bot stopped while sending it: it may or may not have arrived "
                     "(ask the customer, or reply again)")
    elif message.delivery_interrupted:
        notes.append("⚠ may have arrived twice: the bot stopped while sending it, so it was re-sent once")
    elif message.is_stuck(lease=services.outbox_lease()):
        notes.append(f"⚠ stuck since {message.delivery_claimed_at:%Y-%m-%d %H:%M} UTC: the bot stopped while "
                     "sending it; a running bot re-sends it once (it may arrive twice)")
    if message.delivery_error and message.delivery_status != Message.Delivery.SENT:
        notes.append(message.delivery_error)
    if message.delivery_attempts:
        n = message.delivery_attempts
        notes.append(f"{n} {'earlier ' if message.delivery_status == Message.Delivery.SENT else ''}"
                     f"attempt{'s' if n != 1 else ''} without a result")
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


class StatusChangeInline(admin.TabularInline):
    model = TicketStatusChange
    extra = 0
    can_delete = False
    fields = readonly_fields = ("created_at", "old_status", "new_status", "actor", "changed_by", "reason",
                                "draft_answer")
    verbose_name_plural = "Status history"

    def has_add_permission(self, request, obj=None) -> bool:
        return False


class NeedsPersonFilter(admin.SimpleListFilter):
    title = "needs a person"
    parameter_name = "needs_person"

    def lookups(self, request, model_admin):
        return [("yes", "Waiting for an operator")]

    def queryset(self, request, queryset):
        if self.value() == "yes":
            return queryset.filter(status=Ticket.Status.WITH_OPERATOR)
        return queryset


class TicketForm(forms.ModelForm):
    reply = forms.CharField(
        required=False, widget=forms.Textarea(attrs={"rows": 4, "cols": 80}),
        help_text="Your answer to the customer. The bot delivers it to Telegram once.",
    )

    class Meta:
        model = Ticket
        fields: list[str] = []


@admin.register(Ticket)
class TicketAdmin(admin.ModelAdmin):
    form = TicketForm
    list_display = ["id", "user", "status", "message_count", "created_at", "updated_at"]
    list_filter = ["status", NeedsPersonFilter]
    list_select_related = ["user"]
    search_fields = ["user__username", "user__first_name", "messages__text"]
    raw_id_fields = ["user"]
    readonly_fields = ["user", "status", "created_at", "updated_at", "handed_over_at", "closed_at"]
    fieldsets = [(None, {"fields": ["user", "status", "created_at", "handed_over_at", "closed_at", "reply"]})]
    inlines = [MessageInline, StatusChangeInline]
    actions = ["close_tickets"]

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(_messages=Count("messages"))

    def has_add_permission(self, request) -> bool:
        return False  # tickets start in Telegram

    @admin.display(description="messages", ordering="_messages")
    def message_count(self, obj) -> int:
        return obj._messages

    def save_model(self, request, obj, form, change):
        text = form.cleaned_data.get("reply", "").strip()
        if text:
            try:
                services.do_operator_reply(ticket=obj, operator=request.user, text=text)
            except DomainError as exc:
                self.message_user(request, exc.message, level=messages.ERROR)
            else:
                messages.success(request, "Reply queued; the bot delivers it to the customer.")

    @admin.action(description="Close selected tickets")
    def close_tickets(self, request, queryset):
        closed = sum(services.close_ticket(ticket=t, operator=request.user) for t in queryset)
        self.message_user(request, f"{closed} tickets closed.")


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

    @admin.display(description="text")
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
            messages.error(request, "You may not add FAQ entries.")
            return HttpResponseRedirect(reverse("admin:index"))
        message = get_object_or_404(Message.objects.select_related("ticket__user"), pk=message_id)
        if request.method != "POST":  # a state change needs a POST: show what will be saved first
            context = {**self.admin_site.each_context(request), "message": message,
                       "title": "Save this answer to the FAQ?", "opts": self.model._meta}
            return TemplateResponse(request, "support/save_to_faq.html", context)
        try:
            entry = services.save_answer_to_faq(message=message)
        except DomainError as exc:
            self.message_user(request, exc.message, level=messages.ERROR)
            return HttpResponseRedirect(reverse("admin:support_ticket_change", args=[message.ticket_id]))
        messages.success(request, f"Saved as FAQ entry “{entry.key}”. Review the wording below.")
        return HttpResponseRedirect(reverse("admin:support_faqentry_change", args=[entry.pk]))


    def add_as_phrasing_view(self, request, message_id: int):
        message = get_object_or_404(Message.objects.select_related("faq_entry", "ticket"), pk=message_id)
        back = reverse("admin:support_ticket_change", args=[message.ticket_id])
        if request.method != "POST":
            return HttpResponseRedirect(back)
        if not request.user.has_perm("support.add_faqphrasing"):
            messages.error(request, "You may not add FAQ phrasings.")
            return HttpResponseRedirect(back)
        try:
            phrasing = services.add_question_as_phrasing(answer=message)
        except DomainError as exc:
            self.message_user(request, exc.message, level=messages.ERROR)
        else:
            assert message.faq_entry is not None  # the phrasing was added to it
            url = reverse("admin:support_faqentry_change", args=[phrasing.entry_id])
            messages.success(request, format_html(
                "Added “{}” to FAQ entry <a href=\"{}\">“{}”</a> as a phrasing.",
                phrasing.text[:120], url, message.faq_entry.key))
        return HttpResponseRedirect(back)


@admin.register(Feedback)
class FeedbackAdmin(admin.ModelAdmin):
    list_display = ["id", "helpful", "answer_source", "answer_text", "created_at", "faq_phrasing"]
    list_filter = ["helpful", "message__source"]
    list_select_related = ["message", "message__faq_entry"]
    raw_id_fields = ["message"]

    @admin.display(description="source")
    def answer_source(self, obj: Feedback) -> str:
        return obj.message.source

    @admin.display(description="answer")
    def answer_text(self, obj: Feedback) -> str:
        return obj.message.text[:80]

    @admin.display(description="")
    def faq_phrasing(self, obj: Feedback):
        if obj.helpful and obj.message.source == Message.Source.FAQ:
            return add_as_phrasing_button(obj.message)
        return ""
