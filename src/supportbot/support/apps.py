from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class SupportConfig(AppConfig):
    name = "supportbot.support"
    label = "support"
    verbose_name = _("Support desk")
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Signals are extension points only: they announce FAQ changes after commit
        # (faq_changed), so every ORM path (admin, shell, import) keeps the index fresh.
        # The operators' Telegram group (OPERATOR_CHAT_ID): copies into customers' topics, its admin.
        from supportbot.support import admin_group, group_desk, signals  # noqa: F401

        group_desk.connect()
