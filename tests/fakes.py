"""Deterministic fakes behind the model protocols, for fast unit tests only."""

from __future__ import annotations

import hashlib
import re

import numpy as np

from supportbot.knowledge.embedders import normalise_rows


class BagOfWordsEmbedder:
    """Hashes words into a small vector: same words -> same direction."""

    def __init__(self, dim: int = 64) -> None:
        self.name = "fake/bag-of-words"
        self.dim = dim
        self.calls: list[list[str]] = []

    def embed(self, texts):
        self.calls.append(list(texts))
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for i, text in enumerate(texts):
            for word in re.findall(r"\w+", text.lower()):
                out[i, int(hashlib.md5(word.encode()).hexdigest(), 16) % self.dim] += 1.0
        return normalise_rows(out)

    def embed_documents(self, texts):
        return self.embed(texts)

    @property
    def embedded_texts(self) -> int:
        return sum(len(c) for c in self.calls)


#: A tiny shop FAQ (entry key -> question, phrasings) for matcher and admin tests.
SHOP = {
    "delivery": ("how long does delivery take", ["when will my parcel arrive", "shipping days count"]),
    "refund": ("when do i get my money back", ["refund not received yet", "money returned to card"]),
    "warranty": ("what warranty do you give", ["broken laptop repair covered", "guarantee months phone"]),
    "payment": ("which payment methods work", ["pay by card", "cash on delivery option"]),
    "hours": ("store opening hours", ["what time do you close", "open on sunday"]),
    "promo": ("how to use a promo code", ["discount coupon not working", "where to enter voucher"]),
}


def _index_policy():
    from supportbot.knowledge.decision import MatchPolicy

    return MatchPolicy(threshold=0.9, margin=0.05, min_probability=0.3, min_specific=0.3, min_entries=5)


#: The decision policy the index unit tests use with :class:`BagOfWordsEmbedder`.
INDEX_POLICY = _index_policy()
