"""FAQ changes through any ORM path announce themselves after commit: ``faq_changed``.

Changes are collected per thread and announced once per transaction, so a bulk
import is embedded in batches instead of once per row, and nothing is announced for
a transaction that rolls back. The FAQ index listens (``knowledge.receivers``,
connected in ``KnowledgeConfig.ready``); this app does not know it exists.
"""

from __future__ import annotations

import logging
import threading

from django.db import transaction
from django.db.models.signals import post_delete, post_save
from django.dispatch import Signal, receiver

from supportbot.support.models import FaqEntry, FaqPhrasing

log = logging.getLogger(__name__)

#: Sent (sender ``FaqEntry``) once a transaction that changed FAQ entries or phrasings
#: has committed. ``entry_ids``: the entries whose texts may have changed (empty when
#: only deletions happened); any change, including an active flag, may change what is served.
faq_changed = Signal()


class _PendingSync(threading.local):
    def __init__(self) -> None:
        self.entry_ids: set[int] = set()
        self.dirty = False


_pending = _PendingSync()


def _flush() -> None:
    if not _pending.dirty:
        return  # an earlier callback of the same commit already announced everything
    ids = set(_pending.entry_ids)
    _pending.entry_ids.clear()
    _pending.dirty = False
    # Robust: a failing receiver must not fail the request whose transaction committed.
    for receiver_, result in faq_changed.send_robust(sender=FaqEntry, entry_ids=ids):
        if isinstance(result, Exception):
            log.error("faq_changed receiver %r failed", receiver_, exc_info=result)


def _schedule(entry_id: int | None) -> None:
    # Ids left over from a rolled-back transaction are announced with the next
    # commit, which is harmless: the sync is idempotent.
    if entry_id is not None:
        _pending.entry_ids.add(entry_id)
    _pending.dirty = True
    transaction.on_commit(_flush)


@receiver(post_save, sender=FaqEntry, dispatch_uid="faq_entry_saved")
def _entry_saved(sender, instance: FaqEntry, **kwargs) -> None:
    _schedule(instance.pk)


@receiver(post_delete, sender=FaqEntry, dispatch_uid="faq_entry_deleted")
def _entry_deleted(sender, instance: FaqEntry, **kwargs) -> None:
    _schedule(None)


@receiver(post_save, sender=FaqPhrasing, dispatch_uid="faq_phrasing_saved")
def _phrasing_saved(sender, instance: FaqPhrasing, **kwargs) -> None:
    _schedule(instance.entry_id)


@receiver(post_delete, sender=FaqPhrasing, dispatch_uid="faq_phrasing_deleted")
def _phrasing_deleted(sender, instance: FaqPhrasing, **kwargs) -> None:
    _schedule(instance.entry_id)
