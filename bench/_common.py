"""Shared helpers for the benchmarks: a throwaway data dir + database, tables, results."""

from __future__ import annotations

import asyncio
import json
import os
import platform
import tempfile
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def fresh_django(prefix: str) -> Path:
    """Point supportbot at a new temporary data dir (SQLite) and set Django up."""
    data_dir = Path(tempfile.mkdtemp(prefix=f"supportbot-{prefix}-"))
    os.environ["SUPPORTBOT_DATA_DIR"] = str(data_dir)
    os.environ.pop("DATABASE_URL", None)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "supportbot.web.settings")
    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", interactive=False, verbosity=0)
    return data_dir


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def table(headers: list[str], rows: list[list]) -> str:
    cells = [[str(h) for h in headers]] + [[f"{c:.3f}" if isinstance(c, float) else str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = ["| " + " | ".join(c.ljust(w) for c, w in zip(r, widths, strict=False)) + " |" for r in cells]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)


def save(name: str, payload: dict) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    payload = {"benchmark": name, "when": time.strftime("%Y-%m-%dT%H:%M:%S"),
               "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                           "platform": platform.platform()}, **payload}
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(payload, indent=2, ensure_ascii=False) + "\n")
    return path


async def timed_sandbox(arrivals: dict[int, asyncio.Future]):
    """The sandbox Bot API on an ephemeral port, stamping (``time.perf_counter``) the moment
    each bot message to a chat in ``arrivals`` arrives, without polling."""
    from supportbot.config import SANDBOX_BOT_TOKEN
    from supportbot.sandbox.server import SandboxState, start_server

    class TimedState(SandboxState):
        def add_message(self, chat, **fields):
            message = super().add_message(chat, **fields)
            waiter = arrivals.get(chat.id)
            if fields.get("sender") == "bot" and waiter is not None and not waiter.done():
                waiter.set_result(time.perf_counter())
            return message

    return await start_server("127.0.0.1", 0, token=SANDBOX_BOT_TOKEN, state=TimedState())
