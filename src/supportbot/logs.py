"""The process's one logging set-up, and the redaction that keeps secrets out of every log line.

The Bot API URL carries the bot token (``http://host/bot123456:SECRET/getUpdates``), and aiogram,
aiohttp and asyncio put that URL into their error messages and tracebacks ("Failed to fetch
updates - TelegramNetworkError: ... for http://.../bot123456:SECRET/getUpdates").

Redaction happens in a LogRecord factory, not in a handler or a filter: every record of every
logger, ours and third-party ones (aiogram, aiohttp, asyncio, Django, uvicorn), is made by
``Logger.makeRecord``, which calls the factory, whereas handlers are not one place: uvicorn puts
its own on its loggers when it starts, pytest adds its own, a library may add one at any time,
and a filter on a logger never sees the records that propagate to it. The factory formats the
message and the traceback once, eagerly, and redacts both; ``exc_info`` is dropped for the
redacted ``exc_text``, so no handler or formatter can render the raw traceback again. The one
handler set up here also has a redacting filter, for the rare record that is made without the
factory (``logging.makeLogRecord``) or carries ``extra=`` values (set after the factory ran).

The handler writes to whatever ``sys.stderr`` is when a record arrives, never to the stream that
was there at set-up: a test that runs the CLI in-process has a stderr that is closed when the
test ends, and a handler bound to it raised "ValueError: I/O operation on closed file" on every
later record (the "--- Logging error ---" blocks in the test log).
"""

from __future__ import annotations

import json
import logging
import re
import sys
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from urllib.parse import urlsplit

from pydantic import SecretStr

REDACTED = "***"

#: Shorter values are not treated as secrets: they are not secret enough to matter and would
#: redact ordinary words (README suggests ``OPENAI_API_KEY=local`` for a keyless local server).
MIN_SECRET_LENGTH = 8

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

#: Levels set here, besides the root's: per-update and per-query lines only at DEBUG.
QUIET_LOGGERS = {"aiogram.event": logging.WARNING, "django.db.backends": logging.WARNING}

_PATTERNS = (
    # A bot token in a Bot API URL: /bot123456:SECRET/ (also with the colon URL-encoded).
    (re.compile(r"(?<![A-Za-z])(bot\d+)(:|%3[Aa])[A-Za-z0-9_-]+"), rf"\1\2{REDACTED}"),
    # A bare token, as @BotFather gives it: digits, a colon and 30-odd letters, digits, - and _.
    (re.compile(r"(?<![\w-])(\d{5,}):[A-Za-z0-9_-]{30,}(?![\w-])"), rf"\1:{REDACTED}"),
    # A password in a URL: scheme://user:password@host (DATABASE_URL, proxies).
    (re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://[^\s/:@]*):[^\s/@]+@"), rf"\1:{REDACTED}@"),
)


class Redactor:
    """Replaces secrets in text: token-shaped and URL-password patterns, and known values."""

    def __init__(self) -> None:
        self._secrets: frozenset[str] = frozenset()
        self._known: re.Pattern[str] | None = None

    def add(self, secrets: Iterable[str | SecretStr | None]) -> None:
        """Known secrets are only ever added: a value that was a secret stays redacted."""
        values = set(self._secrets)
        for secret in secrets:
            value = secret.get_secret_value() if isinstance(secret, SecretStr) else secret
            value = (value or "").strip()
            bot_id, colon, secret_half = value.partition(":")
            # A bot token's secret half is a secret on its own (a URL-encoded or split token).
            for part in (value, secret_half if colon and bot_id.isdigit() else ""):
                if len(part) >= MIN_SECRET_LENGTH:
                    values.add(part)
        if values != self._secrets:
            # Longest first, so a token is replaced whole before its secret half is looked for.
            alternatives = "|".join(re.escape(v) for v in sorted(values, key=len, reverse=True))
            self._secrets, self._known = frozenset(values), re.compile(alternatives)

    def __call__(self, text: str) -> str:
        for pattern, replacement in _PATTERNS:
            text = pattern.sub(replacement, text)
        known = self._known  # one read: add() may swap it from another thread
        return known.sub(REDACTED, text) if known is not None else text


_TRACEBACKS = logging.Formatter()
#: A record's own attributes; any other string attribute came from ``extra=``.
_STANDARD_FIELDS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {
    "message", "asctime", "supportbot_redacted"}


def redact_record(record: logging.LogRecord, redact: Redactor) -> None:
    """Format the record's message, traceback and stack once, redacted, in place."""
    if getattr(record, "supportbot_redacted", False):
        return
    try:
        message = record.getMessage()
    except Exception:  # noqa: BLE001 - a bad format string: logging would print msg and args raw
        record.msg, record.args = redact(f"{record.msg!s} {record.args!r}"), None
    else:
        clean = redact(message)
        if clean != message:
            record.msg, record.args = _redacted_parts(record, redact, clean)
    if record.exc_info:
        if not record.exc_text:
            record.exc_text = _TRACEBACKS.formatException(record.exc_info)
        record.exc_info = None
    if record.exc_text:
        record.exc_text = redact(record.exc_text)
    if record.stack_info:
        record.stack_info = redact(record.stack_info)
    for key, value in vars(record).items():
        if key not in _STANDARD_FIELDS and isinstance(value, str):
            setattr(record, key, redact(value))  # extra= fields, when they are there
    record.supportbot_redacted = True



def _redacted_parts(record: logging.LogRecord, redact: Redactor, clean: str):
    """The format and its arguments, each redacted, where they still give the clean message
    (formatters such as uvicorn's access one read ``args``); else the clean message alone."""
    msg, args = record.msg, record.args
    if isinstance(msg, str) and isinstance(args, tuple | Mapping):
        msg = redact(msg)
        if isinstance(args, tuple):
            args = tuple(redact(a) if isinstance(a, str) else a for a in args)
        else:
            args = {k: redact(v) if isinstance(v, str) else v for k, v in args.items()}
        try:
            if (msg % args if args else msg) == clean:
                return msg, args
        except Exception:  # noqa: BLE001 - a redacted argument no longer fits its format
            pass
    return clean, None


class RedactingRecordFactory:
    """Wraps the record factory in place before it: every record is redacted as it is made."""

    def __init__(self, wrapped, redact: Redactor) -> None:
        self.wrapped = wrapped
        self.redact = redact

    def __call__(self, *args, **kwargs) -> logging.LogRecord:
        record = self.wrapped(*args, **kwargs)
        redact_record(record, self.redact)
        return record


class RedactingFilter(logging.Filter):
    """A handler's second line: records made without the factory, and ``extra=`` values."""

    def __init__(self, redact: Redactor) -> None:
        super().__init__()
        self.redact = redact

    def filter(self, record: logging.LogRecord) -> bool:
        record.supportbot_redacted = False  # extra= values arrive after the factory: look again
        redact_record(record, self.redact)
        return True


class StderrHandler(logging.StreamHandler):
    """Writes to the ``sys.stderr`` of the moment, not to the one there at set-up."""

    def __init__(self, level: int = logging.NOTSET) -> None:
        logging.Handler.__init__(self, level)  # StreamHandler's would keep a stream

    @property
    def stream(self):
        return sys.stderr


def _installed_factory() -> RedactingRecordFactory:
    factory = logging.getLogRecordFactory()
    if not isinstance(factory, RedactingRecordFactory):
        factory = RedactingRecordFactory(factory, Redactor())
        logging.setLogRecordFactory(factory)
    return factory


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ``time`` (UTC, ISO 8601), ``level``, ``logger``, ``message``,
    ``exception`` (the redacted traceback, when there is one) and every ``extra=`` field
    (``ticket_id``, ``update_id``...). The record was redacted when it was made; the values are
    redacted again here (``extra=`` fields arrive after the factory ran)."""

    def __init__(self, redact: Redactor) -> None:
        super().__init__()
        self.redact = redact

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": self.redact(record.getMessage()),
        }
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            entry["exception"] = self.redact(record.exc_text)
        if record.stack_info:
            entry["stack"] = self.redact(record.stack_info)
        for key, value in vars(record).items():
            if key not in _STANDARD_FIELDS and key not in entry and not key.startswith("_"):
                entry[key] = self.redact(value) if isinstance(value, str) else value
        return json.dumps(entry, ensure_ascii=False, default=lambda v: self.redact(str(v)))


class _MessageTextPolicy:
    """Whether customers' message texts may appear in log lines (``LOG_MESSAGE_TEXT``)."""

    allowed = False


def message_text(text: str | None) -> str:
    """What a log line may say about a customer's text: the text itself only with
    ``LOG_MESSAGE_TEXT=1`` (debugging); otherwise only its length."""
    if _MessageTextPolicy.allowed:
        return repr(text or "")
    return f"<{len(text or '')} characters>"


def redact_text(text: str) -> str:
    """``text`` with every known secret and token-shaped string replaced (health check errors)."""
    return _installed_factory().redact(text)


def configure_logging(*, verbose: bool = False, secrets: Iterable[str | SecretStr | None] = (),
                      level: int = logging.INFO, log_format: str = "text",
                      log_message_text: bool = False) -> None:
    """Set up logging for the process; safe to call again (tests run the CLI many times).

    ``level`` (INFO) and above from every logger to stderr (one-shot commands such as
    ``supportbot ask`` pass WARNING: their output is the answer); ``verbose`` shows INFO
    and adds supportbot's DEBUG lines. The
    ``secrets`` (see :func:`settings_secrets`) and anything shaped like a bot token or a URL
    password are replaced by ``***`` in every record of every logger. ``log_format``: ``text``
    or ``json`` (``LOG_FORMAT``, :class:`JsonFormatter`); ``log_message_text``: see
    :func:`message_text` (``LOG_MESSAGE_TEXT``).
    """
    redact = _installed_factory().redact
    redact.add(secrets)
    _MessageTextPolicy.allowed = log_message_text
    root = logging.getLogger()
    handler = next((h for h in root.handlers if isinstance(h, StderrHandler)), None)
    if handler is None:
        handler = StderrHandler()
        handler.addFilter(RedactingFilter(redact))
        root.addHandler(handler)
    handler.setFormatter(JsonFormatter(redact) if log_format == "json" else logging.Formatter(FORMAT))
    root.setLevel(min(level, logging.INFO) if verbose else level)
    logging.getLogger("supportbot").setLevel(logging.DEBUG if verbose else logging.NOTSET)
    for name, level in QUIET_LOGGERS.items():
        logging.getLogger(name).setLevel(level)


def settings_secrets(cfg) -> list[str]:
    """Every secret of the settings: each ``SecretStr`` (the bot token, the OpenAI key, Django's
    key; new ones too), and the password in ``DATABASE_URL``."""
    secrets = [value.get_secret_value() for name in type(cfg).model_fields
               if isinstance(value := getattr(cfg, name), SecretStr)]
    if cfg.database_url:
        secrets.append(urlsplit(cfg.database_url).password or "")
    return [s for s in secrets if s]
