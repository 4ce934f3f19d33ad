"""Keep stored FAQ vectors in step with FAQ rows (read and written through a ``FaqStore``).

Runs after commit (``support.signals.faq_changed``, received in ``receivers.py``) in
whatever process changed the FAQ, and at start-up for anything missing (a new model,
an interrupted import). Only text whose hash has no vector yet is embedded.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass

from supportbot.knowledge.embedders import Embedder
from supportbot.knowledge.store import FaqStore, NewVector, default_store
from supportbot.knowledge.text import clean, text_hash

log = logging.getLogger(__name__)


@dataclass
class SyncReport:
    embedded: int = 0
    removed: int = 0
    entries: int = 0

    @property
    def changed(self) -> bool:
        return bool(self.embedded or self.removed)


def _wanted_texts(store: FaqStore, entry_ids: list[int] | None):
    """(entry_id, phrasing_id | None, text) for every FAQ text that should have a vector."""
    wanted = [(e_id, p_id, clean(text)) for e_id, p_id, text in store.texts(entry_ids)]
    return [w for w in wanted if w[2]]


def bump_version(model_name: str, *, all_models: bool = False, store: FaqStore | None = None) -> None:
    """Tell running processes the index changed (``all_models``: for every embedder,
    e.g. when an entry's active flag changed, which no vector records)."""
    (store or default_store()).bump_version(model_name, all_models=all_models)


def sync_embeddings(
    embedder: Embedder,
    entry_ids: Iterable[int] | None = None,
    *,
    store: FaqStore | None = None,
    progress: bool = False,
    batch_size: int = 64,
) -> SyncReport:
    """Embed new FAQ texts, drop vectors of texts that are gone; bump the version on change.

    ``entry_ids=None`` checks the whole FAQ. ``store``: default, the ORM's.
    """
    store = store or default_store()
    ids = None if entry_ids is None else sorted(set(entry_ids))
    wanted = _wanted_texts(store, ids)
    existing = store.vector_keys(embedder.name, ids)

    todo: dict[tuple[int, str], tuple[int | None, str]] = {}
    keep: set[int] = set()
    for entry_id, phrasing_id, text in wanted:
        key = (entry_id, text_hash(text))
        if key in existing:
            keep.add(existing[key])
        else:
            todo.setdefault(key, (phrasing_id, text))
    stale = [row_id for row_id in existing.values() if row_id not in keep]

    report = SyncReport(entries=len({w[0] for w in wanted}))
    items = list(todo.items())
    bar = None
    if progress and items:
        from tqdm import tqdm

        bar = tqdm(total=len(items), desc="Embedding FAQ", unit="text")
    for start in range(0, len(items), batch_size):
        chunk = items[start : start + batch_size]
        vectors = embedder.embed_documents([text for _, (_, text) in chunk])
        rows: list[NewVector] = [
            (entry_id, phrasing_id, digest, vec)
            for ((entry_id, digest), (phrasing_id, _)), vec in zip(chunk, vectors, strict=True)
        ]
        store.add_vectors(embedder.name, rows)  # and bumps the version, in one transaction
        report.embedded += len(rows)
        if bar:
            bar.update(len(rows))
    if bar:
        bar.close()
    if stale:
        store.remove_vectors(embedder.name, stale)
        report.removed = len(stale)
    if report.changed:
        log.info("FAQ vectors: %d embedded, %d removed", report.embedded, report.removed)
    return report
