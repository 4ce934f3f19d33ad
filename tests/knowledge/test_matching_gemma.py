"""EmbeddingGemma, the real model, from the shared model cache (`make test` fetched it).

The product's own path: a fresh data dir, the CLI (`fetch-models`, `migrate`,
`import-faq`, `ask`), the bot's index and policy on the shipped sample FAQ, and
questions typed in Latin letters.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from supportbot.config import get_settings
from supportbot.knowledge import gemma_files

pytestmark = [pytest.mark.slow]


@pytest.fixture(scope="module")
def model_dir():
    folder = get_settings().model_dir
    if not gemma_files.is_ready(folder):
        if os.environ.get("CI"):
            pytest.fail(f"EmbeddingGemma is not in {folder}: `make test` runs `supportbot fetch-models` first")
        pytest.skip(f"EmbeddingGemma is not in {folder} (run `supportbot fetch-models --all`)")
    return folder


@pytest.fixture
def gemma(model_dir):
    """EmbeddingGemma alone (EMBEDDING_BACKEND=embeddinggemma); one model per test module."""
    from supportbot.knowledge.embedders import EmbeddingGemmaEmbedder

    embedder = _shared(model_dir, "embeddinggemma")
    assert isinstance(embedder, EmbeddingGemmaEmbedder)
    return embedder


@pytest.fixture
def default_backend(model_dir, monkeypatch):
    """The bot's default embedder (EMBEDDING_BACKEND=gemma-e5: EmbeddingGemma with e5-small beside it)."""
    from supportbot.knowledge.embedders import CombinedEmbedder

    embedder = _shared(model_dir, "gemma-e5")
    assert isinstance(embedder, CombinedEmbedder)
    monkeypatch.setattr("supportbot.assembly.default_embedder", lambda: embedder)
    return embedder


_MODELS: dict = {}


def _shared(model_dir, backend: str):
    from supportbot.config import FaqSettings
    from supportbot.knowledge.embedders import build_embedder

    if backend not in _MODELS:
        _MODELS[backend] = build_embedder(FaqSettings(backend, None, 2, None, 1.0, 250), model_dir=model_dir)
    return _MODELS[backend]


def test_a_questions_vector_does_not_depend_on_who_else_is_asking(gemma):
    """The bot embeds concurrent customers' questions in one micro-batch (knowledge/batching.py):
    each question must come out the same as alone, or whether it is answered would depend on
    the other customers. (torch's dynamic int8 quantises activations per batch: cosine down to
    0.77 measured here; the default format is bf16 or fp32.)"""
    import numpy as np

    questions = ["how much is delivery to Lviv", "skilky koshtuye dostavka", "где мой заказ?",
                 "I was charged twice for one order, what do I do now, please help me quickly", "hi"]
    alone = np.vstack([gemma.embed([q]) for q in questions])
    together = gemma.embed(questions)
    assert gemma.precision in ("bf16", "fp32")
    assert float((alone * together).sum(axis=1).min()) > 0.999


def test_precision_is_chosen_for_the_cpu_and_bad_values_are_refused(tmp_path):
    from supportbot.knowledge.embedders import EmbeddingGemmaEmbedder, cpu_has_bf16, resolve_precision

    with_bf16, without = tmp_path / "with", tmp_path / "without"
    with_bf16.write_text("flags\t\t: fpu sse2 avx2 avx512f avx512_bf16 avx512_vnni\n")
    without.write_text("flags\t\t: fpu sse2 avx2 fma\n")
    assert cpu_has_bf16(with_bf16) and not cpu_has_bf16(without)
    assert not cpu_has_bf16(tmp_path / "missing")
    assert resolve_precision("auto") == ("bf16" if cpu_has_bf16() else "fp32")
    assert resolve_precision("int8") == "int8"
    with pytest.raises(ValueError, match="EMBEDDING_PRECISION: 'fp16' is not one of auto, bf16, fp32, int8"):
        resolve_precision("fp16")
    # each format is its own model name: stored vectors are never mixed across formats
    names = {EmbeddingGemmaEmbedder(tmp_path, precision=p).name for p in ("bf16", "fp32", "int8")}
    assert names == {"embeddinggemma-300m-bf16", "embeddinggemma-300m", "embeddinggemma-300m-int8"}


def test_questions_and_faq_texts_get_their_own_prompts(gemma):
    question = gemma.embed(["Скільки коштує доставка до Львова?"])
    as_document = gemma.embed_documents(["Скільки коштує доставка до Львова?"])
    assert question.shape == (1, 768) and abs(float((question ** 2).sum()) - 1) < 1e-4
    assert 0.5 < float(question[0] @ as_document[0]) < 0.999  # same text, different prompt
    faq = gemma.embed_documents(["How much is delivery?", "Can I return an item?"])
    russian = gemma.embed(["сколько стоит доставка"])[0]
    assert faq[0] @ russian > faq[1] @ russian + 0.1


@pytest.mark.django_db(transaction=True)
def test_sample_faq_new_wordings_latin_letters_and_off_topic(default_backend, sample_faq):
    from supportbot.assembly import build_pipeline
    from supportbot.knowledge.decision import policy_for

    pipeline = build_pipeline()
    assert pipeline.index.policy == policy_for(default_backend.name)
    assert get_settings().embedding_backend == "gemma-e5"
    pipeline.index.refresh(force=True)
    for question, key, answered in [
        ("сколько стоит доставка курьером до двери", "delivery-cost-ru", True),
        ("my headphones stopped working, are they under warranty?", "warranty-en", True),
        ("chy mozhna povernuty tovar", "returns-uk", True),
        ("kak oplatit zakaz nalichnymi", "payment-methods", True),
        # Ranked right, but the calibrated rule (fitted on the dev sets with wrong answers
        # <= 3 %, bench/calibrate.py) puts their confidence under 0.90: handed over.
        ("чи можна повернути куртку, якщо не підійшов розмір", "returns-uk", False),
        ("skilky koshtuye dostavka kurierom", "delivery-cost-uk", False),
    ]:
        result = pipeline.index.search(question)
        assert result.best is not None and result.best.key.startswith(key), (question, result.matches[:2])
        assert result.confident == answered, (question, result.matches[:2])
    for question in ["Хто виграв учорашній матч?", "What is the capital of Australia?", "Как приготовить борщ?"]:
        assert not pipeline.index.search(question).confident, question


def test_fresh_data_dir_uses_the_shared_model_and_answers_from_the_faq(model_dir, tmp_path):
    """The install path as a user runs it: nothing is downloaded again, nothing lands in the data dir."""
    env = {**os.environ, "SUPPORTBOT_DATA_DIR": str(tmp_path / "data"), "SUPPORTBOT_MODEL_DIR": str(model_dir),
           "EMBEDDING_BACKEND": "gemma-e5", "LOCAL_LLM_ENABLED": "false", "API_LLM_ENABLED": "false"}
    env.pop("DATABASE_URL", None)
    cli = [sys.executable, "-m", "supportbot.cli"]

    def run(*args: str) -> str:
        done = subprocess.run([*cli, *args], env=env, capture_output=True, text=True, timeout=300, check=False)
        assert done.returncode == 0, done.stderr[-2000:]
        return done.stdout

    assert "ready in" in run("fetch-models")
    run("migrate")
    faq = tmp_path / "faq.json"
    faq.write_text(json.dumps([{"key": "delivery", "question": "Скільки коштує доставка?", "language": "uk",
                                "answer": "Доставка коштує 70 грн.", "phrasings": ["Ціна доставки"]},
                               {"key": "returns", "question": "Як повернути товар?", "language": "uk",
                                "answer": "Протягом 14 днів.", "phrasings": []}]), encoding="utf-8")
    run("import-faq", str(faq), "--quiet")
    answer = json.loads(run("ask", "--json", "skilky koshtuye dostavka"))
    assert (answer["source"], answer["faq_key"]) == ("faq", "delivery"), answer
    assert not any((tmp_path / "data").rglob("*.safetensors")), "the model stays in the shared model dir"
