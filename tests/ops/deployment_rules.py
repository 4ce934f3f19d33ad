"""What compose.yaml must hold beyond the compose-spec schema (tests/ops/test_compose_file.py):
the rules of this project's deployment, as functions a broken file can be run through.

``problems(compose)`` takes the file as YAML loads it (before variable interpolation) and
returns one sentence per broken rule; an empty list means the file keeps them all.
"""

from __future__ import annotations

import re
from typing import Any

#: Services that must exist, and the database and broker that must stay off the host's ports.
REQUIRED_SERVICES = ("web", "bot", "worker", "db", "redis")
PRIVATE_SERVICES = ("db", "redis")

#: Variable names whose values are secrets: they may only come from .env (``${NAME}``).
_SECRET_NAME = re.compile(r"(PASSWORD|SECRET|TOKEN|API_KEY|_KEY$|PASSWD)", re.IGNORECASE)
#: A value that is a reference to a variable and nothing else: ${NAME}, ${NAME:?msg}, ${NAME:-}.
_ONLY_A_VARIABLE = re.compile(r"^\$\{[A-Za-z_][A-Za-z0-9_]*(:?[-?][^}]*)?\}$")
#: A password in a URL that is written out, not a ${...} reference: scheme://user:secret@host.
_URL_PASSWORD = re.compile(r"://[^:/@\s]+:(?P<password>[^@\s]+)@")
#: Values that are not secrets even under a secret-looking name.
_HARMLESS = {"yes", "no", "true", "false", "0", "1", ""}


def _environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):  # ["NAME=value", "NAME"]
        pairs = (item.split("=", 1) if "=" in item else (item, "") for item in env)
        return {name: value for name, value in pairs}
    return {str(name): "" if value is None else str(value) for name, value in env.items()}


def secret_literals(compose: dict[str, Any]) -> list[str]:
    found = []
    for name, service in (compose.get("services") or {}).items():
        for key, value in _environment(service).items():
            if _SECRET_NAME.search(key) and value.lower() not in _HARMLESS and not _ONLY_A_VARIABLE.match(value):
                found.append(f"service {name}: {key} is written in the file; take it from .env as ${{{key}}}")
            match = _URL_PASSWORD.search(value)
            if match and not _ONLY_A_VARIABLE.match(match["password"]):
                found.append(f"service {name}: {key} has a password written in its URL; use ${{...}} from .env")
    return found


def problems(compose: dict[str, Any]) -> list[str]:
    services: dict[str, Any] = compose.get("services") or {}
    found = [f"no service {name!r}" for name in REQUIRED_SERVICES if name not in services]
    for name, service in services.items():
        one_shot = str(service.get("restart", "")) == "no"
        check = service.get("healthcheck") or {}
        if not one_shot and (not check.get("test") or check.get("disable")):
            found.append(f"service {name}: no health check")
        if name in PRIVATE_SERVICES and service.get("ports"):
            found.append(f"service {name}: publishes ports {service['ports']} to the host; keep it on the "
                         "compose network only")
        command = service.get("command") or []
        text = " ".join(command) if isinstance(command, list) else str(command)
        if "runserver" in text:
            found.append(f"service {name}: runs Django's runserver, which is not for production")
    for name in ("web", "bot", "worker"):
        check = (services.get(name) or {}).get("healthcheck") or {}
        if name in ("web", "bot") and "/healthz" not in " ".join(map(str, check.get("test") or [])):
            found.append(f"service {name}: its health check does not ask /healthz")
        mounts = [str(v).split(":", 1)[0] for v in (services.get(name) or {}).get("volumes") or []]
        for volume in ("data", "models"):
            if name in services and volume not in mounts:
                found.append(f"service {name}: the named volume {volume!r} is not mounted")
    for volume in ("data", "models"):
        if volume not in (compose.get("volumes") or {}):
            found.append(f"no named volume {volume!r}")
    return found + secret_literals(compose)
