"""FAQ matching quality: in-scope accuracy, out-of-scope rejection, latency.

    .venv/bin/python bench/faq_match.py BENCH.json [--split dev_queries|queries]
        [--predictions OUT.jsonl] [--baseline] [--sweep]

Loads the file's ``faq`` into a fresh temporary database through the product's
own import path (``faq_id`` -> entry key, ``paraphrases`` -> phrasings), then
runs every query of the split, one at a time, through the same matcher the bot
uses. ``--baseline`` runs the original system's method instead (all-MiniLM-L6-v2,
canonical questions only, cosine >= 0.7; needs the sentence-transformers extra).
``--sweep`` also prints the metrics over a grid of (threshold, margin), which is
how the shipped defaults were chosen on the dev sets.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import fresh_django, percentile, save, table  # noqa: E402


def _slug(faq_id) -> str:
    import re

    return re.sub(r"[^-a-zA-Z0-9_]", "_", str(faq_id))[:100]


def load_bench(path: Path, split: str, *, baseline: bool) -> tuple[list[dict], list[dict]]:
    data = json.loads(path.read_text(encoding="utf-8"))
    if split not in data:
        raise SystemExit(f"{path}: no split {split!r} (has: {', '.join(k for k in data if isinstance(data[k], list))})")
    faq = [
        {"key": _slug(e["faq_id"]), "question": e["question"], "answer": e.get("answer") or f"ANSWER:{e['faq_id']}",
         "phrasings": [] if baseline else list(e.get("paraphrases") or []), "language": "en", "active": True}
        for e in data["faq"]
    ]
    return faq, data[split]


def metrics(rows: list[tuple[str | None, str | None]]) -> dict:
    covered = [(g, p) for g, p in rows if g is not None]
    uncovered = [(g, p) for g, p in rows if g is None]
    in_scope = sum(p == g for g, p in covered) / max(1, len(covered))
    rejection = sum(p is None for _, p in uncovered) / max(1, len(uncovered))
    wrong = sum(p is not None and p != g for g, p in rows) / max(1, len(rows))
    return {"in_scope_accuracy": in_scope, "oos_rejection": rejection,
            "balanced_accuracy": (in_scope + rejection) / 2, "wrong_answer_rate": wrong,
            "covered": len(covered), "uncovered": len(uncovered)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("bench", type=Path)
    parser.add_argument("--split", default="dev_queries")
    parser.add_argument("--predictions", type=Path)
    parser.add_argument("--baseline", action="store_true")
    parser.add_argument("--sweep", action="store_true")
    args = parser.parse_args()

    if args.baseline:
        import os

        os.environ["EMBEDDING_BACKEND"] = "sentence-transformers"
        os.environ["FAQ_MATCH_THRESHOLD"] = "0.7"
    faq, queries = load_bench(args.bench, args.split, baseline=args.baseline)
    fresh_django("faqmatch")

    from supportbot.bot.runner import build_pipeline, prepare_index
    from supportbot.config import get_settings
    from supportbot.knowledge.decision import MatchPolicy
    from supportbot.support.faq_io import import_faq

    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False, encoding="utf-8") as handle:
        json.dump(faq, handle, ensure_ascii=False)
    t0 = time.perf_counter()
    import_faq(Path(handle.name))
    pipeline = build_pipeline(threshold=get_settings().faq_match_threshold)
    if args.baseline:
        pipeline.index.policy = MatchPolicy(threshold=0.7, margin=0.0)
    prepare_index(pipeline)
    build_s = time.perf_counter() - t0
    index = pipeline.index

    index.search("warm up")
    rows, latencies, raw = [], [], []
    started = time.perf_counter()
    for q in queries:
        t = time.perf_counter()
        result = index.search(q["text"], k=5)
        latencies.append((time.perf_counter() - t) * 1000)
        predicted = result.best.key if result.confident and result.best else None
        gold = None if q.get("faq_id") is None else _slug(q["faq_id"])
        rows.append((gold, predicted))
        raw.append((gold, [(m.key, m.score) for m in result.matches]))
    wall = time.perf_counter() - started

    if args.predictions:
        with args.predictions.open("w", encoding="utf-8") as out:
            for q, (_, predicted) in zip(queries, rows):
                out.write(json.dumps({"query_id": q["query_id"], "faq_id": predicted}, ensure_ascii=False) + "\n")

    m = metrics(rows)
    name = f"faq_match_{args.bench.stem}_{args.split}" + ("_baseline" if args.baseline else "")
    method = ("baseline: all-MiniLM-L6-v2, questions only, cosine >= 0.7" if args.baseline
              else f"{index.embedder.name}, {index.policy}")
    print(f"{args.bench.name} [{args.split}] {len(queries)} queries; method: {method}")
    print(table(
        ["in-scope acc", "oos rejection", "balanced acc", "wrong answers", "p50 ms", "p99 ms", "q/s", "index build s"],
        [[m["in_scope_accuracy"], m["oos_rejection"], m["balanced_accuracy"], m["wrong_answer_rate"],
          percentile(latencies, 50), percentile(latencies, 99), len(queries) / wall, build_s]],
    ))
    result = {"bench": str(args.bench), "split": args.split, "method": method, **m,
              "latency_ms_p50": percentile(latencies, 50), "latency_ms_p99": percentile(latencies, 99),
              "questions_per_second": len(queries) / wall, "index_build_seconds": build_s}

    if args.sweep:
        grid = []
        for threshold in [x / 100 for x in range(80, 97)]:
            for margin in [0.0, 0.005, 0.01, 0.015, 0.02, 0.03, 0.04]:
                policy = MatchPolicy(threshold, margin)
                preds = []
                for gold, matches in raw:
                    second = matches[1][1] if len(matches) > 1 else None
                    ok = matches and policy.is_confident(matches[0][1], second)
                    preds.append((gold, matches[0][0] if ok else None))
                grid.append((threshold, margin, metrics(preds)))
        grid.sort(key=lambda g: -g[2]["balanced_accuracy"])
        print("\nbest (threshold, margin) on this split:")
        print(table(["threshold", "margin", "balanced", "in-scope", "rejection", "wrong"],
                    [[t, mg, r["balanced_accuracy"], r["in_scope_accuracy"], r["oos_rejection"],
                      r["wrong_answer_rate"]] for t, mg, r in grid[:10]]))
        result["sweep_top"] = [{"threshold": t, "margin": mg, **r} for t, mg, r in grid[:10]]
    print(f"results: {save(name, result)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
