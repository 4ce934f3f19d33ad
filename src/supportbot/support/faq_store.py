"""The FAQ index's view of the database, over the ORM.

Implements ``knowledge.store.FaqStore`` (structurally: this app never imports the
knowledge package). Vectors are kept as float32 little-endian bytes (``FaqEmbedding.vector``).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

import numpy as np
from django.db import transaction
from django.db.models import F

from supportbot.support.models import FaqEmbedding, FaqEntry, FaqPhrasing, KnowledgeVersion

_CHUNK = 900  # ids per query: stay under SQLite's variable limit


class DjangoFaqStore:
    def version(self, model_name: str) -> int:
        row = KnowledgeVersion.objects.filter(model_name=model_name).values_list("version", flat=True).first()
        return int(row or 0)

    def bump_version(self, model_name: str, *, all_models: bool = False) -> None:
        KnowledgeVersion.objects.get_or_create(model_name=model_name)
        rows = KnowledgeVersion.objects.all() if all_models else KnowledgeVersion.objects.filter(model_name=model_name)
        rows.update(version=F("version") + 1)

    def live_vector_rows(self, model_name: str) -> list[tuple[int, int]]:
        return list(
            FaqEmbedding.objects.filter(model_name=model_name, entry__is_active=True)
            .order_by("id").values_list("id", "entry_id")
        )

    def live_entries(self) -> dict[int, tuple[str, str]]:
        return {
            entry_id: (key, language)
            for entry_id, key, language in FaqEntry.objects.filter(is_active=True)
            .order_by().values_list("id", "key", "language")
        }

    def vectors(self, vector_ids: Collection[int]) -> dict[int, np.ndarray]:
        ids = list(vector_ids)
        found: dict[int, np.ndarray] = {}
        for start in range(0, len(ids), _CHUNK):
            rows = FaqEmbedding.objects.filter(id__in=ids[start : start + _CHUNK]).values_list("id", "dim", "vector")
            for row_id, dim, blob in rows:
                found[row_id] = np.frombuffer(bytes(blob), dtype="<f4", count=dim)
        return found

    def texts(self, entry_ids: Collection[int] | None = None) -> list[tuple[int, int | None, str]]:
        entries = FaqEntry.objects.all()
        phrasings = FaqPhrasing.objects.all()
        if entry_ids is not None:
            ids = list(entry_ids)
            entries = entries.filter(id__in=ids)
            phrasings = phrasings.filter(entry_id__in=ids)
        texts: list[tuple[int, int | None, str]] = [(e, None, q) for e, q in entries.values_list("id", "question")]
        texts += [(e, p, t) for p, e, t in phrasings.values_list("id", "entry_id", "text")]
        return texts

    def vector_keys(self, model_name: str, entry_ids: Collection[int] | None = None) -> dict[tuple[int, str], int]:
        stored = FaqEmbedding.objects.filter(model_name=model_name)
        if entry_ids is not None:
            stored = stored.filter(entry_id__in=list(entry_ids))
        return {(e, h): row_id for row_id, e, h in stored.values_list("id", "entry_id", "text_hash")}

    def add_vectors(self, model_name: str, vectors: Sequence[tuple[int, int | None, str, np.ndarray]]) -> None:
        rows = [
            FaqEmbedding(entry_id=entry_id, phrasing_id=phrasing_id, model_name=model_name, text_hash=digest,
                         dim=int(vector.shape[0]), vector=np.asarray(vector, dtype="<f4").tobytes())
            for entry_id, phrasing_id, digest, vector in vectors
        ]
        with transaction.atomic():
            FaqEmbedding.objects.bulk_create(rows, ignore_conflicts=True)
            self.bump_version(model_name)

    def remove_vectors(self, model_name: str, vector_ids: Collection[int]) -> None:
        ids = list(vector_ids)
        with transaction.atomic():
            for start in range(0, len(ids), _CHUNK):
                FaqEmbedding.objects.filter(id__in=ids[start : start + _CHUNK]).delete()
            self.bump_version(model_name)
