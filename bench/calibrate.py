"""Fit the FAQ decision for the current embedder: the calibrated rule's weights and threshold.

    .venv/bin/python bench/calibrate.py [--max-wrong 0.03] [--reuse]

Runs the four dev sets (CLINC150 en and ru dev from ../shared/data, the hand-written
uk set and the realistic shop set from bench/data) through the bot's own matcher
(``EMBEDDING_BACKEND`` / ``EMBEDDING_PRECISION`` as set; Latin-letter questions matched
in both scripts), each set in its own process and fresh database, and keeps for every
question what the decision sees: the best entry's probability, centred similarity,
cosine and margin, the second same-language cosine, and whether the best entry is the
right one. Then, on the four sets pooled (each set weighted equally; one policy for
all, never per file):

1. a logistic model of "the best entry is right" over (probability, specific,
   cosine, margin): :attr:`MatchPolicy.calibration`;
2. ``min_confidence``: the value with the best mean balanced accuracy whose
   wrong-answer rate stays <= ``--max-wrong`` on every set (default 3 %: the whole
   chain's target for wrong answers of any source, issue 12; the LLM step sends no
   text of its own by default, so the FAQ step's wrong answers are all of them);
3. the cosine rule (tiny and very large FAQs): ``threshold`` and ``margin`` chosen
   the same way.

It prints the fitted policy (paste it into ``knowledge/decision.py``'s ``_DEFAULTS``)
and a table per set, plus the held-out shop test set under the fitted policy, which
played no part in the fit. Features are cached in bench/results/calibration_*.json;
``--reuse`` refits from them without re-embedding.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import RESULTS, save, table

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
DEV_SETS = {
    "en": (SHARED / "faq_match_dev_en.json", "dev_queries"),
    "ru": (SHARED / "faq_match_dev_ru.json", "dev_queries"),
    "uk": (ROOT / "bench" / "data" / "faq_match_dev_uk.json", "dev_queries"),
    "shop": (ROOT / "bench" / "data" / "faq_match_dev_shop.json", "dev_queries"),
}
TEST_SETS = {"shop test": (ROOT / "bench" / "data" / "faq_match_test_shop.json", "test_queries")}


def features_for(path: Path, split: str, out: Path) -> None:
    """(In a child process.) Every question of the split through the matcher; writes its features."""
    from _common import fresh_django
    from faq_match import _slug, build_index, load_bench

    faq, queries, _ = load_bench(path, split, baseline=False)
    fresh_django("calibrate")
    index, _ = build_index(faq)
    rows = []
    for q in queries:
        result = index.search(q["text"], k=5)
        gold = q.get("faq_id")
        best = result.best
        if best is None:
            rows.append({"gold": gold, "right": False, "empty": True})
            continue
        second = next((m.score for m in result.matches if m.key != best.key and m.language == best.language), None)
        rows.append({"gold": gold, "in_scope": gold is not None,
                     "right": gold is not None and best.key == _slug(gold),
                     "probability": best.probability, "specific": best.specific, "score": best.score,
                     "margin": best.margin if best.margin is not None else 0.1, "second": second})
    out.write_text(json.dumps({"model": index.embedder.name, "rows": rows}, ensure_ascii=False))


def collect(sets: dict, reuse: bool) -> dict[str, dict]:
    collected = {}
    for name, (path, split) in sets.items():
        from supportbot.config import get_settings

        cfg = get_settings()
        out = RESULTS / f"calibration_{cfg.embedding_backend}_{cfg.embedding_precision}_{path.stem}_{split}.json"
        if not (reuse and out.exists()):
            print(f"embedding {name} ({path.name}, {split})...", flush=True)
            subprocess.run([sys.executable, __file__, "--features-of", str(path), split, str(out)], check=True)
        collected[name] = json.loads(out.read_text(encoding="utf-8"))
    return collected


def _x(rows: list[dict]) -> np.ndarray:
    return np.array([[r["probability"], r["specific"], r["score"], r["margin"]] for r in rows], dtype=np.float64)


def fit_logistic(x: np.ndarray, y: np.ndarray, w: np.ndarray, l2: float = 1e-3) -> np.ndarray:
    """Weighted logistic regression by Newton's method; returns (w_1..w_k, bias)."""
    xb = np.hstack([x, np.ones((len(x), 1))])
    beta = np.zeros(xb.shape[1])
    for _ in range(50):
        p = 1 / (1 + np.exp(-xb @ beta))
        grad = xb.T @ (w * (p - y)) + l2 * np.r_[beta[:-1], 0]
        hess = (xb * (w * p * (1 - p))[:, None]).T @ xb + l2 * np.diag(np.r_[np.ones(len(beta) - 1), 0])
        step = np.linalg.solve(hess, grad)
        beta -= step
        if np.abs(step).max() < 1e-8:
            break
    return beta


def outcome(rows: list[dict], answered: list[bool]) -> dict:
    covered = [(r, a) for r, a in zip(rows, answered, strict=True) if r.get("gold") is not None]
    uncovered = [(r, a) for r, a in zip(rows, answered, strict=True) if r.get("gold") is None]
    in_scope = sum(a and r["right"] for r, a in covered) / max(1, len(covered))
    rejection = sum(not a for _, a in uncovered) / max(1, len(uncovered))
    wrong = sum(a and not r["right"] for r, a in zip(rows, answered, strict=True)) / max(1, len(rows))
    return {"balanced": (in_scope + rejection) / 2, "in_scope": in_scope, "rejection": rejection, "wrong": wrong,
            "n": len(rows)}


def confidence(beta: np.ndarray, r: dict) -> float:
    z = float(beta[-1] + sum(b * v for b, v in zip(beta[:-1], (r["probability"], r["specific"], r["score"],
                                                              r["margin"]), strict=True)))
    return 1 / (1 + math.exp(-z))


def choose(sets: dict[str, list[dict]], decide, grid, max_wrong: float):
    """The grid point with the best mean balanced accuracy, wrong <= max_wrong on every set."""
    best = None
    for knob in grid:
        results = {name: outcome(rows, [not r.get("empty") and decide(r, knob) for r in rows])
                   for name, rows in sets.items()}
        if max(v["wrong"] for v in results.values()) > max_wrong:
            continue
        mean = sum(v["balanced"] for v in results.values()) / len(results)
        if best is None or mean > best[1]:
            best = (knob, mean, results)
    return best


def main() -> int:
    if len(sys.argv) == 5 and sys.argv[1] == "--features-of":
        features_for(Path(sys.argv[2]), sys.argv[3], Path(sys.argv[4]))
        return 0
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--max-wrong", type=float, default=0.03)
    parser.add_argument("--reuse", action="store_true", help="refit from the cached features")
    args = parser.parse_args()

    dev = collect(DEV_SETS, args.reuse)
    test = collect(TEST_SETS, args.reuse)
    models = {d["model"] for d in [*dev.values(), *test.values()]}
    if len(models) != 1:
        raise SystemExit(f"the cached features come from different models ({', '.join(sorted(models))}): "
                         "run without --reuse")
    model = models.pop()
    dev_rows = {name: d["rows"] for name, d in dev.items()}
    test_rows = {name: d["rows"] for name, d in test.items()}

    usable = {name: [r for r in rows if not r.get("empty") and r.get("probability") is not None]
              for name, rows in dev_rows.items()}
    x = np.vstack([_x(rows) for rows in usable.values()])
    y = np.concatenate([[float(r["right"]) for r in rows] for rows in usable.values()])
    w = np.concatenate([np.full(len(rows), 1 / len(rows)) for rows in usable.values()])
    beta = fit_logistic(x, y, w * len(usable))
    calibration = tuple(round(float(b), 3) for b in beta)

    def calibrated(r: dict, threshold: float) -> bool:
        return r.get("probability") is not None and confidence(np.array(calibration), r) >= threshold

    def cosine(r: dict, knob: tuple[float, float]) -> bool:
        threshold, margin = knob
        return r["score"] >= threshold and (r["second"] is None or r["score"] - r["second"] >= margin)

    chosen = choose(dev_rows, calibrated, [c / 100 for c in range(30, 100)], args.max_wrong)
    cos_chosen = choose(dev_rows, cosine, [(t / 100, m / 1000) for t in range(30, 97) for m in range(0, 65, 5)],
                        args.max_wrong)
    if chosen is None or cos_chosen is None:
        raise SystemExit(f"no setting keeps wrong answers <= {args.max_wrong:.0%} on every set")
    min_confidence, _, dev_results = chosen
    (threshold, margin), _, cos_results = cos_chosen
    test_results = {name: outcome(rows, [not r.get("empty") and calibrated(r, min_confidence) for r in rows])
                    for name, rows in test_rows.items()}

    print(f"\nmodel: {model}")
    print(f"calibration={calibration}, min_confidence={min_confidence:.2f}; "
          f"cosine rule threshold={threshold:.2f}, margin={margin:.3f}\n")
    rows_out = [[name, "dev", r["n"], r["balanced"], r["in_scope"], r["rejection"], r["wrong"]]
                for name, r in dev_results.items()]
    rows_out += [[name, "held out", r["n"], r["balanced"], r["in_scope"], r["rejection"], r["wrong"]]
                 for name, r in test_results.items()]
    print(table(["set", "split", "questions", "balanced", "in-scope right", "out-of-scope handed over", "wrong"],
                rows_out))
    print("\ncosine rule alone (tiny / very large FAQs), dev sets:")
    print(table(["set", "balanced", "wrong"], [[n, r["balanced"], r["wrong"]] for n, r in cos_results.items()]))
    save(f"calibration_{model.replace('/', '_')}", {
        "model": model, "calibration": calibration, "min_confidence": min_confidence,
        "cosine_threshold": threshold, "cosine_margin": margin, "max_wrong": args.max_wrong,
        "dev": dev_results, "held_out": test_results, "cosine_rule_dev": cos_results,
        "load_average": [round(v, 2) for v in os.getloadavg()]})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
