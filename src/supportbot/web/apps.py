from django.apps import AppConfig


class WebConfig(AppConfig):
    """The Django side's composition root: connects the parts that must not know each other."""

    name = "supportbot.web"
    label = "supportbot_web"
    verbose_name = "supportbot"

    def ready(self) -> None:
        # The support app sends faq_changed after commit and knows nothing of the index; the
        # re-index job embeds the change (knowledge.receivers): on a Celery worker when a broker
        # is configured, so an admin request never embeds; in this process otherwise (tasks.queue).
        from supportbot.support.signals import faq_changed
        from supportbot.tasks.queue import faq_changed as reindex_changed_entries

        faq_changed.connect(reindex_changed_entries, dispatch_uid="tasks_reindex_changed_entries")
