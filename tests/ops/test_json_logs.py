"""``LOG_FORMAT=json``: one JSON object per line, ``extra=`` ids kept, secrets redacted as in text
logs; customers' texts stay out of the logs unless ``LOG_MESSAGE_TEXT`` is on."""

from __future__ import annotations

import json
import logging

import pytest

from supportbot.config import ConfigError, get_settings, load_settings
from supportbot.logs import configure_logging, message_text

TOKEN = "123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw"
URL = f"http://127.0.0.1:8081/bot{TOKEN}/getUpdates"


def _lines(err: str) -> list[dict]:
    return [json.loads(line) for line in err.splitlines() if line.strip()]


def test_each_record_is_one_json_object_with_its_ids(capsys):
    configure_logging(secrets=[TOKEN], log_format="json")
    logging.getLogger("supportbot.test").warning("ticket %s: send failed for %s", 7, URL,
                                                 extra={"ticket_id": 7, "update_id": 9001, "note": URL})
    [entry] = _lines(capsys.readouterr().err)
    assert entry["level"] == "WARNING"
    assert entry["logger"] == "supportbot.test"
    assert entry["message"] == "ticket 7: send failed for http://127.0.0.1:8081/bot123456789:***/getUpdates"
    assert entry["ticket_id"] == 7 and entry["update_id"] == 9001
    assert entry["note"].endswith("bot123456789:***/getUpdates")
    assert entry["time"].endswith("+00:00")
    assert TOKEN.split(":")[1] not in json.dumps(entry)


def test_a_traceback_is_one_redacted_field(capsys):
    configure_logging(secrets=[TOKEN], log_format="json")
    try:
        raise RuntimeError(f"cannot reach {URL}\nsecond line")
    except RuntimeError:
        logging.getLogger("aiogram.dispatcher").exception("polling failed")
    err = capsys.readouterr().err
    [entry] = _lines(err)  # a multi-line traceback is still one line of output
    assert entry["message"] == "polling failed"
    assert "Traceback" in entry["exception"] and "RuntimeError: cannot reach" in entry["exception"]
    assert TOKEN.split(":")[1] not in err


def test_switching_back_to_text_keeps_one_handler(capsys):
    configure_logging(log_format="json")
    configure_logging(log_format="text")
    logging.getLogger("supportbot.test").warning("plain again")
    err = capsys.readouterr().err
    assert err.count("plain again") == 1
    assert not err.lstrip().startswith("{")


def test_message_texts_are_left_out_unless_allowed():
    configure_logging(log_message_text=False)
    assert message_text("Мій пароль: hunter2") == "<19 characters>"
    configure_logging(log_message_text=True)
    assert message_text("Мій пароль: hunter2") == "'Мій пароль: hunter2'"
    configure_logging()
    assert message_text(None) == "<0 characters>"


def test_a_bad_log_format_names_the_setting(monkeypatch):
    monkeypatch.setenv("LOG_FORMAT", "xml")
    with pytest.raises(ConfigError, match="LOG_FORMAT"):
        load_settings()
    get_settings.cache_clear()
