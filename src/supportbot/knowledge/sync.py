"""Keep stored FAQ vectors in step with FAQ rows.

Runs after commit (see ``support.signals``) in whatever process changed the FAQ,
and at start-up for anything missing (a new model, an interrupted import). Only
text whose hash has no vector yet is embedded.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
from django.db import transaction
from django.db.models import F

from supportbot.knowledge.embedders import Embedder
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


def _wanted_texts(entry_ids: Iterable[int] | None):
    """(entry_id, phrasing_id | None, text) for every FAQ text that should have a vector."""
    from supportbot.support.models import FaqEntry, FaqPhrasing

    entries = FaqEntry.objects.all()
    phrasings = FaqPhrasing.objects.all()
    if entry_ids is not None:
        ids = list(entry_ids)
        entries = entries.filter(id__in=ids)
        phrasings = phrasings.filter(entry_id__in=ids)
    wanted = [(e_id, None, clean(q)) for e_id, q in entries.values_list("id", "question")]
    wanted += [(e_id, p_id, clean(t)) for p_id, e_id, t in phrasings.values_list("id", "entry_id", "text")]
    return [w for w in wanted if w[2]]


def bump_version(model_name: str, *, all_models: bool = False) -> None:
    """Tell running processes the index changed (``all_models``: for every embedder,
    e.g. when an entry's active flag changed, which no vector records)."""
    from supportbot.support.models import KnowledgeVersion

    KnowledgeVersion.objects.get_or_create(model_name=model_name)
    rows = KnowledgeVersion.objects.all() if all_models else KnowledgeVersion.objects.filter(model_name=model_name)
    rows.update(version=F("version") + 1)


def sync_embeddings(
    embedder: Embedder,
    entry_ids: Iterable[int] | None = None,
    *,
    progress: bool = False,
    batch_size: int = 64,
) -> SyncReport:
    """Embed new FAQ texts, drop vectors of texts that are gone; bump the version on change.

    ``entry_ids=None`` checks the whole FAQ.
    """
    from supportbot.support.models import FaqEmbedding

    ids = None if entry_ids is None else sorted(set(entry_ids))
    wanted = _wanted_texts(ids)
    stored = FaqEmbedding.objects.filter(model_name=embedder.name)
    if ids is not None:
        stored = stored.filter(entry_id__in=ids)
    existing = {(e, h): row_id for row_id, e, h in stored.values_list("id", "entry_id", "text_hash")}

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
        vectors = embedder.embed([text for _, (_, text) in chunk])
        rows = [
            FaqEmbedding(
                entry_id=entry_id,
                phrasing_id=phrasing_id,
                model_name=embedder.name,
                text_hash=digest,
                dim=int(vec.shape[0]),
                vector=np.asarray(vec, dtype="<f4").tobytes(),
            )
            for ((entry_id, digest), (phrasing_id, _)), vec in zip(chunk, vectors, strict=True)
        ]
        with transaction.atomic():
            FaqEmbedding.objects.bulk_create(rows, ignore_conflicts=True)
            bump_version(embedder.name)
        report.embedded += len(rows)
        if bar:
            bar.update(len(rows))
    if bar:
        bar.close()
    if stale:
        with transaction.atomic():
            for start in range(0, len(stale), 900):
                FaqEmbedding.objects.filter(id__in=stale[start : start + 900]).delete()
            bump_version(embedder.name)
        report.removed = len(stale)
    if report.changed:
        log.info("FAQ vectors: %d embedded, %d removed", report.embedded, report.removed)
    return report
