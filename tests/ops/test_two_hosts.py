"""Two hosts: the webhook bot on one "host" and a Celery worker on another, each in a network
namespace of its own (``ip netns``, a veth pair each: 10.213.N.0/30), against one PostgreSQL (or
MariaDB) and one Redis: every customer's question, taken by the webhook on the first host, is
answered once by the worker on the second (their ``/metrics`` count both sides).

PostgreSQL, MariaDB and Redis listen on 127.0.0.1 only and stay as they are configured: a small
TCP relay in this test, on the host side of each veth, forwards to them (and to the sandbox Bot
API), as a database host's address would. The sandbox reaches the webhook through a relay on
127.0.0.1 (it takes plain-HTTP webhooks only there, as Telegram takes HTTPS only). The
namespaces are always removed (the fixture's finalizer). Skipped where ``ip netns`` is not
permitted (not root, no CAP_SYS_ADMIN, no ``ip``).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import subprocess
from collections.abc import AsyncIterator
from dataclasses import dataclass
from urllib.parse import urlsplit

import pytest

from supportbot.sandbox.client import SandboxClient

from .load_stack import QUESTIONS, PrivateRedis, Stack, metric, own_database
from .processes import free_port

pytestmark = [pytest.mark.slow, pytest.mark.timeout(420)]

CUSTOMERS = 16
QUESTIONS_EACH = 2


@dataclass
class Host:
    """A network namespace joined to this machine by a veth pair."""

    namespace: str
    host_ip: str  # this machine's end of the veth
    ip: str  # the namespace's end

    @property
    def prefix(self) -> tuple[str, ...]:
        return ("ip", "netns", "exec", self.namespace)


def _ip(*args: str) -> None:
    done = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30)
    if done.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {done.stderr.strip()}")


@pytest.fixture
def hosts():
    """Two namespaces, each with a veth pair to this machine; removed afterwards, always."""
    if shutil.which("ip") is None:
        pytest.skip("no `ip` command (Debian: iproute2): cannot make network namespaces")
    tag = os.getpid() % 10_000
    made: list[Host] = []
    try:
        for n in range(2):
            subnet = 4 * ((os.getpid() * 2 + n) % 60)  # 10.213.0.0 - 10.213.239.255, a /30 each
            host = Host(f"sb{tag}h{n}", f"10.213.{subnet}.1", f"10.213.{subnet}.2")
            try:
                _ip("netns", "add", host.namespace)
            except RuntimeError as exc:
                pytest.skip(f"`ip netns add` is not permitted here ({exc}): run as root to test two hosts")
            made.append(host)
            outside, inside = f"sb{tag}v{n}o", f"sb{tag}v{n}i"
            _ip("link", "add", outside, "type", "veth", "peer", "name", inside)
            _ip("link", "set", inside, "netns", host.namespace)
            _ip("addr", "add", f"{host.host_ip}/30", "dev", outside)
            _ip("link", "set", outside, "up")
            _ip("netns", "exec", host.namespace, "ip", "addr", "add", f"{host.ip}/30", "dev", inside)
            _ip("netns", "exec", host.namespace, "ip", "link", "set", inside, "up")
            _ip("netns", "exec", host.namespace, "ip", "link", "set", "lo", "up")
        yield made
    finally:
        for host in made:  # deleting a namespace deletes its end of the veth, and so the pair
            subprocess.run(["ip", "netns", "del", host.namespace], capture_output=True, timeout=30)


class Relay:
    """TCP from ``listen`` to ``target``, byte for byte, in this event loop."""

    def __init__(self) -> None:
        self.servers: list[asyncio.Server] = []
        self.connections = 0

    async def add(self, listen: tuple[str, int], target: tuple[str, int]) -> None:
        async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:
                while data := await reader.read(65536):
                    writer.write(data)
                    await writer.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                with contextlib.suppress(Exception):
                    writer.close()

        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            self.connections += 1
            try:
                up_reader, up_writer = await asyncio.open_connection(*target)
            except OSError:
                writer.close()
                return
            await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

        self.servers.append(await asyncio.start_server(handle, *listen))

    async def close(self) -> None:
        for server in self.servers:
            server.close()
        for server in self.servers:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(server.wait_closed(), 2)


@contextlib.asynccontextmanager
async def relays() -> AsyncIterator[Relay]:
    relay = Relay()
    try:
        yield relay
    finally:
        await relay.close()


def _server_url() -> str:
    """The database server the two hosts share: the run's (tests/databases.py), else PostgreSQL here."""
    url = os.environ.get("DATABASE_URL", "")
    if urlsplit(url).scheme.startswith(("postgres", "mysql")):
        return url
    return os.environ.get("TEST_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432/postgres")


def _seen_from(url: str, host: Host) -> str:
    """``url`` with its host replaced by the relay's address on ``host``'s veth."""
    parts = urlsplit(url)
    auth = parts.netloc.rpartition("@")[0]
    return parts._replace(netloc=f"{auth + '@' if auth else ''}{host.host_ip}:{parts.port}").geturl()


async def test_the_bot_and_a_worker_on_two_hosts_answer_each_question_once(hosts, tmp_path, monkeypatch):
    first, second = hosts
    server = _server_url()
    monkeypatch.setenv("DATABASE_URL", server)
    if urlsplit(server).port is None:
        server = urlsplit(server)._replace(netloc=urlsplit(server).netloc + (
            ":5432" if server.startswith("postgres") else ":3306")).geturl()
        monkeypatch.setenv("DATABASE_URL", server)
    try:
        own = own_database(tmp_path, f"sbtwohosts_{os.getpid()}")
        database = own.__enter__()
    except Exception as exc:  # noqa: BLE001 - no server to share: say so
        pytest.skip(f"two hosts share a database server, and none answers at {server.split('@')[-1]}: {exc}")
    redis = PrivateRedis(tmp_path / "redis")
    redis.start()
    stack = Stack(tmp_path / "stack", database, redis.url, webhook_host=first.ip, worker_http_host=second.ip,
                  webhook_prefix=first.prefix, worker_prefix=second.prefix)
    try:
        async with relays() as relay:
            db_port = urlsplit(database).port
            for host in hosts:  # the database, Redis and the sandbox, at each host's relay address
                for port in (db_port, redis.port, stack.sandbox_port):
                    await relay.add((host.host_ip, port), ("127.0.0.1", port))
            public = free_port()  # the sandbox posts to 127.0.0.1 (plain HTTP is taken there only)
            await relay.add(("127.0.0.1", public), (first.ip, stack.webhook_port))
            stack.webhook_public_url = f"http://127.0.0.1:{public}/telegram/webhook"

            def seen_from(host: Host) -> dict[str, str]:
                return {"DATABASE_URL": _seen_from(database, host), "CELERY_BROKER_URL": _seen_from(redis.url, host),
                        "SEND_LIMITS_REDIS_URL": _seen_from(redis.url, host), "SANDBOX_HOST": host.host_ip}

            stack.webhook_env = seen_from(first)
            stack.worker_env = seen_from(second)
            await stack.start()
            relayed_before = relay.connections

            async with SandboxClient(stack.sandbox_url) as api:
                users = [900_000 + i for i in range(CUSTOMERS)]
                for round_ in range(QUESTIONS_EACH):
                    for i, user in enumerate(users):
                        text, language = QUESTIONS[(i + round_ * 7) % len(QUESTIONS)]
                        await api.send_text(user, text, language_code=language)
                        await asyncio.sleep(0.05)
                loop = asyncio.get_running_loop()
                deadline = loop.time() + 90
                while True:
                    answers = {u: len([m for m in await api.bot_messages(u) if not m["deleted"]]) for u in users}
                    if all(n >= QUESTIONS_EACH for n in answers.values()) or loop.time() > deadline:
                        break
                    await asyncio.sleep(0.5)
                await asyncio.sleep(1.5)  # a duplicate would come right after
                answers = {u: len([m for m in await api.bot_messages(u) if not m["deleted"]]) for u in users}
            worker_tasks = await metric(f"http://{second.ip}:{stack.worker_port}/metrics", "supportbot_tasks_total")
            accepted = await metric(f"http://{first.ip}:{stack.webhook_port}/metrics", "supportbot_updates_total")
            sent = CUSTOMERS * QUESTIONS_EACH
            got = sum(min(n, QUESTIONS_EACH) for n in answers.values())
            doubled = sum(max(0, n - QUESTIONS_EACH) for n in answers.values())
            print(f"two hosts: {sent} questions from {CUSTOMERS} customers, {got} answered, {sent - got} lost, "
                  f"{doubled} duplicated; updates taken by the webhook on {first.ip}: {accepted:.0f}, tasks run by "
                  f"the worker on {second.ip}: {worker_tasks:.0f}; {relay.connections - relayed_before} "
                  "connections relayed")
            for name, proc in stack.processes.items():
                assert proc.poll() is None, f"{name} exited:\n{stack.logs()}"
            assert (got, doubled) == (sent, 0), f"{answers}\n{stack.logs()}"
            assert accepted >= sent and worker_tasks >= sent  # the first host took them, the second answered
    finally:
        stack.stop()
        redis.stop()
        own.__exit__(None, None, None)
