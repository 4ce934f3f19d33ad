"""The in-process FAQ index: a normalised float32 matrix and a row -> entry map.

The database is the source of truth, read through a ``FaqStore`` (``store.py``).
Each process keeps a snapshot and refreshes
it incrementally: a cheap version check tells it rows changed, then it loads only
the vectors it does not hold yet and drops the ones that are gone. Vectors are
never recomputed here; the per-FAQ classifier is retrained from them on each
change (``classifier.py``) while the FAQ is within the policy's size limit (above
it the cosine rule decides, so a refresh stays well under a second at 100,000
texts). Search is a few matrix products; whether to answer is
``decision.MatchPolicy``'s call.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

import numpy as np

from supportbot.knowledge.classifier import EntryClassifier, centre
from supportbot.knowledge.decision import MatchPolicy, policy_for
from supportbot.knowledge.embedders import Embedder
from supportbot.knowledge.store import FaqStore, default_store
from supportbot.knowledge.text import clean_question
from supportbot.translit import LATIN_RU, LATIN_UK, detect, to_cyrillic

if TYPE_CHECKING:
    from supportbot.config import FaqSettings

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class EntryMatch:
    entry_id: int
    key: str
    #: Raw cosine of the question and the entry's closest text (question or phrasing).
    score: float
    language: str = ""
    #: The classifier's probability for this entry among entries of its language
    #: (None when the cosine rule decides: tiny FAQ or classifier off).
    probability: float | None = None
    #: Cosine after removing what all FAQ texts share (None without the classifier).
    specific: float | None = None
    #: The best match only: its cosine's lead over the best other entry of its language.
    margin: float | None = None


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
    # Rows are grouped by entry slot; where each slot's rows start.
    slot_starts: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    language_of_slot: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=object))
    classifier: EntryClassifier | None = None
    # Per row, for the centred similarity without a second matrix: row . mean, |row - mean|.
    row_dot_mean: np.ndarray | None = None
    row_centred_norm: np.ndarray | None = None


class FaqIndex:
    def __init__(self, embedder: Embedder, policy: MatchPolicy, *, store: FaqStore | None = None) -> None:
        self.embedder = embedder
        self.policy = policy
        self._store = store  # None: the ORM's, resolved on first use (construction needs no Django)
        self._snapshot = _Snapshot()
        self._refresh_lock = threading.Lock()
        self.loaded_vectors = 0  # vectors read from the database, for tests/metrics
        self._classifier_limited = False  # over the policy's size limit at the last build (logged once)

    @property
    def store(self) -> FaqStore:
        if self._store is None:
            self._store = default_store()
        return self._store

    # -- refresh (sync: call from a thread) -----------------------------------
    def current_version(self) -> int:
        return self.store.version(self.embedder.name)

    def refresh(self, *, force: bool = False) -> bool:
        """Bring the snapshot up to date; return True when it changed.

        Cheap at any size: row ids and entry ids only (no vectors) for what is live,
        vectors read only for rows this process does not hold yet, and the new
        matrix gathered from the old one in one pass, already grouped by entry.
        """
        with self._refresh_lock:
            old = self._snapshot
            version = self.current_version()
            if version == old.version and not force:
                return False
            store = self.store
            pairs = np.array(store.live_vector_rows(self.embedder.name), dtype=np.int64).reshape(-1, 2)
            meta = store.live_entries()
            ids, entries = pairs[:, 0], pairs[:, 1]
            entry_of_slot, slot_of_row = np.unique(entries, return_inverse=True)
            gone = [e for e in entry_of_slot.tolist() if e not in meta]
            if gone:  # deactivated or deleted between the two reads: leave its rows out
                keep = ~np.isin(entries, gone)
                ids, entries = ids[keep], entries[keep]
                entry_of_slot, slot_of_row = np.unique(entries, return_inverse=True)
            # Rows grouped by entry (then by id), so per-entry maxima are one ``reduceat``;
            # ids, entries and matrix rows stay aligned for the next incremental refresh.
            order = np.argsort(slot_of_row, kind="stable")
            ids, entries = ids[order], entries[order]
            slot_of_row = slot_of_row[order].astype(np.int64)
            keys = {e: meta[e][0] for e in entry_of_slot.tolist()}
            languages = {e: meta[e][1] for e in entry_of_slot.tolist()}

            source = _positions(old.row_ids, ids)  # each row's place in the old matrix, -1: new
            missing = [int(i) for i in ids[source < 0]]
            fresh = store.vectors(missing) if missing else {}
            self.loaded_vectors += len(fresh)
            if len(ids):
                dim = old.matrix.shape[1] if len(old.row_ids) else len(next(iter(fresh.values())))
                matrix = np.empty((len(ids), dim), dtype=np.float32)
                if len(old.row_ids):
                    np.take(old.matrix, np.maximum(source, 0), axis=0, out=matrix, mode="clip")
                for position in np.flatnonzero(source < 0):
                    matrix[position] = fresh[int(ids[position])]
            else:
                matrix = np.zeros((0, 0), dtype=np.float32)
            self._snapshot = self._build(version, ids, entries, slot_of_row, entry_of_slot, matrix, keys, languages)
            log.info(
                "FAQ index v%s: %d vectors, %d entries (%d loaded)%s",
                version, len(ids), len(keys), len(fresh),
                " + classifier" if self._snapshot.classifier is not None else "",
            )
            return True

    def _build(self, version, ids, entries, slot_of_row, entry_of_slot, matrix, keys, languages) -> _Snapshot:
        """The snapshot of rows already grouped by entry slot, with the classifier when it applies."""
        starts = np.searchsorted(slot_of_row, np.arange(len(entry_of_slot)))
        language_of_slot = np.array([languages.get(int(e), "") for e in entry_of_slot], dtype=object)
        classifier = row_dot_mean = row_centred_norm = None
        entries_count, texts = len(entry_of_slot), len(ids)
        limited = (self.policy.classifier_applies(entries_count)
                   and self.policy.over_classifier_limit(entries_count, texts))
        if limited and not self._classifier_limited:
            log.warning(
                "FAQ classifier off: %d entries / %d texts is over its size limit (%s entries, %s texts); "
                "the cosine rule decides (threshold %.2f, margin %.3f)",
                entries_count, texts, self.policy.classifier_max_entries, self.policy.classifier_max_texts,
                self.policy.threshold, self.policy.margin,
            )
        elif self._classifier_limited and not limited:
            log.info("FAQ classifier back on: %d entries / %d texts is within its size limit", entries_count, texts)
        self._classifier_limited = limited
        if self.policy.trains_classifier(entries_count, texts):
            started = time.perf_counter()
            classifier = EntryClassifier.train(matrix, slot_of_row, len(entry_of_slot),
                                               scale=self.policy.classifier_scale)
            row_dot_mean = matrix @ classifier.mean
            row_centred_norm = np.linalg.norm(matrix - classifier.mean, axis=1)
            row_centred_norm[row_centred_norm == 0] = 1.0
            log.info("FAQ classifier: %d texts, %d entries, trained in %.2fs",
                     len(ids), len(entry_of_slot), time.perf_counter() - started)
        return _Snapshot(version, ids, entries, slot_of_row, entry_of_slot, matrix, keys, languages,
                         starts, language_of_slot, classifier, row_dot_mean, row_centred_norm)

    # -- search (sync: call from a thread) -------------------------------------
    @property
    def size(self) -> int:
        return len(self._snapshot.row_ids)

    @property
    def entry_count(self) -> int:
        return len(self._snapshot.keys)

    def search(self, question: str, *, k: int = 5, exclude_entry: int | None = None) -> SearchResult:
        """Rank entries for ``question`` and decide whether the best one is a confident answer.

        ``exclude_entry``: match as if that entry were not in the FAQ (the admin's
        near-duplicate check for an entry being edited).
        """
        text = clean_question(question)
        t0 = time.perf_counter()
        snap = self._snapshot
        if not text or not len(snap.row_ids):
            return SearchResult(text, [], False, 0.0, 0.0)
        # Ukrainian or Russian typed in Latin letters: the model learned them in Cyrillic.
        detected = detect(text)
        cyrillic = (to_cyrillic(text, detected) if detected in (LATIN_UK, LATIN_RU) and self.policy.latin != "off"
                    else None)
        forms = [cyrillic] if cyrillic and self.policy.latin == "replace" else [text, cyrillic] if cyrillic else [text]
        vectors = [self.embedder.embed([form])[0] for form in forms]
        t1 = time.perf_counter()
        language = detected.removesuffix("-latin")
        ranked = [self._rank(vector, snap, k=k, exclude_entry=exclude_entry, language=language)
                  for vector in vectors]
        # Both forms: the one the matcher is surer of (its best entry's probability, or cosine).
        matches, confident = max(ranked, key=lambda r: _certainty(r[0]))
        t2 = time.perf_counter()
        return SearchResult(text, matches, confident, (t1 - t0) * 1000, (t2 - t1) * 1000)

    def search_vector(
        self, vector: np.ndarray, *, k: int = 5, snapshot: _Snapshot | None = None
    ) -> list[EntryMatch]:
        return self._rank(vector, snapshot or self._snapshot, k=k)[0]

    def _rank(
        self, vector: np.ndarray, snap: _Snapshot, *, k: int, exclude_entry: int | None = None,
        language: str = "",
    ) -> tuple[list[EntryMatch], bool]:
        if not len(snap.row_ids):
            return [], False
        vector = vector.astype(np.float32)
        # One pass over the rows (einsum: single-threaded, no BLAS thread hand-off
        # per question). An entry scores as its best question or phrasing.
        raw = np.einsum("ij,j->i", snap.matrix, vector)
        per_entry = np.maximum.reduceat(raw, snap.slot_starts)
        excluded = None
        if exclude_entry is not None:
            hits = np.flatnonzero(snap.entry_of_slot == exclude_entry)
            excluded = int(hits[0]) if len(hits) else None
        if snap.classifier is None or not self.policy.uses_classifier:
            ranking = per_entry.copy()
            if excluded is not None:
                ranking[excluded] = -np.inf
            top = _top(ranking, k=max(k, 10))
            matches = [self._match(snap, s, per_entry) for s in top if np.isfinite(ranking[s])]
            confident = bool(matches) and self.policy.is_confident(matches[0].score, _runner_up(matches))
            return matches[:k], confident
        mean = snap.classifier.mean
        assert snap.row_dot_mean is not None and snap.row_centred_norm is not None  # built with the classifier
        centred_query = centre(vector, mean)
        # Cosine of the centred row and the centred question, from the raw scores:
        # (row - mean) . (v - mean) / (|row - mean| |v - mean|).
        mean_dot_v, mean_dot_mean = float(mean @ vector), float(mean @ mean)
        query_norm = float(np.linalg.norm(vector - mean)) or 1.0
        centred_scores = (raw - snap.row_dot_mean - mean_dot_v + mean_dot_mean) / (
            query_norm * snap.row_centred_norm
        )
        specific = np.maximum.reduceat(centred_scores, snap.slot_starts)
        probabilities = snap.classifier.probabilities(centred_query)
        if excluded is not None:
            probabilities[excluded] = 0.0
        top = _top(probabilities, k=k)
        chosen = self._classified(snap, top, probabilities, per_entry, specific, excluded)
        preferred = _prefer_language(top, language, per_entry, snap.language_of_slot)
        if preferred is not top:  # the customer's language's copy, when it is confident itself
            own_language = self._classified(snap, preferred, probabilities, per_entry, specific, excluded)
            if own_language[1] or not chosen[1]:
                return own_language
        return chosen

    def _classified(self, snap: _Snapshot, top: np.ndarray, probabilities: np.ndarray, per_entry: np.ndarray,
                    specific: np.ndarray, excluded: int | None) -> tuple[list[EntryMatch], bool]:
        """Matches in ``top``'s order, and whether the first is a confident answer."""
        # Probabilities count within the best entry's language: the same answer kept
        # in another language is not a competitor.
        same_language = snap.language_of_slot == snap.language_of_slot[top[0]]
        mass = float(probabilities[same_language].sum()) or 1.0
        matches = [
            self._match(snap, s, per_entry, probability=float(probabilities[s]) / mass
                        if same_language[s] else float(probabilities[s]), specific=float(specific[s]))
            for s in top
            if s != excluded
        ]
        if not matches:
            return matches, False
        best = matches[0] = replace(matches[0], margin=_margin(per_entry, top[0], same_language))
        confident = (
            best.probability is not None and best.specific is not None and best.margin is not None
            and self.policy.is_confident_classified(best.probability, best.specific, best.score, best.margin)
        )
        return matches, confident

    @staticmethod
    def _match(snap: _Snapshot, slot: int, per_entry: np.ndarray, **extra) -> EntryMatch:
        entry = int(snap.entry_of_slot[slot])
        return EntryMatch(entry, snap.keys[entry], float(per_entry[slot]), snap.languages.get(entry, ""), **extra)


def near_duplicate(question: str, *, entry_id: int | None, index: FaqIndex) -> EntryMatch | None:
    """The other entry that ``question`` already matches confidently, or None.

    Uses the same matcher as the bot (``index``, refreshed first), as if entry
    ``entry_id`` were not in the FAQ: a question the bot would answer with a
    different entry means two entries compete for the same customers.
    """
    index.refresh()
    result = index.search(question, k=2, exclude_entry=entry_id)
    if not result.confident or result.best is None or result.best.entry_id == entry_id:
        return None
    return result.best


def configured_policy(model_name: str, threshold: float | None, faq: FaqSettings) -> MatchPolicy:
    """The model's policy with the settings applied: ``threshold`` (``FAQ_MATCH_THRESHOLD``
    or a caller's override, None: none) and ``FAQ_CLASSIFIER_MAX_ENTRIES``."""
    return policy_for(model_name, threshold, classifier_max_entries=faq.classifier_max_entries)


def _positions(held: np.ndarray, wanted: np.ndarray) -> np.ndarray:
    """Index of each of ``wanted`` in ``held`` (unique ids, any order); -1 where absent."""
    if not len(held) or not len(wanted):
        return np.full(len(wanted), -1, dtype=np.int64)
    sorter = np.argsort(held)
    at = sorter[np.minimum(np.searchsorted(held, wanted, sorter=sorter), len(held) - 1)]
    return np.where(held[at] == wanted, at, -1)


def _top(scores: np.ndarray, *, k: int) -> np.ndarray:
    k = min(k, len(scores))
    top = np.argpartition(-scores, k - 1)[:k]
    return top[np.argsort(-scores[top], kind="stable")]


#: How much closer (raw cosine) an entry in another language may be than the customer's own
#: language's best candidate for that one to be answered instead (the same answer kept in
#: uk/ru/en: a Ukrainian customer gets the Ukrainian copy).
LANGUAGE_SLACK = 0.05


def _prefer_language(top: np.ndarray, language: str, per_entry: np.ndarray,
                     language_of_slot: np.ndarray) -> np.ndarray:
    """``top`` with the best candidate in the question's language first, when it is about as close."""
    if language not in ("uk", "ru", "en") or not len(top) or language_of_slot[top[0]] == language:
        return top
    for position, slot in enumerate(top[1:], start=1):
        if language_of_slot[slot] == language:
            if per_entry[slot] >= per_entry[top[0]] - LANGUAGE_SLACK:
                return np.concatenate([[slot], np.delete(top, position)])
            break
    return top


def _margin(per_entry: np.ndarray, slot: int, same_language: np.ndarray) -> float:
    """How far the chosen entry's cosine is ahead of the best other entry of its language."""
    rivals = np.delete(per_entry, slot)[np.delete(same_language, slot)]
    return float(per_entry[slot] - rivals.max()) if len(rivals) else 0.1


def _certainty(matches: list[EntryMatch]) -> float:
    if not matches:
        return -1.0
    best = matches[0]
    return best.probability if best.probability is not None else best.score


def _runner_up(matches: list[EntryMatch]) -> float | None:
    """The best competing entry's score: one in the same language as the winner.

    The same answer kept in several languages is not ambiguity; two different
    entries in one language that both fit the question are.
    """
    best = matches[0]
    return next((m.score for m in matches[1:] if m.language == best.language), None)
