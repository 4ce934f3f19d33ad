"""LLM fallback answers: quality and speed of the default local model, through the bot.

    .venv/bin/python bench/llm_answers.py [--questions FILE] [--limit N]

40 questions over the sample FAQ (``bench/data/llm_questions.json``; Ukrainian,
Russian, English): 25 answerable only by combining or rephrasing FAQ entries
(the FAQ matcher alone misses them: the table says how many it does miss) and
15 the FAQ does not cover. Each is sent by a new customer through the sandbox
Bot API over HTTP to the unmodified bot, running in this process with the
default settings (FAQ, then the local model; the API step off). Reported:

* answerable questions answered with the key fact (every keyword group of the
  question found in the answer; any automatic source counts),
* uncovered questions refused or handed over (no LLM or FAQ answer at all),
* time to first visible token in Telegram: from the customer's send to the
  moment the streamed draft appears in the chat (LLM answers only),
* total time: from the send to the final answer with its buttons (or to the
  hand-over notice).

Targets (issue 6): >= 70 %, >= 90 %, first visible token < 2 s on 2 cores.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import fresh_django, percentile, save, table

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "src" / "supportbot" / "data" / "sample_faq.json"
QUESTIONS = Path(__file__).resolve().parent / "data" / "llm_questions.json"
LABELS = ("🤖 AI answer", "🤖 Відповідь ШІ", "🤖 Ответ ИИ")


def normalise(text: str) -> str:
    text = text.lower().replace("–", "-").replace("—", "-").replace("\u00a0", " ").replace("’", "'")
    return re.sub(r"(?<=\d) (?=[\d%])", "", text)  # "1 500" -> "1500", "2 %" -> "2%"


def has_key_fact(answer: str, groups: list[list[str]]) -> bool:
    text = normalise(answer)
    return all(any(normalise(word) in text for word in group) for group in groups)


async def ask_all(questions: list[dict], *, user_base: int = 70_000, need_llm: bool = True) -> list[dict]:
    from asgiref.sync import sync_to_async

    from supportbot.bot.runner import BotApp
    from supportbot.config import SANDBOX_BOT_TOKEN
    from supportbot.sandbox.client import SandboxClient
    from supportbot.sandbox.server import SandboxState, start_server
    from supportbot.support.models import Message, TicketStatusChange

    first_seen: dict[int, float] = {}

    class TimedState(SandboxState):
        """Stamps the moment the bot's first message in each chat appears."""

        def add_message(self, chat, **fields):
            message = super().add_message(chat, **fields)
            if fields.get("sender") == "bot":
                first_seen.setdefault(chat.id, time.perf_counter())
            return message

    state = TimedState()
    server = await start_server("127.0.0.1", 0, token=SANDBOX_BOT_TOKEN, state=state)
    app = BotApp(token=SANDBOX_BOT_TOKEN, api_url=server.url, default_language="en", polling_timeout=10)
    llm = app.pipeline.llm
    if need_llm and (llm is None or llm.local is None):
        raise SystemExit("the local LLM step is off: unset LOCAL_LLM_ENABLED=false to run this benchmark")
    if llm is not None and llm.local is not None:
        started = time.perf_counter()
        await llm.local.warm_up()
        assert llm.local.engine is not None  # warm_up() loaded it
        print(f"local model {llm.local.model_name} ({llm.local.engine.name}) loaded in "
              f"{time.perf_counter() - started:.1f} s", flush=True)
    await app.start()

    def final_message(chat_id: int):
        chat = state.find_chat(chat_id)
        if chat is None:
            return None
        for message in chat.messages.values():
            if message.sender != "bot" or message.deleted:
                continue
            if message.inline_markup():  # an answer, complete with its buttons
                return message
            if not (message.text or "").startswith(LABELS):  # a hand-over notice
                return message
        return None

    def logged(user_id: int) -> dict:
        out = Message.objects.filter(ticket__user_id=user_id, direction="out").exclude(source="system").first()
        change = TicketStatusChange.objects.filter(ticket__user_id=user_id, new_status="with_operator").first()
        return {
            "source": out.source if out else "handover",
            "faq_entry": out.faq_entry.key if out and out.faq_entry else None,
            "answer": out.text if out else "",
            "model": out.llm_model if out else "",
            "context": [c["key"] for c in out.context_entries] if out else [],
            "prompt_tokens": out.prompt_tokens if out else None,
            "completion_tokens": out.completion_tokens if out else None,
            "first_token_ms": out.first_token_ms if out else None,
            "reason": change.reason if change else "",
        }

    results = []
    try:
        async with SandboxClient(server.url) as client:
            for n, q in enumerate(questions):
                user_id = user_base + n
                sent_at = time.perf_counter()
                await client.send_text(user_id, q["question"], language_code=q["language"])
                deadline = sent_at + 180
                while (message := final_message(user_id)) is None:
                    if time.perf_counter() > deadline:
                        break
                    await asyncio.sleep(0.01)
                done_at = time.perf_counter()
                await asyncio.sleep(0.05)  # the row is marked sent right after the final edit
                row = await sync_to_async(logged)(user_id)
                by_llm = row["source"] in ("local_llm", "api_llm")
                visible_ms = (first_seen[user_id] - sent_at) * 1000 if by_llm and user_id in first_seen else None
                item = {**q, **row, "total_ms": round((done_at - sent_at) * 1000),
                        "first_visible_ms": None if visible_ms is None else round(visible_ms),
                        "timed_out": message is None}
                if q["kind"] == "answerable":
                    item["ok"] = row["source"] != "handover" and has_key_fact(row["answer"], q["keywords"])
                else:
                    item["ok"] = row["source"] == "handover"
                results.append(item)
                shown = (row["answer"] or row["reason"]).replace("\n", " ")[:90]
                print(f"{n + 1:>2} {q['language']} {q['kind'][:6]:<6} {'ok ' if item['ok'] else 'NO '} "
                      f"{row['source']:<9} {item['total_ms']:>6} ms  {shown}", flush=True)
    finally:
        await app.stop()
        await server.close()
    return results


def faq_alone(questions: list[dict]) -> list[bool]:
    """Whether the FAQ matcher alone would answer each question (confident match)."""
    from supportbot.assembly import build_pipeline, prepare_index

    pipeline = build_pipeline(llm=None)
    prepare_index(pipeline)
    return [pipeline.index.search(q["question"]).confident for q in questions]


def summarise(results: list[dict]) -> list[list]:
    rows = []
    for language in ("uk", "ru", "en", "all"):
        subset = [r for r in results if language == "all" or r["language"] == language]
        answerable = [r for r in subset if r["kind"] == "answerable"]
        uncovered = [r for r in subset if r["kind"] == "uncovered"]
        visible = [r["first_visible_ms"] / 1000 for r in subset if r["first_visible_ms"] is not None]
        totals = [r["total_ms"] / 1000 for r in subset]
        rows.append([
            language,
            f"{sum(r['ok'] for r in answerable)}/{len(answerable)}"
            f" ({100 * sum(r['ok'] for r in answerable) / max(len(answerable), 1):.0f}%)",
            f"{sum(r['ok'] for r in uncovered)}/{len(uncovered)}"
            f" ({100 * sum(r['ok'] for r in uncovered) / max(len(uncovered), 1):.0f}%)",
            f"{percentile(visible, 50):.2f} / {percentile(visible, 90):.2f}" if visible else "-",
            f"{percentile(totals, 50):.2f} / {percentile(totals, 90):.2f}",
        ])
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--questions", type=Path, default=QUESTIONS)
    parser.add_argument("--limit", type=int, help="only the first N questions (trying prompts)")
    args = parser.parse_args()

    # The default local model, alone: no API step even where a key is configured.
    os.environ["API_LLM_ENABLED"] = "false"
    os.environ.pop("LOCAL_LLM_ENABLED", None)
    fresh_django("llm")  # the joined model comes from the shared SUPPORTBOT_MODEL_DIR

    from supportbot.config import get_settings
    from supportbot.support.faq_io import import_faq

    import_faq(SAMPLE)
    questions = json.loads(args.questions.read_text(encoding="utf-8"))[: args.limit]
    matcher = faq_alone(questions)
    results = asyncio.run(ask_all(questions))
    for item, confident in zip(results, matcher, strict=True):
        item["faq_matcher_confident"] = confident

    cfg = get_settings()
    rows = summarise(results)
    headers = ["language", "answerable: key fact", "uncovered: refused / handed over",
               "first visible token p50 / p90, s", "total p50 / p90, s"]
    print()
    print(table(headers, rows))
    answerable = [r for r in results if r["kind"] == "answerable"]
    print(f"\nFAQ matcher alone answers {sum(r['faq_matcher_confident'] for r in answerable)} of "
          f"{len(answerable)} answerable questions; model {next((r['model'] for r in results if r['model']), '-')} "
          f"({cfg.local_llm_engine}, {cfg.local_llm_threads} threads, {os.cpu_count()} cores)")
    all_row = rows[-1]
    path = save("llm_answers", {
        "engine": cfg.local_llm_engine, "threads": cfg.local_llm_threads,
        "context_entries": cfg.llm_context_entries, "max_tokens": cfg.llm_max_tokens,
        "summary": dict(zip(headers, all_row, strict=True)),
        "table": [dict(zip(headers, r, strict=True)) for r in rows],
        "questions": results,
    })
    print(f"results: {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
