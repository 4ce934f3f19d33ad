"""FAQ search latency for 1,000, 10,000 and 100,000 stored phrasings.

    .venv/bin/python bench/faq_search.py [--sizes 1000 10000 100000] [--queries 300]

Stores N vectors in a fresh SQLite database exactly as the product does
(FaqEmbedding rows), loads them through ``FaqIndex.refresh`` and times single
questions: embedding the question with the real default model, searching, total.
Embedding 100,000 texts would take ~10 minutes on 2 cores, so the stored vectors
are random unit vectors of the model's dimension: search cost depends only on
their number, and the questions themselves are embedded for real.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import fresh_django, percentile, save, table  # noqa: E402

QUESTIONS = [
    "How long does delivery take?", "Скільки коштує доставка?", "Как вернуть товар?",
    "Where is my parcel?", "Можна оплатити частинами?", "Какие у вас часы работы?",
    "I want my money back", "Чи є гарантія на ноутбук?", "Can I change my order?",
    "Промокод не работает",
]


def populate(n: int, model_name: str, dim: int, per_entry: int = 5) -> None:
    from django.db import transaction

    from supportbot.knowledge.sync import bump_version
    from supportbot.support.models import FaqEmbedding, FaqEntry

    rng = np.random.default_rng(n)
    entries = n // per_entry
    with transaction.atomic():
        FaqEntry.objects.bulk_create(
            [FaqEntry(key=f"e{i}", question=f"q{i}", answer=f"a{i}") for i in range(entries)], batch_size=2000
        )
        ids = list(FaqEntry.objects.order_by("id").values_list("id", flat=True))
        vectors = rng.standard_normal((n, dim)).astype("<f4")
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        FaqEmbedding.objects.bulk_create(
            [FaqEmbedding(entry_id=ids[i // per_entry], model_name=model_name, text_hash=f"h{i}", dim=dim,
                          vector=vectors[i].tobytes()) for i in range(n)],
            batch_size=2000,
        )
        bump_version(model_name)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000, 100000])
    parser.add_argument("--queries", type=int, default=300)
    args = parser.parse_args()

    fresh_django("faqsearch")
    from supportbot.knowledge.decision import policy_for
    from supportbot.knowledge.embedders import default_embedder
    from supportbot.knowledge.index import FaqIndex
    from supportbot.support.models import FaqEmbedding, FaqEntry

    embedder = default_embedder()
    dim = embedder.embed(["warm up"]).shape[1]
    rows, results = [], []
    for n in args.sizes:
        FaqEmbedding.objects.all().delete()
        FaqEntry.objects.all().delete()
        populate(n, embedder.name, dim)
        index = FaqIndex(embedder, policy_for(embedder.name))
        t = time.perf_counter()
        index.refresh(force=True)
        load_s = time.perf_counter() - t
        embed_ms, search_ms, total_ms = [], [], []
        for i in range(args.queries):
            t = time.perf_counter()
            result = index.search(QUESTIONS[i % len(QUESTIONS)])
            total_ms.append((time.perf_counter() - t) * 1000)
            embed_ms.append(result.embed_ms)
            search_ms.append(result.search_ms)
        r = {"phrasings": n, "index_load_s": load_s,
             "embed_ms_p50": percentile(embed_ms, 50), "embed_ms_p99": percentile(embed_ms, 99),
             "search_ms_p50": percentile(search_ms, 50), "search_ms_p99": percentile(search_ms, 99),
             "total_ms_p50": percentile(total_ms, 50), "total_ms_p99": percentile(total_ms, 99)}
        results.append(r)
        rows.append([n, load_s, r["embed_ms_p50"], r["embed_ms_p99"], r["search_ms_p50"], r["search_ms_p99"],
                     r["total_ms_p50"], r["total_ms_p99"]])
    print(f"FAQ search, {embedder.name}, {args.queries} single questions per size")
    print(table(["phrasings", "load s", "embed p50", "embed p99", "search p50", "search p99",
                 "total p50", "total p99"], rows))
    print("(times in ms; load = reading the vectors from the database into the index)")
    print(f"results: {save('faq_search', {'model': embedder.name, 'sizes': results})}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
