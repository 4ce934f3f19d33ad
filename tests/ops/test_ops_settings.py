"""The operations settings: defaults that keep `make run` as it was, and broken values refused
with the variable's name."""

from __future__ import annotations

import pytest

from supportbot.config import ConfigError, Settings, load_settings


def test_the_defaults_change_nothing_for_make_run():
    cfg = Settings(_env_file=None)
    assert (cfg.log_format, cfg.log_message_text, cfg.shutdown_grace_seconds) == ("text", False, 25.0)
    assert (cfg.bot_http_port, cfg.web_workers) == (0, 1)  # no extra port, one web process


@pytest.mark.parametrize(("name", "value", "message"), [
    ("LOG_FORMAT", "xml", "LOG_FORMAT: Input should be 'text' or 'json' (got 'xml')"),
    ("LOG_MESSAGE_TEXT", "maybe", "LOG_MESSAGE_TEXT: Input should be a valid boolean"),
    ("SHUTDOWN_GRACE_SECONDS", "-1", "SHUTDOWN_GRACE_SECONDS: Input should be greater than or equal to 0"),
    ("SHUTDOWN_GRACE_SECONDS", "soon", "SHUTDOWN_GRACE_SECONDS: Input should be a valid number"),
    ("BOT_HTTP_PORT", "70000", "BOT_HTTP_PORT: Input should be less than or equal to 65535"),
    ("WEB_WORKERS", "0", "WEB_WORKERS: Input should be greater than or equal to 1"),
])
def test_a_broken_value_names_its_variable(monkeypatch, name, value, message):
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError) as refused:
        load_settings()
    assert message in str(refused.value)
