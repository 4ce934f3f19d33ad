"""A production stack in processes for the fault and two-host tests: the sandbox Bot API
(``supportbot sandbox``, which POSTs updates to the webhook and redelivers what is not
answered 2xx, as Telegram does), ``supportbot webhook`` and ``supportbot worker`` on a database
of their own and a Redis server of their own, and a customer load with its counts.

The database is a new one on the server the test run points at (``DATABASE_URL``:
PostgreSQL or MariaDB, as ``tests/databases.py`` sets it), dropped at the end, or a SQLite
file. Redis is a private ``redis-server`` on a free port, append-only like compose's: a test
may stop and start it without touching the machine's own Redis (other tests use that one).
Nothing in here touches Django's database in the test process: the counts come from the
sandbox (what the customers see), so a restarted database server cannot break the test's own
connections.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import aiohttp

from .processes import SAMPLE_FAQ, SUPPORTBOT, environment, free_port

SECRET = "faults-test_webhook-secret-42"
#: Questions the FAQ answers, one per customer: the sample FAQ's own questions in uk/ru/en
#: (not "how do I reach an operator": that one hands the customer over).
QUESTIONS = [(entry["question"], entry["language"]) for entry in json.loads(SAMPLE_FAQ.read_text(encoding="utf-8"))
             if not entry["key"].startswith("contact-operator")]


# -- a database of its own ---------------------------------------------------------------------------
@contextlib.contextmanager
def own_database(tmp: Path, name: str) -> Iterator[str]:
    """A new database on ``DATABASE_URL``'s server (PostgreSQL, MariaDB), dropped afterwards; a
    SQLite file without one."""
    url = os.environ.get("DATABASE_URL", "")
    parts = urlsplit(url)
    if parts.scheme.startswith("postgres"):
        import psycopg

        admin = parts._replace(path="/postgres").geturl()
        with psycopg.connect(admin, autocommit=True, connect_timeout=5) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
            conn.execute(f'CREATE DATABASE "{name}"')
        try:
            yield parts._replace(path=f"/{name}").geturl()
        finally:
            _wait_for_server("postgres", parts)
            with psycopg.connect(admin, autocommit=True, connect_timeout=5) as conn:
                conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (name,))
                conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
    elif parts.scheme == "mysql":
        import MySQLdb

        def admin():
            return MySQLdb.connect(host=parts.hostname, port=parts.port or 3306, user=parts.username,
                                   password=parts.password or "", connect_timeout=5)

        conn = admin()
        try:
            cursor = conn.cursor()
            cursor.execute(f"DROP DATABASE IF EXISTS `{name}`")
            cursor.execute(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci")
        finally:
            conn.close()
        try:
            yield parts._replace(path=f"/{name}").geturl()
        finally:
            _wait_for_server("mysql", parts)
            conn = admin()
            try:
                conn.cursor().execute(f"DROP DATABASE IF EXISTS `{name}`")
            finally:
                conn.close()
    else:
        yield f"sqlite:///{tmp / 'supportbot.sqlite3'}"


def database_server() -> str | None:
    """The service name of the database server the run points at (for a restart), or None: SQLite."""
    scheme = urlsplit(os.environ.get("DATABASE_URL", "")).scheme
    if scheme.startswith("postgres"):
        return "postgresql"
    if scheme == "mysql":
        return "mariadb"
    return None


def _wait_for_server(kind: str, parts, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if kind == "postgres":
                import psycopg

                psycopg.connect(parts._replace(path="/postgres").geturl(), connect_timeout=3).close()
            else:
                import MySQLdb

                MySQLdb.connect(host=parts.hostname, port=parts.port or 3306, user=parts.username,
                                password=parts.password or "", connect_timeout=3).close()
            return
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def restart_database_server(service: str) -> None:
    """Restart the database server the run points at. PostgreSQL: ``service postgresql restart``.
    MariaDB: shut down (``mariadb-admin shutdown`` as the URL's user), then ``service mariadb
    start``, left to itself: Debian's script then waits 30 s for a ping through
    /etc/mysql/debian.cnf, which a container without that file never answers, and calls the
    start failed although the server is up; our own connection says when it is."""
    url = urlsplit(os.environ.get("DATABASE_URL", ""))
    if service == "postgresql":
        done = subprocess.run(["service", "postgresql", "restart"], capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stdout + done.stderr
        return
    admin = shutil.which("mariadb-admin") or shutil.which("mysqladmin") or "mysqladmin"
    done = subprocess.run([admin, "-h", url.hostname or "127.0.0.1", "-P", str(url.port or 3306), "-u",
                           url.username or "root", *([f"-p{url.password}"] if url.password else []), "shutdown"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    subprocess.Popen(["service", "mariadb", "start"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                     start_new_session=True)
    _wait_for_server("mysql", url, timeout=90)


def ensure_service_running(service: str) -> None:
    """After a restart test, even a failed one: the server is up again (``service X start``)."""
    url = urlsplit(os.environ.get("DATABASE_URL", ""))
    kind = "postgres" if service == "postgresql" else "mysql"
    try:
        _wait_for_server(kind, url, timeout=5)
    except Exception:  # noqa: BLE001 - down: start it (not waiting for Debian's MariaDB script, see above)
        subprocess.Popen(["service", service, "start"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                         start_new_session=True)
        _wait_for_server(kind, url, timeout=90)


# -- Redis of its own ------------------------------------------------------------------------------
class PrivateRedis:
    """``redis-server`` on a free port of 127.0.0.1, append-only (fsync always) in its own folder."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.port = free_port()
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        server = shutil.which("redis-server")
        assert server, "redis-server is not installed (Debian: redis-server)"
        self.folder.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            [server, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "yes",
             "--appendfsync", "always", "--dir", str(self.folder), "--protected-mode", "yes"],
            stdout=(self.folder / "redis.log").open("ab"), stderr=subprocess.STDOUT)
        import redis

        deadline = time.monotonic() + 20
        while True:
            try:
                redis.Redis(port=self.port, socket_connect_timeout=1).ping()
                return
            except redis.ConnectionError:
                assert self.process.poll() is None, (self.folder / "redis.log").read_text()
                assert time.monotonic() < deadline, "redis-server did not start"
                time.sleep(0.1)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)  # Redis fsyncs its append-only file and exits
            self.process.wait(timeout=20)


# -- the stack ---------------------------------------------------------------------------------------
@dataclass
class Stack:
    """Sandbox, webhook and worker processes; ``prefix``: a command prefix for the webhook and the
    worker (``ip netns exec NS``: the two-host test); ``hosts``: the addresses they reach the
    database, Redis and the sandbox at (default this machine's)."""

    folder: Path
    database_url: str
    redis_url: str
    sandbox_port: int = field(default_factory=free_port)
    webhook_port: int = field(default_factory=free_port)
    worker_port: int = field(default_factory=free_port)
    webhook_prefix: tuple[str, ...] = ()
    worker_prefix: tuple[str, ...] = ()
    webhook_host: str = "127.0.0.1"  # where the webhook listens (the sandbox POSTs there)
    worker_http_host: str = "127.0.0.1"
    sandbox_seen_as: str = "127.0.0.1"  # the sandbox's address as the webhook and worker reach it
    worker_env: dict[str, str] = field(default_factory=dict)
    webhook_env: dict[str, str] = field(default_factory=dict)
    #: The URL the sandbox POSTs updates to (default: the webhook's own address).
    webhook_public_url: str | None = None
    processes: dict[str, subprocess.Popen] = field(default_factory=dict)
    commands: dict[str, tuple[list[str], dict[str, str], tuple[str, ...]]] = field(default_factory=dict)

    @property
    def sandbox_url(self) -> str:
        return f"http://127.0.0.1:{self.sandbox_port}"

    def env(self, **extra: str) -> dict[str, str]:
        settings = {"DATABASE_URL": self.database_url, "CELERY_BROKER_URL": self.redis_url,
                    "SEND_LIMITS_REDIS_URL": self.redis_url, "SANDBOX_HOST": self.sandbox_seen_as,
                    "SANDBOX_PORT": str(self.sandbox_port), "TELEGRAM_WEBHOOK_SECRET": SECRET,
                    # A task left unacknowledged (its worker lost Redis) comes back after 1 + 20 s.
                    "VOICE_MAX_SECONDS": "1", "CELERY_VISIBILITY_MARGIN_SECONDS": "20",
                    "CELERY_WORKER_CONCURRENCY": "4", "DJANGO_SETTINGS_MODULE": "supportbot.web.settings"}
        return environment(self.folder / "data", **{**settings, **extra})

    def log(self, name: str) -> str:
        path = self.folder / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def logs(self) -> str:
        return "\n".join(f"--- {name}.log (end) ---\n{self.log(name)[-2500:]}" for name in self.processes)

    def _start(self, name: str, args: list[str], env: dict[str, str], prefix: tuple[str, ...] = ()) -> None:
        self.commands[name] = (args, env, prefix)
        out = (self.folder / f"{name}.log").open("ab")
        self.processes[name] = subprocess.Popen([*prefix, SUPPORTBOT, *args], env=env, stdout=out,
                                                stderr=subprocess.STDOUT)

    async def start(self, timeout: float = 240) -> None:
        from .processes import run, wait_healthy

        self.folder.mkdir(parents=True, exist_ok=True)
        await run(SUPPORTBOT, "migrate", env=self.env())
        await run(SUPPORTBOT, "import-faq", str(SAMPLE_FAQ), env={**self.env(), "CELERY_BROKER_URL": ""})
        self._start("sandbox", ["sandbox"], self.env(SANDBOX_HOST="127.0.0.1"))
        self._start("webhook", ["webhook", "--sandbox"],
                    self.env(WEBHOOK_HOST=self.webhook_host, WEBHOOK_PORT=str(self.webhook_port), **self.webhook_env),
                    self.webhook_prefix)
        self._start("worker", ["worker", "--lazy-models"],
                    self.env(WORKER_HTTP_HOST=self.worker_http_host, WORKER_HTTP_PORT=str(self.worker_port),
                             **self.worker_env), self.worker_prefix)
        try:
            await wait_healthy(f"http://{self.webhook_host}:{self.webhook_port}/healthz", timeout=timeout)
            await wait_healthy(f"http://{self.worker_http_host}:{self.worker_port}/healthz", timeout=timeout)
            url = self.webhook_public_url or f"http://{self.webhook_host}:{self.webhook_port}/telegram/webhook"
            await run(SUPPORTBOT, "set-webhook", url, "--sandbox", env=self.env(SANDBOX_HOST="127.0.0.1"))
        except BaseException:
            print(self.logs())
            raise

    def restart(self, name: str) -> None:
        """Start an exited process again with its command, as compose's ``restart: unless-stopped``
        (or systemd's ``Restart=always``) does."""
        self._start(name, *self.commands[name])

    def start_process(self, name: str, args: list[str], env: dict[str, str], prefix: tuple[str, ...] = ()) -> None:
        """One more supportbot process beside the stack (a second worker...), stopped with it."""
        self._start(name, args, env, prefix)

    def stop(self) -> None:
        for proc in self.processes.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.processes.values():
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


# -- the customers ---------------------------------------------------------------------------------
@dataclass
class Counts:
    sent: int = 0
    answered: int = 0  # customers with at least one answer
    duplicated: int = 0  # answers beyond the first
    lost: int = 0
    seconds_to_last_answer: float = 0.0

    def line(self) -> str:
        return (f"{self.sent} questions sent, {self.answered} answered, {self.lost} lost, "
                f"{self.duplicated} duplicated; the last answer {self.seconds_to_last_answer:.1f} s after "
                "the first question")


class Customers:
    """Customers ``first``, ``first + 1``... each asking one FAQ question, through the sandbox."""

    def __init__(self, api, first: int) -> None:
        self.api, self.first = api, first
        self.asked: list[int] = []
        self.started = 0.0

    async def ask(self, count: int, *, rate: float, during: Callable[[int], object] | None = None) -> None:
        """Ask ``count`` questions at ``rate`` per second; ``during(i)`` before the i-th (may be a
        coroutine: awaited in its own task, so the load goes on)."""
        self.started = self.started or time.monotonic()
        side: list[asyncio.Task] = []
        for i in range(count):
            if during is not None:
                result = during(i)
                if asyncio.iscoroutine(result):
                    side.append(asyncio.create_task(result))
            user = self.first + len(self.asked)
            text, language = QUESTIONS[len(self.asked) % len(QUESTIONS)]
            await self.api.send_text(user, text, language_code=language)
            self.asked.append(user)
            await asyncio.sleep(1 / rate)
        for task in side:
            await task

    async def counts(self) -> Counts:
        counts = Counts(sent=len(self.asked))
        for user in self.asked:
            n = len([m for m in await self.api.bot_messages(user) if not m["deleted"]])
            counts.answered += n > 0
            counts.duplicated += max(0, n - 1)
        counts.lost = counts.sent - counts.answered
        return counts

    async def wait_answered(self, timeout: float) -> Counts:
        """Wait until every customer has an answer (or ``timeout``), then a moment for duplicates."""
        deadline = time.monotonic() + timeout
        while True:
            counts = await self.counts()
            if counts.answered == counts.sent or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.5)
        counts.seconds_to_last_answer = time.monotonic() - self.started
        await asyncio.sleep(1.5)  # a duplicate would come right after
        late = await self.counts()
        late.seconds_to_last_answer = counts.seconds_to_last_answer
        return late


async def metric(url: str, name: str) -> float:
    """The sum of one metric's samples at a /metrics URL."""
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http, http.get(url) as response:
        text = await response.text()
    return sum(float(line.rpartition(" ")[2]) for line in text.splitlines()
               if line.startswith((name + "{", name + " ")))
