"""The in-process FAQ index: a normalised float32 matrix and a row -> entry map.

The database is the source of truth. Each process keeps a snapshot and refreshes
it incrementally: a cheap version check tells it rows changed, then it loads only
the vectors it does not hold yet and drops the ones that are gone. Vectors are
never recomputed here. Search is one matrix product.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field

import numpy as np

from supportbot.knowledge.decision import MatchPolicy
from supportbot.knowledge.embedders import Embedder
from supportbot.knowledge.text import clean_question

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class EntryMatch:
    entry_id: int
    key: str
    score: float
    language: str = ""


@dataclass(frozen=True, slots=True)
class SearchResult:
    question: str
    matches: list[EntryMatch]
    confident: bool
    embed_ms: float
    search_ms: float

    @property
    def best(self) -> EntryMatch | None:
        return self.matches[0] if self.matches else None


@dataclass(frozen=True)
class _Snapshot:
    version: int = -1
    row_ids: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    entry_of_row: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    slot_of_row: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    entry_of_slot: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    matrix: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), dtype=np.float32))
    keys: dict[int, str] = field(default_factory=dict)
    languages: dict[int, str] = field(default_factory=dict)


class FaqIndex:
    def __init__(self, embedder: Embedder, policy: MatchPolicy) -> None:
        self.embedder = embedder
        self.policy = policy
        self._snapshot = _Snapshot()
        self._refresh_lock = threading.Lock()
        self.loaded_vectors = 0  # vectors read from the database, for tests/metrics

    # -- refresh (sync: call from a thread) -----------------------------------
    def current_version(self) -> int:
        from supportbot.support.models import KnowledgeVersion

        row = (
            KnowledgeVersion.objects.filter(model_name=self.embedder.name)
            .values_list("version", flat=True)
            .first()
        )
        return int(row or 0)

    def refresh(self, *, force: bool = False) -> bool:
        """Bring the snapshot up to date; return True when it changed."""
        from supportbot.support.models import FaqEmbedding

        with self._refresh_lock:
            old = self._snapshot
            version = self.current_version()
            if version == old.version and not force:
                return False
            live = list(
                FaqEmbedding.objects.filter(model_name=self.embedder.name, entry__is_active=True)
                .order_by("id")
                .values_list("id", "entry_id", "entry__key", "entry__language")
            )
            ids = np.fromiter((r[0] for r in live), dtype=np.int64, count=len(live))
            entries = np.fromiter((r[1] for r in live), dtype=np.int64, count=len(live))
            keys = {r[1]: r[2] for r in live}
            languages = {r[1]: r[3] for r in live}
            have = {int(i): n for n, i in enumerate(old.row_ids)}
            missing = [int(i) for i in ids if int(i) not in have]
            fresh: dict[int, np.ndarray] = {}
            for start in range(0, len(missing), 900):  # stay under SQLite's variable limit
                chunk = missing[start : start + 900]
                for row_id, dim, blob in FaqEmbedding.objects.filter(id__in=chunk).values_list(
                    "id", "dim", "vector"
                ):
                    fresh[row_id] = np.frombuffer(bytes(blob), dtype="<f4", count=dim)
            self.loaded_vectors += len(fresh)
            if len(ids):
                rows = [
                    old.matrix[have[int(i)]] if int(i) in have else fresh[int(i)] for i in ids
                ]
                matrix = np.ascontiguousarray(np.vstack(rows), dtype=np.float32)
            else:
                matrix = np.zeros((0, 0), dtype=np.float32)
            entry_of_slot, slot_of_row = np.unique(entries, return_inverse=True)
            self._snapshot = _Snapshot(
                version, ids, entries, slot_of_row.astype(np.int64), entry_of_slot, matrix, keys, languages
            )
            log.info(
                "FAQ index v%s: %d vectors, %d entries (%d loaded)",
                version, len(ids), len(keys), len(fresh),
            )
            return True

    # -- search (sync: call from a thread) -------------------------------------
    @property
    def size(self) -> int:
        return len(self._snapshot.row_ids)

    @property
    def entry_count(self) -> int:
        return len(self._snapshot.keys)

    def search(self, question: str, *, k: int = 5) -> SearchResult:
        text = clean_question(question)
        t0 = time.perf_counter()
        snap = self._snapshot
        if not text or not len(snap.row_ids):
            return SearchResult(text, [], False, 0.0, 0.0)
        vector = self.embedder.embed([text])[0]
        t1 = time.perf_counter()
        matches = self.search_vector(vector, k=max(k, 10), snapshot=snap)
        t2 = time.perf_counter()
        confident = bool(matches) and self.policy.is_confident(matches[0].score, _runner_up(matches))
        return SearchResult(text, matches[:k], confident, (t1 - t0) * 1000, (t2 - t1) * 1000)

    def search_vector(
        self, vector: np.ndarray, *, k: int = 5, snapshot: _Snapshot | None = None
    ) -> list[EntryMatch]:
        snap = snapshot or self._snapshot
        if not len(snap.row_ids):
            return []
        scores = snap.matrix @ vector.astype(np.float32)
        # An entry scores as its best question or phrasing.
        per_entry = np.full(len(snap.entry_of_slot), -np.inf, dtype=np.float32)
        np.maximum.at(per_entry, snap.slot_of_row, scores)
        k = min(k, len(per_entry))
        top = np.argpartition(-per_entry, k - 1)[:k]
        top = top[np.argsort(-per_entry[top])]
        return [
            EntryMatch(e, snap.keys[e], float(per_entry[s]), snap.languages.get(e, ""))
            for s, e in ((s, int(snap.entry_of_slot[s])) for s in top)
        ]


def _runner_up(matches: list[EntryMatch]) -> float | None:
    """The best competing entry's score: one in the same language as the winner.

    The same answer kept in several languages is not ambiguity; two different
    entries in one language that both fit the question are.
    """
    best = matches[0]
    return next((m.score for m in matches[1:] if m.language == best.language), None)
