"""The FAQ index and its sync know the FAQ only through ``FaqStore``: with an in-memory
store they build, refresh and search without a database (no ``django_db`` mark here, so
any ORM query would fail the test)."""

from __future__ import annotations

import itertools

import numpy as np

from supportbot.knowledge.decision import MatchPolicy
from supportbot.knowledge.index import FaqIndex, near_duplicate
from supportbot.knowledge.store import FaqStore
from supportbot.knowledge.sync import bump_version, sync_embeddings

from ..fakes import BagOfWordsEmbedder


class MemoryFaqStore:
    """FAQ rows and vectors in dicts: the whole interface, nothing else."""

    def __init__(self) -> None:
        self.entries: dict[int, dict] = {}
        self.phrasings: dict[int, tuple[int, str]] = {}
        self.rows: dict[int, tuple[int, int | None, str, str, np.ndarray]] = {}
        self.versions: dict[str, int] = {}
        self._ids = itertools.count(1)

    def add_entry(self, key: str, question: str, phrasings=(), *, active: bool = True) -> int:
        entry_id = next(self._ids)
        self.entries[entry_id] = {"key": key, "question": question, "language": "en", "active": active}
        for text in phrasings:
            self.phrasings[next(self._ids)] = (entry_id, text)
        return entry_id

    # -- FaqStore
    def version(self, model_name):
        return self.versions.get(model_name, 0)

    def bump_version(self, model_name, *, all_models=False):
        self.versions.setdefault(model_name, 0)
        for name in list(self.versions) if all_models else [model_name]:
            self.versions[name] += 1

    def live_vector_rows(self, model_name):
        return [(i, r[0]) for i, r in sorted(self.rows.items())
                if r[2] == model_name and self.entries[r[0]]["active"]]

    def live_entries(self):
        return {i: (e["key"], e["language"]) for i, e in self.entries.items() if e["active"]}

    def vectors(self, vector_ids):
        return {i: self.rows[i][4] for i in vector_ids if i in self.rows}

    def texts(self, entry_ids=None):
        chosen = set(self.entries if entry_ids is None else entry_ids)
        texts = [(i, None, e["question"]) for i, e in self.entries.items() if i in chosen]
        return texts + [(e, p, t) for p, (e, t) in sorted(self.phrasings.items()) if e in chosen]

    def vector_keys(self, model_name, entry_ids=None):
        return {(r[0], r[3]): i for i, r in self.rows.items()
                if r[2] == model_name and (entry_ids is None or r[0] in entry_ids)}

    def add_vectors(self, model_name, vectors):
        known = set(self.vector_keys(model_name))
        for entry_id, phrasing_id, digest, vector in vectors:
            if (entry_id, digest) not in known:
                self.rows[next(self._ids)] = (entry_id, phrasing_id, model_name, digest, np.asarray(vector))
        self.bump_version(model_name)

    def remove_vectors(self, model_name, vector_ids):
        for i in vector_ids:
            self.rows.pop(i, None)
        self.bump_version(model_name)


def test_the_memory_store_is_a_faq_store():
    store: FaqStore = MemoryFaqStore()  # the Protocol is all the index needs
    assert store.version("any") == 0


def test_index_and_sync_run_on_any_store():
    store, fake = MemoryFaqStore(), BagOfWordsEmbedder()
    delivery = store.add_entry("delivery", "delivery time", ["how long shipping takes"])
    store.add_entry("refund", "refund money back")
    assert sync_embeddings(fake, store=store).embedded == 3
    assert sync_embeddings(fake, store=store).embedded == 0  # unchanged text is never embedded twice

    index = FaqIndex(fake, MatchPolicy(0.9, 0.05), store=store)
    assert index.refresh() is True and index.loaded_vectors == 3
    assert index.refresh() is False  # the version did not move
    result = index.search("how long shipping takes")
    assert [m.key for m in result.matches] == ["delivery", "refund"] and result.confident

    # Changed text: one new vector, the stale one dropped; the index reads only the new one.
    store.entries[delivery]["question"] = "parcel arrival date"
    report = sync_embeddings(fake, [delivery], store=store)
    assert (report.embedded, report.removed) == (1, 1)
    assert index.refresh() is True and index.loaded_vectors == 4

    # Deactivation records no vector: the version bump alone takes the entry out.
    store.entries[delivery]["active"] = False
    bump_version(fake.name, all_models=True, store=store)
    index.refresh()
    assert [m.key for m in index.search("how long shipping takes").matches] == ["refund"]


def test_near_duplicate_ignores_the_entry_itself():
    store, fake = MemoryFaqStore(), BagOfWordsEmbedder()
    delivery = store.add_entry("delivery", "delivery time", ["how long shipping takes"])
    sync_embeddings(fake, store=store)
    index = FaqIndex(fake, MatchPolicy(0.9, 0.05), store=store)

    assert near_duplicate("how long shipping takes", entry_id=delivery, index=index) is None
    match = near_duplicate("how long shipping takes", entry_id=None, index=index)
    assert match is not None and match.key == "delivery"
