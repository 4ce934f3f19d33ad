"""The whole answer chain on a realistic FAQ: answered right, handed over, answered wrong.

    .venv/bin/python bench/whole_chain.py [BENCH.json] [--split dev_queries|test_queries]
        [--every N] [--limit N] [--no-llm]

Imports the file's FAQ (real answers) into a fresh database, then sends each
question, as a new customer, through the sandbox Bot API over HTTP to the
unmodified bot running in this process with the current settings: small talk,
the FAQ matcher, the LLM step (``LLM_ANSWER_MODE``, its gate and its fact check;
``--no-llm``: FAQ then hand-over), then the hand-over. Each outcome is:

* **right**: the question has an entry and the bot sent that entry's answer
  (FAQ, or an LLM choosing it), or an LLM answer containing all the entry's
  ``key_facts``;
* **handed over**: no automatic answer;
* **wrong**: any automatic answer to a question the FAQ does not answer, or an
  answer to an answerable question without its facts (another entry's answer).

Reported per language of the question (uk, ru, en, surzhyk, Latin-letter...):
answerable questions answered right, unanswerable ones handed over, wrong answers
among all questions, and the time from the customer's send to the bot's final
message. ``--every 3`` runs every third question (each language keeps its share),
for a quicker run with the LLM. Targets (issue 12): answerable answered right
>= 80 %, wrong <= 3 % of all questions.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import fresh_django, percentile, save, table
from faq_match import _slug, load_bench
from llm_answers import ask_all, has_key_fact

ROOT = Path(__file__).resolve().parents[1]
SHOP = Path(__file__).resolve().parent / "data" / "faq_match_dev_shop.json"
#: Telegram's language_code for each kind of question (a customer writing Latin-letter
#: Ukrainian usually has Telegram in Ukrainian or English; we take the former).
TELEGRAM_LANGUAGE = {"uk": "uk", "surzhyk": "uk", "uk-latin": "uk", "mixed": "uk", "ru": "ru", "ru-latin": "ru",
                     "en": "en"}


def load(path: Path, split: str) -> tuple[list[dict], list[dict]]:
    data = json.loads(path.read_text(encoding="utf-8"))
    faq = load_bench(path, split, baseline=False)[0]  # the FAQ as faq_match imports it
    entries = {e["faq_id"]: e for e in data["faq"]}
    questions = []
    for q in data[split]:
        entry = entries.get(q["faq_id"]) if q.get("faq_id") else None
        questions.append({
            "id": q["query_id"], "question": q["text"], "style": q.get("language", ""),
            "language": TELEGRAM_LANGUAGE.get(q.get("language", ""), "uk"),
            "kind": "answerable" if entry else "uncovered", "oos_type": q.get("oos_type"),
            "gold": _slug(entry["faq_id"]) if entry else None,
            "gold_answer": entry["answer"] if entry else None,
            "keywords": entry.get("key_facts") or [] if entry else [],
        })
    return faq, questions


def verdict(item: dict) -> str:
    if item["source"] == "handover":
        return "handed over"
    if item["kind"] != "answerable":
        return "wrong"
    if item.get("faq_entry") is not None:  # the FAQ's own text (matched, or chosen by the LLM)
        return "right" if item["faq_entry"] == item["gold"] else "wrong"
    if item["source"] == "smalltalk":
        return "wrong"
    return "right" if item["keywords"] and has_key_fact(item["answer"], item["keywords"]) else "wrong"


def summarise(results: list[dict]) -> tuple[list[str], list[list]]:
    headers = ["questions", "n", "answerable answered right", "unanswerable handed over", "wrong (of all)",
               "by source", "time p50 / p90, s"]
    rows = []
    styles = sorted({r["style"] for r in results})
    for style in [*styles, "all"]:
        subset = [r for r in results if style == "all" or r["style"] == style]
        answerable = [r for r in subset if r["kind"] == "answerable"]
        uncovered = [r for r in subset if r["kind"] != "answerable"]
        right = sum(r["verdict"] == "right" for r in answerable)
        handed = sum(r["verdict"] == "handed over" for r in uncovered)
        wrong = sum(r["verdict"] == "wrong" for r in subset)
        sources: dict[str, int] = {}
        for r in subset:
            sources[r["source"]] = sources.get(r["source"], 0) + 1
        totals = [r["total_ms"] / 1000 for r in subset]
        rows.append([
            style, len(subset),
            f"{right}/{len(answerable)} ({100 * right / max(1, len(answerable)):.0f}%)",
            f"{handed}/{len(uncovered)} ({100 * handed / max(1, len(uncovered)):.0f}%)",
            f"{wrong}/{len(subset)} ({100 * wrong / max(1, len(subset)):.1f}%)",
            " ".join(f"{k}:{v}" for k, v in sorted(sources.items())),
            f"{percentile(totals, 50):.2f} / {percentile(totals, 90):.2f}",
        ])
    return headers, rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("bench", type=Path, nargs="?", default=SHOP)
    parser.add_argument("--split", default="dev_queries")
    parser.add_argument("--every", type=int, default=1, help="every Nth question only")
    parser.add_argument("--limit", type=int)
    parser.add_argument("--no-llm", action="store_true", help="FAQ, then hand-over (no LLM step)")
    args = parser.parse_args()

    os.environ["API_LLM_ENABLED"] = "false"
    if args.no_llm:
        os.environ["LOCAL_LLM_ENABLED"] = "false"
    else:
        os.environ.pop("LOCAL_LLM_ENABLED", None)
    faq, questions = load(args.bench, args.split)
    questions = questions[:: args.every][: args.limit]
    fresh_django("chain")

    from supportbot.config import get_settings
    from supportbot.support.faq_io import import_faq

    faq_file = Path(os.environ["SUPPORTBOT_DATA_DIR"]) / "faq.json"
    faq_file.write_text(json.dumps(faq, ensure_ascii=False), encoding="utf-8")
    import_faq(faq_file)
    results = asyncio.run(ask_all(questions, need_llm=not args.no_llm))
    for item in results:
        item["verdict"] = verdict(item)

    cfg = get_settings()
    headers, rows = summarise(results)
    mode = "FAQ only" if args.no_llm else f"local LLM, LLM_ANSWER_MODE={os.environ.get('LLM_ANSWER_MODE', 'default')}"
    print(f"\n{args.bench.name} [{args.split}] {len(results)} questions; EMBEDDING_BACKEND={cfg.embedding_backend}; "
          f"{mode}")
    print(table(headers, rows))
    name = f"whole_chain_{args.bench.stem}_{args.split}" + ("_no_llm" if args.no_llm else f"_{cfg.llm.answer_mode}")
    path = save(name, {
        "bench": str(args.bench.relative_to(ROOT)) if args.bench.is_relative_to(ROOT) else str(args.bench),
        "split": args.split, "every": args.every, "mode": mode, "embedding_backend": cfg.embedding_backend,
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "table": [dict(zip(headers, r, strict=True)) for r in rows], "questions": results,
    })
    print(f"results: {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
