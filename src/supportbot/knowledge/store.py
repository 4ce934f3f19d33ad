"""What the FAQ index reads from (and writes to) the database: one small interface.

The index and the sync know the FAQ only through :class:`FaqStore`; the support app
implements it with the ORM (``support.faq_store.DjangoFaqStore``) and never imports this
package. Whoever builds an index or runs a sync may pass a store; without one,
:func:`default_store` gives the ORM's (the one place that names it).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Protocol

import numpy as np

#: One FAQ text that should have a vector: (entry id, phrasing id or None for the
#: entry's own question, text as written).
FaqText = tuple[int, int | None, str]
#: A vector to store: (entry id, phrasing id or None, hash of the embedded text,
#: L2-normalised float32 vector).
NewVector = tuple[int, int | None, str, np.ndarray]


class FaqStore(Protocol):
    # -- the version counter: bumped after every index change, polled by every process
    def version(self, model_name: str) -> int:
        """The counter for ``model_name`` (0 before the first change)."""

    def bump_version(self, model_name: str, *, all_models: bool = False) -> None:
        """Tell running processes the index changed (``all_models``: for every embedder,
        e.g. an entry's active flag changed, which no vector records)."""

    # -- what the index serves (sync: call from a thread)
    def live_vector_rows(self, model_name: str) -> list[tuple[int, int]]:
        """(vector id, entry id) of every stored vector of an active entry, by vector id."""

    def live_entries(self) -> dict[int, tuple[str, str]]:
        """Active entries: entry id -> (key, language)."""

    def vectors(self, vector_ids: Collection[int]) -> dict[int, np.ndarray]:
        """The stored vectors with these ids (float32)."""

    # -- what the sync keeps in step
    def texts(self, entry_ids: Collection[int] | None = None) -> list[FaqText]:
        """Every question, then every phrasing, of these entries (None: all, active or not)."""

    def vector_keys(self, model_name: str, entry_ids: Collection[int] | None = None) -> dict[tuple[int, str], int]:
        """Stored vectors of ``model_name``: (entry id, text hash) -> vector id."""

    def add_vectors(self, model_name: str, vectors: Sequence[NewVector]) -> None:
        """Store new vectors (one already stored for the same text is kept) and bump the
        version, in one transaction."""

    def remove_vectors(self, model_name: str, vector_ids: Collection[int]) -> None:
        """Delete these vectors and bump the version, in one transaction."""


def default_store() -> FaqStore:
    """The support app's FAQ rows through the ORM (needs Django set up)."""
    from supportbot.support.faq_store import DjangoFaqStore

    return DjangoFaqStore()
