"""Start-up: how soon a freshly started bot answers, with the local LLM and Whisper enabled.

    .venv/bin/python bench/startup.py [--runs 2]

The bot runs unmodified in its own process (``supportbot -v bot --sandbox``), polling
the sandbox served by this process, with the defaults a user gets: the local LLM and
Whisper on and warmed up at start. The moment polling starts (the bot's own log line)
a customer sends ``/start`` and an FAQ question; the table gives the time from polling
start to each answer, and when the models finished loading. Three situations:

1. *cold*: a new data dir and an empty model cache (``SUPPORTBOT_MODEL_DIR``): the
   models are joined from their pip parts while the bot already serves;
2. *new data dir*: a new data dir, the model cache warm (a second bot, a test run);
3. *warm*: the same data dir and cache again (a restart).

Target: FAQ answers within 2 s of polling starting in each.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import percentile, save, table, timed_sandbox

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "src" / "supportbot" / "data" / "sample_faq.json"
QUESTION = ("How much does shipping cost?", "en")

_POLLING = re.compile(r"Run polling for bot")
_LLM_LOADED = re.compile(r"local LLM .* loaded with .* in ([0-9.]+) s")
_SPEECH_LOADED = re.compile(r"Whisper .* loaded|speech model .* loaded", re.IGNORECASE)


def _prepare_data_dir(data_dir: Path, env: dict) -> None:
    """Database and FAQ, as `make run` leaves them (not part of the timing)."""
    cli = [sys.executable, "-m", "supportbot.cli"]
    subprocess.run([*cli, "migrate"], env=env, check=True, stdout=subprocess.DEVNULL)
    subprocess.run([*cli, "import-faq", "-q", str(SAMPLE)], env=env, check=True, stdout=subprocess.DEVNULL)


async def one_start(label: str, data_dir: Path, model_dir: Path, timeout: float) -> dict:
    from supportbot.sandbox.client import SandboxClient

    arrivals: dict[int, asyncio.Future] = {}
    server = await timed_sandbox(arrivals)
    env = {**os.environ, "SUPPORTBOT_DATA_DIR": str(data_dir), "SUPPORTBOT_MODEL_DIR": str(model_dir),
           "SANDBOX_PORT": str(server.port), "SANDBOX_HOST": "127.0.0.1",
           "LOCAL_LLM_ENABLED": "true", "API_LLM_ENABLED": "false"}
    started = time.perf_counter()
    bot = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "supportbot.cli", "-v", "bot", "--sandbox", env=env,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
    loop = asyncio.get_running_loop()
    polling: asyncio.Future = loop.create_future()
    llm_loaded: asyncio.Future = loop.create_future()

    async def read_log() -> None:
        assert bot.stderr is not None
        async for raw in bot.stderr:
            line = raw.decode(errors="replace")
            now = time.perf_counter()
            if _POLLING.search(line) and not polling.done():
                polling.set_result(now)
            match = _LLM_LOADED.search(line)
            if match and not llm_loaded.done():
                llm_loaded.set_result(now)
            if "Traceback" in line or " ERROR " in line:
                sys.stderr.write(f"[bot] {line}")

    reader = asyncio.create_task(read_log())
    result: dict = {"situation": label}
    try:
        polled_at = await asyncio.wait_for(polling, timeout)
        result["process_start_to_polling_s"] = round(polled_at - started, 2)
        async with SandboxClient(server.url) as client:
            async def exchange(user_id: int, text: str, language: str) -> float:
                arrivals[user_id] = loop.create_future()
                await client.send_text(user_id, text, language_code=language)
                arrived = await asyncio.wait_for(arrivals[user_id], timeout)
                return round(arrived - polled_at, 2)

            start_s, faq_s = await asyncio.gather(exchange(1, "/start", "en"), exchange(2, *QUESTION))
            result["polling_to_start_reply_s"] = start_s
            result["polling_to_faq_answer_s"] = faq_s
            transcript = await client.bot_messages(2)
            result["faq_answer"] = transcript[-1].get("text", "")[:60] if transcript else ""
        try:
            loaded_at = await asyncio.wait_for(llm_loaded, timeout)
            result["polling_to_llm_loaded_s"] = round(loaded_at - polled_at, 2)
        except TimeoutError:
            result["polling_to_llm_loaded_s"] = None
    finally:
        bot.terminate()
        try:
            await asyncio.wait_for(bot.wait(), 30)
        except TimeoutError:
            bot.kill()
        reader.cancel()
        await server.close()
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=1, help="repeat each situation")
    parser.add_argument("--timeout", type=float, default=180.0)
    args = parser.parse_args()

    root = Path(tempfile.mkdtemp(prefix="supportbot-startup-"))
    model_dir = root / "models"
    env = {**os.environ, "SUPPORTBOT_MODEL_DIR": str(model_dir)}
    env.pop("DATABASE_URL", None)
    rows = []
    try:
        for run in range(args.runs):
            shutil.rmtree(model_dir, ignore_errors=True)
            for label in ("cold", "new data dir", "warm"):
                data_dir = root / f"data-{run}-{'warm' if label == 'warm' else label.replace(' ', '-')}"
                if label == "warm":
                    data_dir = root / f"data-{run}-new-data-dir"
                else:
                    _prepare_data_dir(data_dir, {**env, "SUPPORTBOT_DATA_DIR": str(data_dir)})
                rows.append(asyncio.run(one_start(label, data_dir, model_dir, args.timeout)))
                print(rows[-1], flush=True)
    finally:
        shutil.rmtree(root, ignore_errors=True)

    headers = ["situation", "process start -> polling s", "polling -> /start reply s",
               "polling -> FAQ answer s", "polling -> LLM loaded s"]
    print(table(headers, [[r["situation"], r["process_start_to_polling_s"], r["polling_to_start_reply_s"],
                           r["polling_to_faq_answer_s"], r["polling_to_llm_loaded_s"]] for r in rows]))
    worst = max(r["polling_to_faq_answer_s"] for r in rows)
    print(f"target (FAQ answer within 2 s of polling start): {'met' if worst <= 2 else 'NOT met'} "
          f"(worst {worst} s, p50 {percentile([r['polling_to_faq_answer_s'] for r in rows], 50)} s)")
    print(f"results: {save('startup', {'runs': rows})}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
