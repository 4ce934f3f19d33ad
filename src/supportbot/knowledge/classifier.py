"""A per-FAQ classifier: which entry is this question about, and how sure is it?

Multinomial logistic regression over the FAQ's own texts (every entry's question
and phrasings), retrained from the stored vectors whenever the FAQ changes. It
learns which directions of the embedding tell *this* FAQ's entries apart, which
a raw nearest-neighbour cosine cannot: on the dev sets it puts the right entry
first more often than cosine and gives a probability that separates covered
from uncovered questions better than e5's squeezed cosine scores
(see ``bench/faq_match.py`` and the README's "FAQ matching").

Inputs are centred: the FAQ's mean vector is subtracted before normalising, so
what every FAQ text shares (e5 scores unrelated sentences ~0.75 against each
other) no longer dominates the geometry. Plain numpy, deterministic (fixed seed),
no pickle: the weights live only in the process and are rebuilt from the
database's vectors.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: Inputs are unit vectors scaled by this; a larger scale means sharper probabilities.
#: The default suits e5-small's squeezed scores; each model's policy may set its own.
SCALE = 5.0
#: L2 penalty on the weights.
L2 = 1e-4
#: Adam steps and step size. Training starts from each entry's centroid (already a
#: usable nearest-centroid classifier) and refines it: ``MAX_STEPS`` (on the dev sets
#: 300 steps move balanced accuracy by under 0.005) unless (rows per step x entries x steps) would
#: pass ``WORK``, as on FAQs over 1,000 entries x 10 phrasings; never under
#: ``MIN_STEPS``. Steps use mini-batches of ``BATCH`` rows.
MAX_STEPS = 100
MIN_STEPS = 30
WORK = 1024 * 1000 * 100
STEP_SIZE = 0.01
BATCH = 1024


def steps_for(rows: int, classes: int) -> int:
    return int(max(MIN_STEPS, min(MAX_STEPS, WORK // max(1, min(rows, BATCH) * classes))))


def centre(matrix: np.ndarray, mean: np.ndarray) -> np.ndarray:
    """Subtract ``mean`` and re-normalise each row (zero rows stay zero)."""
    out = np.asarray(matrix, dtype=np.float32) - mean
    norms = np.linalg.norm(out, axis=-1, keepdims=True)
    norms[norms == 0] = 1.0
    return (out / norms).astype(np.float32, copy=False)


@dataclass(frozen=True)
class EntryClassifier:
    """Trained weights; ``classes`` index the FAQ index's entry slots."""

    mean: np.ndarray  # (dim,) the FAQ's mean vector
    weights: np.ndarray  # (dim, classes)
    bias: np.ndarray  # (classes,)
    scale: float = SCALE

    @classmethod
    def train(cls, vectors: np.ndarray, labels: np.ndarray, classes: int, *, seed: int = 0,
              scale: float = SCALE) -> EntryClassifier:
        """``vectors``: (n, dim) L2-normalised rows; ``labels``: the class of each row.

        Runs on one BLAS thread: the matrices are small, multi-threaded BLAS on a
        busy 2-core machine is many times slower on them, and the other core stays
        free for answering questions while the FAQ retrains.
        """
        from threadpoolctl import threadpool_limits

        with threadpool_limits(limits=1, user_api="blas"):
            return cls._train(vectors, labels, classes, seed=seed, scale=scale)

    @classmethod
    def _train(cls, vectors: np.ndarray, labels: np.ndarray, classes: int, *, seed: int,
               scale: float) -> EntryClassifier:
        vectors = np.asarray(vectors, dtype=np.float32)
        labels = np.asarray(labels, dtype=np.int64)
        mean = vectors.mean(axis=0)
        x = centre(vectors, mean) * scale
        dim = x.shape[1]
        weights = np.zeros((dim, classes), dtype=np.float32)
        np.add.at(weights.T, labels, x / scale)  # start from the entries' centroids
        weights /= np.maximum(np.bincount(labels, minlength=classes), 1)
        bias = np.zeros(classes, dtype=np.float32)
        moments = [(np.zeros_like(weights), np.zeros_like(weights)), (np.zeros_like(bias), np.zeros_like(bias))]
        rng = np.random.default_rng(seed)
        full = len(x) <= BATCH
        for step in range(1, steps_for(len(x), classes) + 1):
            if full:
                xb, yb = x, labels
            else:
                rows = rng.choice(len(x), BATCH, replace=False)
                xb, yb = x[rows], labels[rows]
            grad = _softmax(xb @ weights + bias)
            grad[np.arange(len(yb)), yb] -= 1.0
            grad /= len(yb)
            grads = (xb.T @ grad + L2 * weights, grad.sum(axis=0))
            for param, g, (m, v) in zip((weights, bias), grads, moments, strict=True):
                m *= 0.9
                m += 0.1 * g
                v *= 0.999
                v += 0.001 * g * g
                param -= STEP_SIZE * (m / (1 - 0.9**step)) / (np.sqrt(v / (1 - 0.999**step)) + 1e-8)
        return cls(mean.astype(np.float32), weights, bias, scale)

    def probabilities(self, centred_vector: np.ndarray) -> np.ndarray:
        """Class probabilities for one question already passed through :func:`centre`."""
        return _softmax((centred_vector * self.scale) @ self.weights + self.bias)


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=-1, keepdims=True)
    np.exp(z, out=z)
    z /= z.sum(axis=-1, keepdims=True)
    return z
