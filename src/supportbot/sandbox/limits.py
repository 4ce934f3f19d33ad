"""Telegram's send limits, enforced by the sandbox when asked to (off by default).

With limits on, a request to a sending method (``sendMessage``, ``editMessageText``,
``sendVoice``, ...) over one of the limits is answered the way Telegram answers it::

    429 {"ok": false, "error_code": 429, "description": "Too Many Requests: retry after N",
         "parameters": {"retry_after": N}}

and nothing is delivered. The limits are counted as Telegram describes them, in sliding
windows: at most ``bot_per_second`` sends a second by the bot, ``chat_per_second`` to one
private chat and ``group_per_minute`` to one group (negative chat id). This is a separate
implementation from the bot's pacing (``supportbot.bot.limits``), so a test that the bot
sees no 429 checks one against the other. Each window is :data:`JITTER` seconds shorter
than its nominal length: requests spaced exactly one second apart by the bot may arrive a
little closer together, and Telegram's limits are not that exact either.

Switched on by ``SANDBOX_ENFORCE_LIMITS=1``, ``supportbot sandbox --limits`` or, in tests,
the control API: ``PUT /sandbox/api/limits`` with a JSON object of the fields below
(``enabled``, the three limits; each optional), ``GET`` for the settings and counts,
``DELETE`` to switch them off and forget the counts.
"""

from __future__ import annotations

import math
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

__all__ = ["JITTER", "LIMIT_FIELDS", "SENDING_METHODS", "LimitsApi", "LimitsError", "SendLimits"]

#: Bot API methods that put something into a chat (lower case: Telegram ignores the case).
SENDING_METHODS = frozenset(name.lower() for name in (
    "sendMessage", "editMessageText", "editMessageCaption", "editMessageMedia", "editMessageReplyMarkup",
    "sendPhoto", "sendAudio", "sendDocument", "sendVideo", "sendAnimation", "sendVoice", "sendVideoNote",
    "sendMediaGroup", "sendLocation", "sendVenue", "sendContact", "sendPoll", "sendDice", "sendSticker",
    "copyMessage", "copyMessages", "forwardMessage", "forwardMessages",
))
#: Seconds each window is shortened by (network jitter between the bot's clock and ours).
JITTER = 0.1
LIMIT_FIELDS = ("enabled", "bot_per_second", "chat_per_second", "group_per_minute")
_MAX_RATE = {"bot_per_second": 10_000.0, "chat_per_second": 1_000.0, "group_per_minute": 60_000.0}


class LimitsError(ValueError):
    """Limits that cannot be set as asked (the message says why)."""


@dataclass
class _Window:
    """At most ``count`` events in any ``span`` seconds."""

    count: int
    span: float

    @classmethod
    def of(cls, rate: float, period: float) -> _Window:
        # ``rate`` per ``period``: 30 a second: 30 in 1 s; 0.5 a second: 1 in 2 s; 20 a minute: 20 in 60 s.
        count = max(1, math.floor(rate))
        return cls(count, period * count / rate)

    def wait(self, times: deque[float], now: float) -> float:
        """Seconds until one more event fits (0: it fits now); forgets what fell out."""
        span = max(self.span - JITTER, 0.0)
        while times and times[0] <= now - span:
            times.popleft()
        if len(times) < self.count:
            return 0.0
        return times[len(times) - self.count] + span - now


@dataclass
class SendLimits:
    """The limits of one sandbox and what they let through."""

    enabled: bool = False
    bot_per_second: float = 30.0
    chat_per_second: float = 1.0
    group_per_minute: float = 20.0
    clock: Callable[[], float] = time.monotonic
    accepted: int = 0
    refused: int = 0
    refused_by_chat: Counter[int] = field(default_factory=Counter)
    #: When the first and the latest accepted send came (``clock``): a burst's rate, for benchmarks.
    first_accepted_at: float | None = None
    last_accepted_at: float | None = None
    _bot: deque[float] = field(default_factory=deque)
    _chats: dict[int, deque[float]] = field(default_factory=dict)

    def check(self, method: str, chat_id: int | None) -> int | None:
        """Count a request; the ``retry_after`` to answer when it is over a limit, else None."""
        if not self.enabled or method.lower() not in SENDING_METHODS:
            return None
        now = self.clock()
        bot = _Window.of(self.bot_per_second, 1.0)
        wait = bot.wait(self._bot, now)
        chat_times: deque[float] | None = None
        if chat_id is not None:
            chat = _Window.of(self.group_per_minute, 60.0) if chat_id < 0 else _Window.of(self.chat_per_second, 1.0)
            chat_times = self._chats.setdefault(chat_id, deque())
            wait = max(wait, chat.wait(chat_times, now))
        if wait > 0:
            self.refused += 1
            if chat_id is not None:
                self.refused_by_chat[chat_id] += 1
            return max(1, math.ceil(wait))
        self._bot.append(now)
        if chat_times is not None:
            chat_times.append(now)
        self.accepted += 1
        if self.first_accepted_at is None:
            self.first_accepted_at = now
        self.last_accepted_at = now
        if self.accepted % 1000 == 0:
            self._forget_idle_chats(now)
        return None

    def update(self, changes: dict[str, Any]) -> None:
        """Apply control-API input; raises :class:`LimitsError` naming what is wrong (nothing changes)."""
        unknown = sorted(set(changes) - set(LIMIT_FIELDS))
        if unknown:
            raise LimitsError(f"unknown field(s): {', '.join(unknown)}; limits have: {', '.join(LIMIT_FIELDS)}")
        checked: dict[str, Any] = {}
        for name, value in changes.items():
            if name == "enabled":
                if not isinstance(value, bool):
                    raise LimitsError(f"'enabled' must be true or false, got {value!r}")
            elif (isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value)
                  or not 0 < value <= _MAX_RATE[name]):
                raise LimitsError(f"'{name}' must be a number above 0 and at most {_MAX_RATE[name]:g}, got {value!r}")
            checked[name] = value
        for name, value in checked.items():
            setattr(self, name, float(value) if name != "enabled" else value)

    def reset(self) -> None:
        """Off, and everything counted forgotten."""
        self.enabled = False
        self.accepted = self.refused = 0
        self.refused_by_chat.clear()
        self.first_accepted_at = self.last_accepted_at = None
        self._bot.clear()
        self._chats.clear()

    def to_json(self) -> dict[str, Any]:
        return {
            "enabled": self.enabled,
            "bot_per_second": self.bot_per_second,
            "chat_per_second": self.chat_per_second,
            "group_per_minute": self.group_per_minute,
            "accepted": self.accepted,
            "refused": self.refused,
            "refused_by_chat": {str(chat): n for chat, n in self.refused_by_chat.items()},
            "accepted_seconds": self.accepted_seconds,
        }

    @property
    def accepted_seconds(self) -> float:
        """Seconds from the first accepted send to the latest (0 before two)."""
        if self.first_accepted_at is None or self.last_accepted_at is None:
            return 0.0
        return self.last_accepted_at - self.first_accepted_at

    def _forget_idle_chats(self, now: float) -> None:
        for chat_id in [c for c, times in self._chats.items() if not times or times[-1] < now - 60.0]:
            del self._chats[chat_id]


class LimitsApi:
    """``/sandbox/api/limits``: read, set and reset the limits (the control API's errors apply)."""

    def __init__(self, limits: SendLimits) -> None:
        self.limits = limits

    async def get(self, request: web.Request) -> web.Response:
        return web.json_response(self.limits.to_json())

    async def put(self, request: web.Request) -> web.Response:
        from supportbot.sandbox.control import ControlError

        try:
            body = await request.json()
        except ValueError:
            raise ControlError("request body must be valid JSON") from None
        if not isinstance(body, dict):
            raise ControlError("request body must be a JSON object of: " + ", ".join(LIMIT_FIELDS))
        try:
            self.limits.update(body)
        except LimitsError as exc:
            raise ControlError(str(exc)) from None
        return web.json_response(self.limits.to_json())

    async def delete(self, request: web.Request) -> web.Response:
        self.limits.reset()
        return web.json_response(self.limits.to_json())
