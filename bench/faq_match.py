"""FAQ matching quality: in-scope accuracy, out-of-scope rejection, latency.

    .venv/bin/python bench/faq_match.py BENCH.json [--split dev_queries|queries]
        [--predictions OUT.jsonl] [--baseline] [--sweep] [--scale ENTRIES]

Loads the file's ``faq`` into a fresh temporary database through the product's
own import path (``faq_id`` -> entry key, ``paraphrases`` -> phrasings), then
runs every query of the split, one at a time, through the same matcher the bot
uses. ``--baseline`` runs the original system's method instead (all-MiniLM-L6-v2,
canonical questions only, cosine >= 0.7; needs the sentence-transformers extra).
``--sweep`` also prints the metrics over a grid of the decision's knobs
(classifier rule: min probability x min centred similarity; cosine rule:
threshold x margin), which is how the shipped defaults were chosen: on the
English and Russian dev sets, then confirmed on the Ukrainian one.
``--scale 1000`` checks speed instead: index build and single-question latency
on a synthetic 1,000-entry x 10-text FAQ, with the file's real questions.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import fresh_django, percentile, save, table


def _slug(faq_id) -> str:
    import re

    return re.sub(r"[^-a-zA-Z0-9_]", "_", str(faq_id))[:100]


def load_bench(path: Path, split: str, *, baseline: bool) -> tuple[list[dict], list[dict], dict]:
    """The file's FAQ as import rows, the split's queries, and entry key -> the file's own faq_id."""
    data = json.loads(path.read_text(encoding="utf-8"))
    if split not in data:
        raise SystemExit(f"{path}: no split {split!r} (has: {', '.join(k for k in data if isinstance(data[k], list))})")
    default_language = data.get("language") if data.get("language") in ("uk", "ru", "en") else "en"
    faq = [
        {"key": _slug(e["faq_id"]), "question": e["question"], "answer": e.get("answer") or f"ANSWER:{e['faq_id']}",
         "phrasings": [] if baseline else list(e.get("paraphrases") or []),
         "language": e.get("language") or default_language, "active": True}
        for e in data["faq"]
    ]
    return faq, data[split], {_slug(e["faq_id"]): e["faq_id"] for e in data["faq"]}


def build_index(faq: list[dict], *, baseline: bool = False):
    """Import ``faq`` (rows as :func:`load_bench` gives them) through the product's import path
    and build the bot's matcher over it (after :func:`fresh_django`); returns the index and
    the seconds that took. Called again with other phrasings, it updates the same entries
    and embeds only the new texts."""
    from supportbot.assembly import build_pipeline, prepare_index
    from supportbot.config import get_settings
    from supportbot.knowledge.decision import BASELINE
    from supportbot.support.faq_io import import_faq

    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False, encoding="utf-8") as handle:
        json.dump(faq, handle, ensure_ascii=False)
    t0 = time.perf_counter()
    import_faq(Path(handle.name))
    pipeline = build_pipeline(threshold=get_settings().faq_match_threshold)
    if baseline:
        pipeline.index.policy = BASELINE
    prepare_index(pipeline)
    return pipeline.index, time.perf_counter() - t0


def run_queries(index, queries: list[dict]) -> tuple[list[tuple[str | None, str | None]], list[float], list, float]:
    """Every query through the matcher, one at a time: (gold key, predicted key or None) per
    query, latencies (ms), the raw matches (for :func:`sweep`) and the wall time (s)."""
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
        margin = result.best.margin if result.best and result.best.margin is not None else 0.1
        raw.append((gold, result.matches, margin))
    return rows, latencies, raw, time.perf_counter() - started


def metrics(rows: list[tuple[str | None, str | None]]) -> dict:
    covered = [(g, p) for g, p in rows if g is not None]
    uncovered = [(g, p) for g, p in rows if g is None]
    in_scope = sum(p == g for g, p in covered) / max(1, len(covered))
    rejection = sum(p is None for _, p in uncovered) / max(1, len(uncovered))
    wrong = sum(p is not None and p != g for g, p in rows) / max(1, len(rows))
    return {"in_scope_accuracy": in_scope, "oos_rejection": rejection,
            "balanced_accuracy": (in_scope + rejection) / 2, "wrong_answer_rate": wrong,
            "covered": len(covered), "uncovered": len(uncovered)}


def sweep(raw: list, policy) -> list[dict]:
    """Re-decide every query under other settings of the policy's knobs (no re-embedding)."""
    from dataclasses import replace

    grid = []
    classified = bool(raw) and any(m and m[0].probability is not None for _, m, _ in raw)
    calibrated = classified and policy.calibration is not None
    if calibrated:
        knobs = [{"min_confidence": c / 100} for c in range(30, 100, 5)]
    elif classified:
        knobs = [{"min_probability": p / 100, "min_specific": s / 100}
                 for p in range(10, 80, 5) for s in range(20, 62, 2)]
    else:
        knobs = [{"threshold": t / 100, "margin": mg} for t in range(60, 97)
                 for mg in [0.0, 0.005, 0.01, 0.015, 0.02, 0.03, 0.04]]
    for knob in knobs:
        candidate = replace(policy, **knob)
        preds: list[tuple[str | None, str | None]] = []
        for gold, matches, margin in raw:
            if not matches:
                preds.append((gold, None))
                continue
            best = matches[0]
            if classified:
                ok = candidate.is_confident_classified(best.probability, best.specific, best.score, margin)
            else:
                second = next((m.score for m in matches[1:] if m.language == best.language), None)
                ok = candidate.is_confident(best.score, second)
            preds.append((gold, best.key if ok else None))
        grid.append((knob, metrics(preds)))
    grid.sort(key=lambda g: -g[1]["balanced_accuracy"])
    names = list(knobs[0]) if knobs else []
    print("\nbest settings on this split (wrong-answer rate < 10%):")
    rows = [(k, r) for k, r in grid if r["wrong_answer_rate"] < 0.10][:10]
    print(table([*names, "balanced", "in-scope", "rejection", "wrong"],
                [[k[n] for n in names] + [r["balanced_accuracy"], r["in_scope_accuracy"], r["oos_rejection"],
                  r["wrong_answer_rate"]] for k, r in rows]))
    return [{**k, **r} for k, r in grid[:20]]


def scale_check(path: Path, split: str, entries: int, texts_per_entry: int = 10) -> int:
    """Index build time and single-question latency on a large FAQ.

    The FAQ's vectors are synthetic (random unit vectors stored as the sync would
    store them: embedding is a once-per-text cost, measured separately below), the
    questions are the file's real ones, embedded one at a time by the real model.
    """
    import numpy as np

    _, queries, _ = load_bench(path, split, baseline=False)
    fresh_django("faqscale")
    from supportbot.assembly import build_pipeline
    from supportbot.knowledge.sync import bump_version
    from supportbot.support.models import FaqEmbedding, FaqEntry

    pipeline = build_pipeline()
    index, embedder = pipeline.index, pipeline.index.embedder
    dim = embedder.embed(["warm up"]).shape[1]
    rng = np.random.default_rng(0)
    FaqEntry.objects.bulk_create(  # bulk_create sends no signals: nothing is embedded
        [FaqEntry(key=f"e{n}", question=f"synthetic question {n}", answer="a") for n in range(entries)])
    ids = list(FaqEntry.objects.order_by("id").values_list("id", flat=True))
    rows = []
    for entry_id in ids:
        vectors = rng.normal(size=(texts_per_entry, dim)).astype("<f4")
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        rows += [FaqEmbedding(entry_id=entry_id, model_name=embedder.name, text_hash=f"{entry_id}-{i}", dim=dim,
                              vector=v.tobytes()) for i, v in enumerate(vectors)]
    FaqEmbedding.objects.bulk_create(rows, batch_size=2000)
    bump_version(embedder.name)
    t0 = time.perf_counter()
    index.refresh(force=True)
    build_s = time.perf_counter() - t0

    texts = [q["text"] for q in queries]
    sample = (texts * 2)[:256]
    t0 = time.perf_counter()
    embedder.embed(sample)
    per_second = len(sample) / (time.perf_counter() - t0)

    latencies, matching = [], []
    for text in texts:
        t = time.perf_counter()
        result = index.search(text, k=5)
        latencies.append((time.perf_counter() - t) * 1000)
        matching.append(result.search_ms)  # everything after the embedding
    n_texts = entries * texts_per_entry
    print(f"{entries} entries x {texts_per_entry} texts ({n_texts} vectors); {len(texts)} real questions "
          f"from {path.name}; {index.embedder.name}, {index.policy}")
    print(table(["index build s (load + train)", "p50 ms", "p99 ms", "max ms", "matching p99 ms",
                 "embedding texts/s", f"embedding {n_texts} texts s"],
                [[build_s, percentile(latencies, 50), percentile(latencies, 99), max(latencies),
                  percentile(matching, 99), per_second, n_texts / per_second]]))
    load = [round(x, 2) for x in os.getloadavg()]
    print(f"machine load average (1/5/15 min): {load} on {os.cpu_count()} cores: other work inflates the tail")
    report = {"entries": entries, "texts": n_texts, "index_build_seconds": build_s, "load_average": load,
              "latency_ms_p50": percentile(latencies, 50), "latency_ms_p99": percentile(latencies, 99),
              "latency_ms_max": max(latencies), "matching_ms_p50": percentile(matching, 50),
              "matching_ms_p99": percentile(matching, 99), "embedding_texts_per_second": per_second}
    print(f"results: {save(f'faq_match_scale_{entries}', report)}")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("bench", type=Path)
    parser.add_argument("--split", default="dev_queries")
    parser.add_argument("--predictions", type=Path)
    parser.add_argument("--baseline", action="store_true")
    parser.add_argument("--sweep", action="store_true")
    parser.add_argument("--latin", choices=["best", "replace", "off"],
                        help="Latin-letter uk/ru questions: both scripts (shipped), Cyrillic only, or as typed")
    parser.add_argument("--scale", type=int, metavar="ENTRIES",
                        help="latency/build check instead: a synthetic FAQ of ENTRIES entries x 10 texts")
    args = parser.parse_args()
    if args.scale:
        return scale_check(args.bench, args.split, args.scale)

    if args.baseline:
        os.environ["EMBEDDING_BACKEND"] = "sentence-transformers"
        os.environ["FAQ_MATCH_THRESHOLD"] = "0.7"
    faq, queries, faq_ids = load_bench(args.bench, args.split, baseline=args.baseline)
    fresh_django("faqmatch")
    index, build_s = build_index(faq, baseline=args.baseline)
    if args.latin:
        from dataclasses import replace

        index.policy = replace(index.policy, latin=args.latin)
    rows, latencies, raw, wall = run_queries(index, queries)

    if args.predictions:
        with args.predictions.open("w", encoding="utf-8") as out:
            for q, (_, predicted) in zip(queries, rows, strict=True):
                faq_id = None if predicted is None else faq_ids[predicted]  # the file's own id, not the key
                out.write(json.dumps({"query_id": q["query_id"], "faq_id": faq_id}, ensure_ascii=False) + "\n")

    from supportbot.config import get_settings

    m = metrics(rows)
    covered = [(gold, matches) for gold, matches, _ in raw if gold is not None]
    m["ranking_top1"] = sum(bool(ms) and ms[0].key == gold for gold, ms in covered) / max(1, len(covered))
    m["ranking_top3"] = sum(gold in [x.key for x in ms[:3]] for gold, ms in covered) / max(1, len(covered))
    backend = get_settings().embedding_backend
    name = f"faq_match_{args.bench.stem}_{args.split}" + ("_baseline" if args.baseline else "") + (
        "" if args.baseline or backend == "gemma-e5" else f"_{backend}") + (
        f"_latin_{args.latin}" if args.latin else "")
    method = ("baseline: all-MiniLM-L6-v2, questions only, cosine >= 0.7" if args.baseline
              else f"{index.embedder.name}, {index.policy}")
    print(f"{args.bench.name} [{args.split}] {len(queries)} queries; method: {method}")
    print(table(
        ["top-1", "top-3", "in-scope acc", "oos rejection", "balanced acc", "wrong answers", "p50 ms", "p99 ms", "q/s",
         "index build s"],
        [[m["ranking_top1"], m["ranking_top3"], m["in_scope_accuracy"], m["oos_rejection"], m["balanced_accuracy"],
          m["wrong_answer_rate"],
          percentile(latencies, 50), percentile(latencies, 99), len(queries) / wall, build_s]],
    ))
    styles = sorted({q["language"] for q in queries if q.get("language")})
    if len(styles) > 1:  # the shop sets: how each way of writing fares
        per_style = {}
        for style in styles:
            picked = [i for i, q in enumerate(queries) if q.get("language") == style]
            sub = metrics([rows[i] for i in picked])
            hits = [bool(raw[i][1]) and raw[i][1][0].key == raw[i][0] for i in picked if raw[i][0] is not None]
            per_style[style] = {**sub, "ranking_top1": sum(hits) / max(1, len(hits))}
        print(table(["written as", "n", "top-1", "in-scope acc", "oos rejection", "wrong answers"],
                    [[st, len([q for q in queries if q.get("language") == st]), r["ranking_top1"],
                      r["in_scope_accuracy"], r["oos_rejection"], r["wrong_answer_rate"]]
                     for st, r in per_style.items()]))
        m["by_language"] = per_style
    report = {"bench": str(args.bench), "split": args.split, "method": method, **m,
              "load_average": [round(x, 2) for x in os.getloadavg()],
              "latency_ms_p50": percentile(latencies, 50), "latency_ms_p99": percentile(latencies, 99),
              "questions_per_second": len(queries) / wall, "index_build_seconds": build_s}

    if args.sweep:
        report["sweep_top"] = sweep(raw, index.policy)
    print(f"results: {save(name, report)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
