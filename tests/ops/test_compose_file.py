"""compose.yaml (and compose.postgres.yaml laid over it) against the compose-spec JSON schema
(check-jsonschema's vendored copy) and this project's rules (``deployment_rules``); broken
copies of the file are refused, each for its reason."""

from __future__ import annotations

import copy
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from .deployment_rules import problems

ROOT = Path(__file__).resolve().parents[2]
CHECK_JSONSCHEMA = str(Path(sys.executable).with_name("check-jsonschema"))


def _schema_check(*files: Path) -> subprocess.CompletedProcess:
    return subprocess.run([CHECK_JSONSCHEMA, "--builtin-schema", "vendor.compose-spec", *map(str, files)],
                          capture_output=True, text=True, timeout=60)


def _load(name: str) -> dict:
    return yaml.safe_load((ROOT / name).read_text())


@pytest.fixture(scope="module")
def compose() -> dict:
    return _load("compose.yaml")


def test_both_files_match_the_compose_spec():
    result = _schema_check(ROOT / "compose.yaml", ROOT / "compose.postgres.yaml")
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_project_rules_hold(compose):
    assert problems(compose) == []


def test_the_services_run_the_product_commands(compose):
    services = compose["services"]
    assert services["web"]["command"] == ["supportbot", "web"]
    assert services["bot"]["command"] == ["supportbot", "${BOT_COMMAND:-webhook}"]
    assert services["worker"]["command"] == ["supportbot", "worker"]
    assert services["db"]["image"].startswith("mysql:8")
    assert "--character-set-server=utf8mb4" in services["db"]["command"]
    for name in ("web", "bot", "worker", "migrate"):
        assert services[name]["env_file"] == [".env"]
    assert services["bot"]["stop_grace_period"] == "30s"  # longer than SHUTDOWN_GRACE_SECONDS


def _lay_over(base: dict, override: dict) -> dict:
    """Compose's merge of ``-f compose.yaml -f compose.postgres.yaml``: mappings merge, lists
    replace, except volumes and ports, which add up."""
    merged = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _lay_over(merged[key], value)
        elif key in ("volumes", "ports") and isinstance(value, list):
            merged[key] = [*merged.get(key, []), *value]
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def test_the_postgres_file_swaps_the_database_only(compose):
    merged = _lay_over(compose, _load("compose.postgres.yaml"))
    assert problems(merged) == []
    db = merged["services"]["db"]
    assert db["image"].startswith("postgres:")
    assert db["healthcheck"]["test"][1] == "pg_isready"
    assert "postgres:/var/lib/postgresql/data" in db["volumes"]
    for name in ("migrate", "web", "bot", "worker"):
        assert merged["services"][name]["environment"]["DATABASE_URL"].startswith(
            "postgres://supportbot:${DB_PASSWORD:?")


# -- broken copies ------------------------------------------------------------------------------
def _broken(compose: dict, change) -> list[str]:
    copied = copy.deepcopy(compose)
    change(copied)
    return problems(copied)


def test_a_published_database_port_is_refused(compose):
    found = _broken(compose, lambda c: c["services"]["db"].update(ports=["3306:3306"]))
    assert found == ["service db: publishes ports ['3306:3306'] to the host; keep it on the compose network only"]


@pytest.mark.parametrize(("service", "key", "value"), [
    ("db", "MYSQL_PASSWORD", "hunter2hunter2"),
    ("bot", "TELEGRAM_BOT_TOKEN", "123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw"),
    ("web", "DJANGO_SECRET_KEY", "not-so-secret"),
])
def test_a_secret_written_into_the_file_is_refused(compose, service, key, value):
    found = _broken(compose, lambda c: c["services"][service]["environment"].update({key: value}))
    assert found == [f"service {service}: {key} is written in the file; take it from .env as ${{{key}}}"]


def test_a_password_written_into_a_url_is_refused(compose):
    found = _broken(compose, lambda c: c["services"]["worker"]["environment"].update(
        DATABASE_URL="mysql://supportbot:hunter2@db:3306/supportbot"))
    assert found == ["service worker: DATABASE_URL has a password written in its URL; use ${...} from .env"]


def test_a_service_without_a_health_check_is_refused(compose):
    found = _broken(compose, lambda c: c["services"]["worker"].pop("healthcheck"))
    assert found == ["service worker: no health check"]
    found = _broken(compose, lambda c: c["services"]["redis"].update(healthcheck={"disable": True}))
    assert found == ["service redis: no health check"]


def test_runserver_is_refused(compose):
    found = _broken(compose, lambda c: c["services"]["web"].update(
        command=["python", "-m", "django", "runserver", "0.0.0.0:8000"]))
    assert found == ["service web: runs Django's runserver, which is not for production"]


@pytest.mark.parametrize(("change", "message"), [
    (lambda c: c["services"]["bot"].update(stop_grace_perod="30s"), "'stop_grace_perod' was unexpected"),
    (lambda c: c["services"]["web"]["healthcheck"].update(test=5), "$.services.web.healthcheck.test"),
    (lambda c: c["services"]["worker"].update(depends_on="redis"), "$.services.worker.depends_on"),
], ids=["misspelt-key", "test-not-a-command", "depends-on-not-a-list"])
def test_the_schema_check_refuses_a_malformed_file(tmp_path, compose, change, message):
    broken = copy.deepcopy(compose)
    change(broken)
    path = tmp_path / "compose.yaml"
    path.write_text(yaml.safe_dump(broken))
    result = _schema_check(path)
    assert result.returncode == 1
    assert message in result.stdout
