"""Do phrasings proposed by the local LLM help FAQ matching? (the admin's "Propose phrasings")

    .venv/bin/python bench/generated_phrasings.py [DEV.json ...] [--per-language 3] [--split dev_queries]
        [--regenerate] [--call-timeout 120]

For every entry of each dev set file (default: /work/shared/data/faq_match_dev_en.json,
bench/data/faq_match_dev_uk.json and bench/data/faq_match_dev_shop.json; any file of that
shape), the local LLM as the settings describe it (``LOCAL_LLM_*``: the bundled
Qwen2.5-Coder-1.5B by default) proposes ``--per-language`` phrasings of the entry's question
in the file's language (``multi``: in uk, ru and en, the admin's default), through the
admin action's own code (``supportbot.llm.phrasings``: prompt, parsing, filter). Every
proposal that passes the filter is approved: the OPTIMISTIC case, an operator who accepts
everything the filter lets through (a real operator rejects some).

The matcher (``bench/faq_match.py``'s functions, the default ``EMBEDDING_BACKEND``) then
runs the split's queries four times:

* ``own``: the question and the file's own paraphrases (what ``bench/faq_match.py`` measures);
* ``own + generated``: the same, plus the approved generated phrasings;
* ``question only``: no phrasings (a new FAQ entry, before anyone adds wordings);
* ``question + generated``: the question and the generated phrasings only.

The model sees the question and the answer only (never the file's paraphrases or
queries); placeholder answers (``ANSWER:...``) are left out of the prompt. Generation
takes minutes (seconds per entry on 2 cores): it is cached per file in
``bench/results/generated_phrasings_<file>.json`` and re-used while the model, prompt and
``--per-language`` are the same (``--regenerate``: ask again). Results:
``bench/results/generated_phrasings.json`` (the latest run) and
``generated_phrasings_<EMBEDDING_BACKEND>.json``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import RESULTS, fresh_django, save, table
from faq_match import build_index, load_bench, metrics, run_queries

DEFAULT_FILES = [Path("/work/shared/data/faq_match_dev_en.json"),
                 Path(__file__).resolve().parent / "data" / "faq_match_dev_uk.json",
                 Path(__file__).resolve().parent / "data" / "faq_match_dev_shop.json"]
VARIANTS = ["own", "own + generated", "question only", "question + generated"]


def _prompt_version(per_language: int) -> str:
    """Changes whenever what the model is asked changes (then the cache is not re-used)."""
    from supportbot.llm import phrasings

    text = json.dumps([phrasings.SYSTEM_PROMPT, phrasings.USER_PROMPT, phrasings.EXAMPLES, phrasings.EXAMPLE_QUESTION,
                       phrasings.SPARE_LINES, phrasings.MAX_CHARS, per_language], ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def _answer(entry: dict) -> str:
    answer = entry.get("answer") or ""
    return "" if answer.startswith("ANSWER:") else answer  # a placeholder tells the model nothing


def generate(path: Path, *, per_language: int, call_timeout: float, regenerate: bool) -> dict:
    """Proposals for every entry of ``path`` (faq_id -> cached record), asking the model only
    for entries not in the cache; the cache is written after each entry."""
    from tqdm import tqdm

    from supportbot.assembly import process
    from supportbot.llm import phrasings

    data = json.loads(path.read_text(encoding="utf-8"))
    language = data.get("language", "en")
    if language == "multi":  # customers write in any of the languages: the admin's default, all three
        languages = list(phrasings.LANGUAGES)
    elif language in phrasings.LANGUAGES:
        languages = [language]
    else:
        raise SystemExit(f"{path}: language {language!r} is not 'multi' or one of {', '.join(phrasings.LANGUAGES)}")
    proc = process()
    local = proc.local_answerer()
    cache_path = RESULTS / f"generated_phrasings_{path.stem}.json"
    version = {"model": local.model_name, "prompt": _prompt_version(per_language), "per_language": per_language,
               "language": language}
    cache = json.loads(cache_path.read_text(encoding="utf-8")) if cache_path.exists() and not regenerate else {}
    if cache.get("version") != version:
        cache = {"version": version, "entries": {}}
    todo = [e for e in data["faq"] if str(e["faq_id"]) not in cache["entries"]]
    print(f"{path.name}: {len(data['faq']) - len(todo)} entries cached, {len(todo)} to generate with "
          f"{local.model_name} ({', '.join(languages)}, {per_language} each per language)", flush=True)
    failures = 0
    for entry in tqdm(todo, desc=f"generating ({path.stem})", unit="entry"):
        faq = phrasings.FaqText(entry["question"], _answer(entry))
        started = time.perf_counter()
        try:
            [result] = phrasings.propose_in_worker(local, [faq], languages=languages, per_language=per_language,
                                                   call_timeout=call_timeout,
                                                   run_timeout=(call_timeout + 5) * len(languages))
        except phrasings.ProposalsFailed as exc:  # not cached: a rerun asks again
            failures += 1
            tqdm.write(f"  {entry['faq_id']}: {exc}")
            continue
        # The model's output as written: the filter runs again on every evaluation (approve_all).
        cache["entries"][str(entry["faq_id"])] = {
            "question": entry["question"], "raw": result.raw, "cut": result.cut, "errors": result.errors,
            "seconds": round(time.perf_counter() - started, 2)}
        cache_path.parent.mkdir(parents=True, exist_ok=True)
        cache_path.write_text(json.dumps(cache, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    if failures:
        print(f"{failures} entries got no proposals (model errors or timeouts); rerun to retry them")
    return cache


def approve_all(entry: dict, record: dict, per_language: int) -> tuple[list[list[str]], list[list[str]]]:
    """Every proposal in ``record``'s cached output that passes today's filter (all approved:
    the optimistic case) as [language, text], and [text, why] for those it drops."""
    from supportbot.llm.phrasings import FaqText, filter_output

    faq = FaqText(entry["question"], _answer(entry))
    taken: set[str] = set()
    kept: list[list[str]] = []
    dropped: list[list[str]] = []
    for language, output in record["raw"].items():  # in the order they were asked
        texts, why = filter_output(output, faq, language, per_language, cut=record["cut"].get(language, False),
                                   taken=taken)
        kept += [[language, t] for t in texts]
        dropped += [[t, w] for t, w in why]
    return kept, dropped


def _generation_stats(cache: dict, approved: dict[str, list], dropped: dict[str, list], entries: int) -> dict:
    records = list(cache["entries"].values())
    kept = [len(a) for a in approved.values()]
    reasons = Counter(why for d in dropped.values() for _, why in d)
    return {"entries": entries, "generated_for": len(records),
            "approved_per_entry": sum(kept) / max(1, len(records)),
            "entries_with_none": sum(1 for k in kept if not k), "approved_total": sum(kept),
            "dropped_by_reason": dict(reasons.most_common()),
            "generation_seconds_total": round(sum(r.get("seconds", 0.0) for r in records), 1)}


def _rows(faq: list[dict], generated: dict[str, list[str]], variant: str) -> list[dict]:
    """The file's FAQ rows with the phrasings this variant gives each entry."""
    from supportbot.llm.phrasings import normalise

    out = []
    for row in faq:
        own = row["phrasings"] if variant.startswith("own") else []
        extra = generated.get(row["key"], []) if variant.endswith("generated") else []
        seen = {normalise(t) for t in [row["question"], *own]}
        added = [t for t in extra if normalise(t) not in seen]
        out.append({**row, "phrasings": [*own, *added]})
    return out


def evaluate(path: Path, split: str, approved: dict[str, list]) -> tuple[dict, dict]:
    """The split's metrics per variant, on a FAQ holding only this file's entries."""
    from supportbot.support.models import FaqEntry

    faq, queries, faq_ids = load_bench(path, split, baseline=False)
    by_id = {str(faq_id): key for key, faq_id in faq_ids.items()}
    generated = {by_id[i]: [text for _, text in texts] for i, texts in approved.items() if i in by_id}
    FaqEntry.objects.all().delete()  # the previous file's entries must not compete
    results, method = {}, {}
    for variant in VARIANTS:
        rows = _rows(faq, generated, variant)
        index, _ = build_index(rows)
        predictions, _, _, _ = run_queries(index, queries)
        results[variant] = {**metrics(predictions),
                            "texts_per_entry": sum(1 + len(r["phrasings"]) for r in rows) / max(1, len(rows))}
        method = {"embedder": index.embedder.name, "policy": str(index.policy)}
    return results, {**method, "queries": len(queries)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("files", type=Path, nargs="*", default=DEFAULT_FILES)
    parser.add_argument("--split", default="dev_queries")
    parser.add_argument("--per-language", type=int, default=3)
    parser.add_argument("--call-timeout", type=float, default=120.0,
                        help="seconds per model call (the admin: LOCAL_LLM_TIMEOUT; a busy machine is slower)")
    parser.add_argument("--regenerate", action="store_true", help="ask the model again instead of using the cache")
    args = parser.parse_args()
    fresh_django("genphrasings")  # first: the settings are read once, with this data dir

    report: dict = {"approval": "optimistic: every proposal that passed the filter was approved",
                    "per_language": args.per_language, "split": args.split, "files": {}}
    lines = []
    for path in args.files:
        if not path.exists():
            print(f"{path}: not found, skipped")
            continue
        cache = generate(path, per_language=args.per_language, call_timeout=args.call_timeout,
                         regenerate=args.regenerate)
        entries = {str(e["faq_id"]): e for e in json.loads(path.read_text(encoding="utf-8"))["faq"]}
        approved, dropped = {}, {}
        for faq_id, record in cache["entries"].items():
            approved[faq_id], dropped[faq_id] = approve_all(entries[faq_id], record, args.per_language)
        stats = _generation_stats(cache, approved, dropped, len(entries))
        results, method = evaluate(path, args.split, approved)
        report["llm_model"] = cache["version"]["model"]
        report.update(embedder=method["embedder"], policy=method["policy"])
        report["files"][path.stem] = {"path": str(path), "language": cache["version"]["language"],
                                      "queries": method["queries"], "generation": stats, "variants": results,
                                      "approved": approved}
        for variant, m in results.items():
            base = results["own" if variant.startswith("own") else "question only"]
            lines.append([path.stem, variant, m["texts_per_entry"], m["balanced_accuracy"],
                          m["balanced_accuracy"] - base["balanced_accuracy"], m["in_scope_accuracy"],
                          m["oos_rejection"], m["wrong_answer_rate"]])
        print(f"{path.name}: {stats['approved_total']} phrasings approved for {stats['generated_for']}/{len(entries)} "
              f"entries ({stats['approved_per_entry']:.2f} per entry, {stats['entries_with_none']} with none); "
              f"dropped by the filter: {stats['dropped_by_reason']}")

    print(f"\nmatcher: {report.get('embedder')}, {report.get('policy')}; phrasings by {report.get('llm_model')}, "
          f"{args.per_language} asked per entry; APPROVAL IS OPTIMISTIC: every proposal that passed the filter "
          "was added")
    print(table(["file", "phrasings", "texts/entry", "balanced acc", "Δ balanced", "in-scope acc", "oos rejection",
                 "wrong answers"], lines))
    from supportbot.config import get_settings

    # The latest run, and a copy per embedding backend (the default changes; both numbers stay).
    backend = get_settings().faq.embedding_backend
    report["embedding_backend"] = backend
    print(f"results: {save('generated_phrasings', report)} (and {save(f'generated_phrasings_{backend}', report)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
