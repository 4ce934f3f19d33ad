"""Telegram's send limits, enforced by the sandbox when asked to (off by default).

With limits on, a request to a sending method (``sendMessage``, ``editMessageText``,
``sendVoice``, ...) over one of the limits is answered the way Telegram answers it::

    429 {"ok": false, "error_code": 429, "description": "Too Many Requests: retry after N",
         "parameters": {"retry_after": N}}

and nothing is delivered. Each limit is a token bucket: on average at most
``bot_per_second`` sends a second by the bot (up to that many at once), ``chat_per_second``
to one private chat (one at a time) and ``group_per_minute`` to one group (negative chat id;
up to that many at once). Each allows :data:`JITTER` seconds on top: requests the bot spaced
exactly may arrive a little closer together (a busy event loop, the network), and Telegram's
limits are not that exact either. This is an implementation of its own, apart from the bot's
pacing (``supportbot.bot.limits``), so a test that the bot sees no 429 checks one against the
other.

Switched on by ``SANDBOX_ENFORCE_LIMITS=1``, ``supportbot sandbox --limits`` or, in tests,
the control API: ``PUT /sandbox/api/limits`` with a JSON object of the fields below
(``enabled``, the three limits; each optional), ``GET`` for the settings and counts,
``DELETE`` to switch them off and forget the counts.
"""

from __future__ import annotations

import math
import time
from collections import Counter
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
#: Seconds a send may come early (jitter between the bot's pacing and the arrival here).
JITTER = 0.2
LIMIT_FIELDS = ("enabled", "bot_per_second", "chat_per_second", "group_per_minute")
_MAX_RATE = {"bot_per_second": 10_000.0, "chat_per_second": 1_000.0, "group_per_minute": 60_000.0}


class LimitsError(ValueError):
    """Limits that cannot be set as asked (the message says why)."""


@dataclass
class _Bucket:
    """``rate`` sends per ``period`` on average, ``burst`` of them at once (a token bucket,
    kept as the time its next send is "due", GCRA-style), with :data:`JITTER` to spare."""

    rate: float
    period: float
    burst: int

    def wait(self, due: float | None, now: float) -> tuple[float, float]:
        """(seconds until one more send fits, 0: now; the new due time if it is sent now)."""
        every = self.period / self.rate
        due = now if due is None else max(due, now)
        early = due - now - ((self.burst - 1) * every + JITTER)
        return max(early, 0.0), due + every


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
    _bot_due: float | None = None
    _chat_due: dict[int, float] = field(default_factory=dict)

    def check(self, method: str, chat_id: int | None) -> int | None:
        """Count a request; the ``retry_after`` to answer when it is over a limit, else None."""
        if not self.enabled or method.lower() not in SENDING_METHODS:
            return None
        now = self.clock()
        wait, bot_due = _Bucket(self.bot_per_second, 1.0, max(1, math.floor(self.bot_per_second))).wait(
            self._bot_due, now)
        chat_due = None
        if chat_id is not None:
            chat = (_Bucket(self.group_per_minute, 60.0, max(1, math.floor(self.group_per_minute))) if chat_id < 0
                    else _Bucket(self.chat_per_second, 1.0, 1))
            chat_wait, chat_due = chat.wait(self._chat_due.get(chat_id), now)
            wait = max(wait, chat_wait)
        if wait > 0:
            self.refused += 1
            if chat_id is not None:
                self.refused_by_chat[chat_id] += 1
            return max(1, math.ceil(wait))
        self._bot_due = bot_due
        if chat_id is not None and chat_due is not None:
            self._chat_due[chat_id] = chat_due
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
        self._bot_due = None
        self._chat_due.clear()

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
        for chat_id in [c for c, due in self._chat_due.items() if due < now]:
            del self._chat_due[chat_id]


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
