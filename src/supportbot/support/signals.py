"""FAQ changes through any ORM path schedule an embedding sync after commit.

Changes are collected per thread and flushed once per transaction, so a bulk
import embeds in batches instead of once per row, and nothing is embedded for a
transaction that rolls back.
"""

from __future__ import annotations

import logging
import threading

from django.db import transaction
from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver

from supportbot.support.models import FaqEntry, FaqPhrasing

log = logging.getLogger(__name__)


class _PendingSync(threading.local):
    def __init__(self) -> None:
        self.entry_ids: set[int] = set()
        self.dirty = False


_pending = _PendingSync()


def _flush() -> None:
    from supportbot.knowledge.embedders import default_embedder
    from supportbot.knowledge.sync import bump_version, sync_embeddings

    if not _pending.dirty:
        return  # an earlier callback of the same commit already synced everything
    ids = set(_pending.entry_ids)
    _pending.entry_ids.clear()
    _pending.dirty = False
    embedder = default_embedder()
    try:
        if ids:
            sync_embeddings(embedder, ids)
        # Activation flags and deletions change what is served even when no
        # vector changed: always tell the running processes.
        bump_version(embedder.name, all_models=True)
    except Exception:  # the index catches up at the next start-up sync
        log.exception("FAQ embedding sync failed for entries %s", sorted(ids))


def _schedule(entry_id: int | None) -> None:
    # Ids left over from a rolled-back transaction are synced with the next
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
