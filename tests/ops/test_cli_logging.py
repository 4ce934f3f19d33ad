"""The CLI sets up logging once, the same way every time it runs (tests run it in-process, many
times): one handler, on the stderr of the moment, never one left on a test's closed stream."""

from __future__ import annotations

import io
import logging
import sys

from supportbot.cli import main
from supportbot.config import get_settings
from supportbot.logs import StderrHandler

TOKEN = "123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw"


def test_no_handler_is_left_on_a_closed_stream(transactional_db, monkeypatch, capsys):
    """What a test that runs the CLI with captured output leaves behind: its stream is closed
    when it ends, and a later record must still be written, not raise "I/O operation on closed file"."""
    test_stderr = io.StringIO()
    with monkeypatch.context() as patch:
        patch.setattr(sys, "stderr", test_stderr)
        assert main(["ask"]) == 2  # no question: usage text, exit 2
        assert main(["ask"]) == 2  # and again: still one handler
    test_stderr.close()

    logging.getLogger("supportbot.test").warning("logged after that stream was closed")
    err = capsys.readouterr().err
    assert "logged after that stream was closed" in err
    assert "Logging error" not in err and "closed file" not in err
    root = logging.getLogger().handlers
    assert sum(isinstance(h, StderrHandler) for h in root) == 1
    assert not [h for h in root if getattr(getattr(h, "stream", None), "closed", False)]


def test_the_cli_redacts_the_configured_token(transactional_db, monkeypatch, capsys):
    monkeypatch.setenv("TELEGRAM_BOT_TOKEN", TOKEN)
    get_settings.cache_clear()
    try:
        assert main(["ask"]) == 2
    finally:
        monkeypatch.undo()
        get_settings.cache_clear()
    logging.getLogger("aiogram.dispatcher").error("Failed to fetch updates - for token %s", TOKEN)
    err = capsys.readouterr().err
    assert "Failed to fetch updates - for token 123456789:***" in err
    assert TOKEN.split(":")[1] not in err
