from django.apps import AppConfig


class KnowledgeConfig(AppConfig):
    """The FAQ index as a Django app without models: it only listens for FAQ changes."""

    name = "supportbot.knowledge"
    label = "knowledge"
    verbose_name = "FAQ index"

    def ready(self) -> None:
        # The support app sends the signal after commit and knows nothing of the index.
        from supportbot.knowledge.receivers import sync_changed_entries
        from supportbot.support.signals import faq_changed

        faq_changed.connect(sync_changed_entries, dispatch_uid="knowledge_sync_changed_entries")
