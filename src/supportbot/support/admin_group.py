"""The operators' Telegram group desk in the admin: who is who in the group, and the topics.

**Operator accounts** link a Telegram user to a staff account: an operator who writes in a
customer's topic is that Django user (the reply is theirs in the web thread). The bot tells an
unlinked operator their Telegram id when they write in a topic. **Forum topics** show each
customer's topic (read only: the bot creates, renames and re-creates them).
"""

from __future__ import annotations

from django import forms
from django.contrib import admin
from django.utils.translation import gettext_lazy as _

from supportbot.support.models import ForumTopic, OperatorAccount


class OperatorAccountForm(forms.ModelForm):
    class Meta:
        model = OperatorAccount
        fields = ["user", "telegram_user_id", "telegram_username"]
        help_texts = {
            "telegram_user_id": _("The operator's numeric Telegram id. The bot tells it to an operator who "
                                  "writes in a customer's topic before being linked."),
            "telegram_username": _("Optional, for your reference (without @)."),
        }

    def clean_telegram_user_id(self) -> int:
        value = self.cleaned_data["telegram_user_id"]
        if value is None or value <= 0:
            raise forms.ValidationError(_("A Telegram user id is a positive number, e.g. 123456789."))
        return value

    def clean_telegram_username(self) -> str:
        return (self.cleaned_data.get("telegram_username") or "").strip().removeprefix("@")

    def clean_user(self):
        user = self.cleaned_data["user"]
        if user is not None and not (user.is_active and user.is_staff):
            raise forms.ValidationError(_("Only an active staff user can answer customers: make the user "
                                          "staff first (Users)."))
        return user


@admin.register(OperatorAccount)
class OperatorAccountAdmin(admin.ModelAdmin):
    form = OperatorAccountForm
    list_display = ["user", "telegram_user_id", "telegram_username"]
    search_fields = ["user__username", "user__first_name", "user__last_name", "telegram_username",
                     "telegram_user_id"]
    list_select_related = ["user"]
    raw_id_fields = ["user"]


@admin.register(ForumTopic)
class ForumTopicAdmin(admin.ModelAdmin):
    list_display = ["name", "customer", "chat_id", "message_thread_id", "created_at"]
    search_fields = ["name", "customer__username", "customer__first_name"]
    list_select_related = ["customer"]
    readonly_fields = ["customer", "chat_id", "message_thread_id", "name", "created_at"]

    def has_add_permission(self, request) -> bool:
        return False  # the bot creates topics
