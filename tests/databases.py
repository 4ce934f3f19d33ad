"""Run the database-heavy tests against the production databases too (``make test``).

    .venv/bin/python tests/databases.py [URL ...]

Default URLs: PostgreSQL and MariaDB on this machine (127.0.0.1, default ports,
``TEST_POSTGRES_URL`` / ``TEST_MYSQL_URL`` override them). For each, the tests
below run with ``DATABASE_URL`` set; Django creates and drops its own ``test_*``
database there. A server that does not answer, or a missing driver, is skipped
with one line saying why, except under CI (``CI=true``), where it fails: CI
starts both servers (``.ci/run``).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from urllib.parse import urlsplit

TESTS = [
    "tests/bot/test_bot_conversation.py",
    "tests/support/test_operator_reply.py",
    "tests/bot/test_outbox_lease.py",
    "tests/bot/test_delivery_faults.py",
    "tests/knowledge/test_live_reindex.py",
    "tests/support/test_faq_import_export.py",
    "tests/knowledge/test_faq_index.py",
    "tests/support/test_admin_faq_tools.py",
    "tests/support/test_admin_llm_details.py",
    "tests/speech/test_voice_admin.py",
    "tests/llm/test_llm_bot.py",
    "tests/support/test_ticket_concurrency.py",
    "tests/support/test_customer_profile.py",
    "tests/bot/test_update_claims.py",
    "tests/bot/test_webhook.py",
    "tests/tasks/test_redelivered_update.py",
    "tests/tasks/test_worker_end_to_end.py",
    "tests/bot/test_group_desk.py",
    "tests/bot/test_group_desk_limits.py",
    "tests/bot/test_group_desk_records.py",
    # The operator desk: one operator wins a take (a conditional UPDATE), the queue's annotations,
    # resolve / reopen under the one-active-ticket constraint.
    "tests/support/test_desk_actions.py",
    "tests/support/test_desk_queue.py",
    "tests/conversation/test_aftercare.py",
    "tests/support/test_analytics.py",  # medians, rates and the heat map in each database's SQL
    # Last: it restarts the database server (the test's own connections are not in it).
    "tests/ops/test_faults_under_load.py",
]
DEFAULT_URLS = [
    os.environ.get("TEST_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432/postgres"),
    os.environ.get("TEST_MYSQL_URL", "mysql://root@127.0.0.1:3306/test"),
]


def reachable(url: str) -> str | None:
    """None when the server answers, else why not."""
    parts = urlsplit(url)
    try:
        if parts.scheme.startswith("postgres"):
            import psycopg

            psycopg.connect(host=parts.hostname, port=parts.port or 5432, user=parts.username,
                            password=parts.password or "", dbname=parts.path.lstrip("/"),
                            connect_timeout=3).close()
        elif parts.scheme == "mysql":
            import MySQLdb

            MySQLdb.connect(host=parts.hostname, port=parts.port or 3306, user=parts.username,
                            password=parts.password or "", database=parts.path.lstrip("/"),
                            connect_timeout=3).close()
        else:
            return f"unknown scheme {parts.scheme!r}"
    except ImportError as exc:
        return f"no driver ({exc.name}): pip install -e '.[postgres,mysql]'"
    except Exception as exc:  # noqa: BLE001 (any connection error: report it, do not crash)
        return str(exc).strip().splitlines()[0]
    return None


def main(urls: list[str]) -> int:
    strict = os.environ.get("CI", "").lower() in ("1", "true", "yes")
    failed = []
    for url in urls:
        shown = url.split("@")[-1]
        why = reachable(url)
        if why is not None:
            print(f"== {shown}: skipped, {why}")
            if strict:
                failed.append(shown)
            continue
        print(f"== {shown}: {len(TESTS)} test files", flush=True)
        started = time.monotonic()
        env = {**os.environ, "DATABASE_URL": url}
        done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *TESTS], env=env)
        print(f"== {shown}: {'passed' if done.returncode == 0 else 'FAILED'} in {time.monotonic() - started:.0f} s")
        if done.returncode != 0:
            failed.append(shown)
    if failed:
        print(f"== failed: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:] or DEFAULT_URLS))
