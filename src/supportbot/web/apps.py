from django.apps import AppConfig


class WebConfig(AppConfig):
    """The Django side's composition root: connects the parts that must not know each other."""

    name = "supportbot.web"
    label = "supportbot_web"
    verbose_name = "supportbot"

    def ready(self) -> None:
        # The support app sends faq_changed after commit and knows nothing of the index; the
        # assembly answers it with this process's embedder (knowledge.receivers).
        from supportbot.assembly import sync_changed_entries
        from supportbot.support.signals import faq_changed

        faq_changed.connect(sync_changed_entries, dispatch_uid="assembly_sync_changed_entries")
