"""The FAQ index's side of FAQ changes: embed what changed, tell every process.

Connected by the web app (``supportbot.web.apps``, through ``assembly.sync_changed_entries``,
which brings the process's embedder) to ``support.signals.faq_changed``, which the support
app sends once per committed transaction that changed FAQ entries or phrasings (never
for one that rolled back).
"""

from __future__ import annotations

import logging
from collections.abc import Collection

from supportbot.knowledge.embedders import Embedder
from supportbot.knowledge.sync import bump_version, sync_embeddings

log = logging.getLogger(__name__)


def sync_changed_entries(embedder: Embedder, entry_ids: Collection[int]) -> None:
    """Embed the new or changed texts of ``entry_ids`` and bump the version for every model."""
    try:
        if entry_ids:
            sync_embeddings(embedder, entry_ids)
        # Activation flags and deletions change what is served even when no
        # vector changed: always tell the running processes.
        bump_version(embedder.name, all_models=True)
    except Exception:  # the index catches up at the next start-up sync
        log.exception("FAQ embedding sync failed for entries %s", sorted(entry_ids))
