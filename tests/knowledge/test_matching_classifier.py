"""The per-FAQ classifier (knowledge.classifier): plain numpy, deterministic."""

import numpy as np
import pytest

from supportbot.knowledge.classifier import EntryClassifier, centre
from supportbot.knowledge.embedders import normalise_rows


def _clusters(seed=1, classes=6, per_class=4, dim=32):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(classes, dim))
    rows = np.vstack([centres[c] + 0.3 * rng.normal(size=(per_class, dim)) for c in range(classes)])
    labels = np.repeat(np.arange(classes), per_class)
    return normalise_rows(rows), labels, normalise_rows(centres)


def test_centre_removes_the_shared_direction_and_normalises():
    rows = normalise_rows(np.array([[1.0, 0.1, 0.0], [1.0, -0.1, 0.0], [1.0, 0.0, 0.1]]))
    centred = centre(rows, rows.mean(axis=0))
    assert np.allclose(np.linalg.norm(centred, axis=1), 1.0, atol=1e-5)
    # Raw rows are all alike (cosine ~0.99); centred, they point different ways.
    assert (rows @ rows.T)[0, 1] > 0.95 and (centred @ centred.T)[0, 1] < 0.0
    assert np.all(centre(np.zeros((1, 3)), np.zeros(3)) == 0)  # no division by zero


def test_classifier_learns_the_faq_and_gives_probabilities():
    rows, labels, centres = _clusters()
    model = EntryClassifier.train(rows, labels, classes=6)
    for c in range(6):
        p = model.probabilities(centre(centres[c], model.mean))
        assert p.shape == (6,) and p.sum() == pytest.approx(1.0, abs=1e-5)
        assert int(p.argmax()) == c and p[c] > 0.5


def test_training_is_deterministic_and_bounded_on_large_faqs(monkeypatch):
    rows, labels, _ = _clusters(classes=40, per_class=30)
    monkeypatch.setattr("supportbot.knowledge.classifier.BATCH", 256)  # force mini-batches
    a = EntryClassifier.train(rows, labels, classes=40)
    b = EntryClassifier.train(rows, labels, classes=40)
    assert np.array_equal(a.weights, b.weights) and np.array_equal(a.bias, b.bias)
    predicted = np.array([a.probabilities(centre(r, a.mean)).argmax() for r in rows])
    assert (predicted == labels).mean() > 0.95
