"""compose_local: the interpolation compose does, and a service's command and environment."""

from __future__ import annotations

import pytest

from .compose_local import MissingVariable, interpolate, service_process


@pytest.mark.parametrize(("text", "expected"), [
    ("${A}", "a"), ("${UNSET}", ""), ("${UNSET:-x}", "x"), ("${EMPTY:-x}", "x"), ("${EMPTY-x}", ""),
    ("${A:-x}", "a"), ("pre-${A}-post", "pre-a-post"), ("$${A}", "${A}"), ("${A:?must}", "a"),
])
def test_interpolation_as_compose_does_it(text, expected):
    assert interpolate(text, {"A": "a", "EMPTY": ""}) == expected


@pytest.mark.parametrize("text", ["${UNSET:?set it in .env}", "${EMPTY:?set it}", "${UNSET?set it}"])
def test_a_required_variable_that_is_missing_stops_everything(text):
    with pytest.raises(MissingVariable, match="set it"):
        interpolate(text, {"EMPTY": ""})


def test_environment_overrides_env_file():
    compose = {"services": {"bot": {"command": ["supportbot", "${BOT_COMMAND:-webhook}"], "env_file": [".env"],
                                    "environment": {"LOG_FORMAT": "json", "URL": "x://u:${PW}@h"}}}}
    argv, env = service_process(compose, "bot", {"BOT_COMMAND": "bot", "LOG_FORMAT": "text", "PW": "p"})
    assert argv == ["supportbot", "bot"]
    assert env == {"BOT_COMMAND": "bot", "LOG_FORMAT": "json", "PW": "p", "URL": "x://u:p@h"}
