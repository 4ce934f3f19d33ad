"""EmbeddingGemma's number formats: agreement with fp32, batch independence, speed.

    .venv/bin/python bench/embedding_precision.py [--questions 48]

For each of fp32, bf16 and int8 (torch dynamic quantisation), every question of the
bundled sample FAQ is embedded (query prompt) alone and in micro-batches of 2, 8 and
all of them, as the bot does under load (``knowledge/batching.py``). Reported per
format: cosine of each vector with fp32-alone (min / mean), the cosine between the
same question alone and inside a batch (min: 1.0 means a question's vector does not
depend on who else is asking), and ms per question alone and in one batch. Run it on
a quiet machine for the times; the cosines do not depend on load.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import save, table

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "src" / "supportbot" / "data" / "sample_faq.json"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--questions", type=int, default=48)
    args = parser.parse_args()

    from supportbot.config import get_settings
    from supportbot.knowledge.embedders import EmbeddingGemmaEmbedder, cpu_has_bf16

    texts: list[str] = []
    for entry in json.loads(SAMPLE.read_text(encoding="utf-8")):
        texts += [entry["question"], *entry["phrasings"]]
    texts = texts[: args.questions]
    model_dir = get_settings().model_dir

    def cos(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return (a * b).sum(axis=1)

    reference = None
    rows, report = [], {}
    for precision in ("fp32", "bf16", "int8"):
        embedder = EmbeddingGemmaEmbedder(model_dir, precision=precision)
        embedder.embed(["warm up"])
        started = time.perf_counter()
        alone = np.vstack([embedder.embed([t]) for t in texts])
        alone_ms = (time.perf_counter() - started) / len(texts) * 1000
        started = time.perf_counter()
        whole = embedder.embed(texts)
        batch_ms = (time.perf_counter() - started) / len(texts) * 1000
        batched = [whole] + [np.vstack([embedder.embed(texts[i:i + n]) for i in range(0, len(texts), n)])
                             for n in (2, 8)]
        if reference is None:
            reference = alone
        vs_fp32 = cos(alone, reference)
        vs_batch = min(float(cos(alone, b).min()) for b in batched)
        report[precision] = {"cos_fp32_min": float(vs_fp32.min()), "cos_fp32_mean": float(vs_fp32.mean()),
                             "cos_alone_vs_batch_min": vs_batch, "ms_alone": alone_ms, "ms_batch": batch_ms}
        rows.append([precision, float(vs_fp32.min()), float(vs_fp32.mean()), vs_batch, alone_ms, batch_ms])
    print(table(["format", "cos to fp32 min", "mean", "alone vs batch min", "ms/q alone",
                 f"ms/q batch of {len(texts)}"], rows))
    print(f"CPU has native bf16: {cpu_has_bf16()}")
    save("embedding_precision", {"questions": len(texts), "cpu_bf16": cpu_has_bf16(), "formats": report})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
