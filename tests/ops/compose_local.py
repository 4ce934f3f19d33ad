"""compose.yaml's services as local processes: each service's ``command:`` and the environment
compose would give it (``env_file`` .env, then ``environment:``, with ``${...}`` interpolated),
for tests/ops/test_services_without_docker.py and for anyone running the product without Docker.
"""

from __future__ import annotations

import re
from typing import Any

_VARIABLE = re.compile(r"\$\$|\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}")


class MissingVariable(ValueError):
    """A ``${NAME:?message}`` whose variable is not set: compose refuses to start, and so do we."""


def interpolate(value: str, variables: dict[str, str]) -> str:
    """Compose's interpolation: ``${NAME}``, ``${NAME:-default}``, ``${NAME-default}``,
    ``${NAME:?error}``, ``${NAME?error}``, and ``$$`` for a literal ``$``."""

    def replace(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name, op, arg = match["name"], match["op"], match["arg"] or ""
        value = variables.get(name)
        unset = value is None or (op is not None and op.startswith(":") and value == "")
        if op in (":-", "-") and unset:
            return arg
        if op in (":?", "?") and unset:
            raise MissingVariable(f"{name}: {arg or 'required'}")
        return value or ""

    return _VARIABLE.sub(replace, value)


def _environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        return dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {str(k): "" if v is None else str(v) for k, v in env.items()}


def service_process(compose: dict[str, Any], name: str, dotenv: dict[str, str]) -> tuple[list[str], dict[str, str]]:
    """``(argv, environment)`` of service ``name``: what its container would run, with what."""
    service = compose["services"][name]
    command = service["command"]
    argv = [interpolate(part, dotenv) for part in (command if isinstance(command, list) else command.split())]
    env = dict(dotenv) if service.get("env_file") else {}
    env.update({key: interpolate(value, dotenv) for key, value in _environment(service).items()})
    return argv, env
