"""Injected failures: make Bot API calls fail the way Telegram and the network do.

A test (or a person at the control API) registers a fault for a method, or ``"*"`` for
every method, optionally for one chat; the next matching requests fail before the method
runs, so a faulted ``sendMessage`` stores nothing, exactly as when Telegram refuses it.
This is what lets the bot's delivery path be tested against flood control, a blocked
user, server errors, a request that never gets an answer and a dropped connection.

Kinds (``error``):

- ``"429"``: ``Too Many Requests: retry after N`` with ``parameters.retry_after`` N;
- ``"403"``: ``Forbidden: bot was blocked by the user``;
- ``"500"`` / ``"502"``: ``Internal Server Error`` / ``Bad Gateway``;
- ``"timeout"``: the request is held ``delay`` seconds (longer than aiogram's 60 s request
  timeout by default); then the connection is closed unanswered (``then="close"``, the
  default) or the method runs and answers late (``then="answer"``: Telegram did it, the
  client never heard). Closing the sandbox releases held requests at once;
- ``"disconnect"``: the connection is closed without an answer;
- ``"redirect"``: ``307`` back to the same URL for as long as the client follows it, so
  aiohttp gives up with ``TooManyRedirects`` whose message names the URL.

A fault hits ``count`` matching requests (default 1; ``None``, JSON ``null``, means until
cleared), then stays listed, inactive, with its ``hits``, until the faults are cleared.
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

__all__ = [
    "DEFAULT_DELAY",
    "DEFAULT_RETRY_AFTER",
    "ERROR_DESCRIPTIONS",
    "FAULT_FIELDS",
    "FAULT_KINDS",
    "Fault",
    "FaultError",
    "FaultRegistry",
]

FAULT_KINDS = ("429", "403", "500", "502", "timeout", "disconnect", "redirect")
FAULT_FIELDS = ("method", "error", "count", "chat_id", "retry_after", "delay", "then")
DEFAULT_RETRY_AFTER = 1
MAX_RETRY_AFTER = 86_400  # Telegram's flood waits can last hours, never days
DEFAULT_DELAY = 90.0  # longer than aiogram's default 60 s request timeout
MAX_DELAY = 3_600.0
_THEN = ("close", "answer")
_METHOD_RE = re.compile(r"^[A-Za-z][A-Za-z0-9]{0,63}$")

# What the bot reads for each HTTP error kind.
ERROR_DESCRIPTIONS = {
    "403": "Forbidden: bot was blocked by the user",
    "500": "Internal Server Error",
    "502": "Bad Gateway",
}


class FaultError(ValueError):
    """A fault that cannot be injected as described (the message says why)."""


@dataclass
class Fault:
    """One injected failure and how often it has struck."""

    id: int
    method: str  # a Bot API method name as given, or "*"
    error: str  # one of FAULT_KINDS
    count: int | None  # requests to hit; None: until cleared
    chat_id: int | None = None  # only requests for this chat; None: any request
    retry_after: int | None = None  # "429" only
    delay: float | None = None  # "timeout" only
    then: str | None = None  # "timeout" only: "close" or "answer"
    hits: int = 0

    @property
    def remaining(self) -> int | None:
        return None if self.count is None else self.count - self.hits

    @property
    def active(self) -> bool:
        return self.count is None or self.hits < self.count

    def matches(self, method: str, chat_id: int | None) -> bool:
        if self.method != "*" and self.method.lower() != method.lower():
            return False
        return self.chat_id is None or self.chat_id == chat_id

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "method": self.method,
            "error": self.error,
            "count": self.count,
            "chat_id": self.chat_id,
            "retry_after": self.retry_after,
            "delay": self.delay,
            "then": self.then,
            "hits": self.hits,
            "remaining": self.remaining,
            "active": self.active,
        }


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


class FaultRegistry:
    """The faults of one sandbox, checked in the order they were added.

    ``known_methods`` (lower-case names, set by ``create_app``) lets ``add`` refuse a
    misspelt method that would otherwise never hit.
    """

    def __init__(self) -> None:
        self._faults: list[Fault] = []
        self._ids = itertools.count(1)
        self.known_methods: frozenset[str] | None = None

    def __iter__(self) -> Iterator[Fault]:
        return iter(list(self._faults))

    def __len__(self) -> int:
        return len(self._faults)

    def add(
        self,
        *,
        method: Any,
        error: Any,
        count: Any = 1,
        chat_id: Any = None,
        retry_after: Any = None,
        delay: Any = None,
        then: Any = None,
    ) -> Fault:
        """Register a fault; raises ``FaultError`` with a readable reason for bad input."""
        fault = Fault(
            id=0,
            method=self._method(method),
            error=_error(error),
            count=_count(count),
            chat_id=_chat_id(chat_id),
        )
        if fault.error == "429":
            fault.retry_after = _retry_after(retry_after)
        elif retry_after is not None:
            raise FaultError("'retry_after' applies only to error '429'")
        if fault.error == "timeout":
            fault.delay = _delay(delay)
            fault.then = _then(then)
        elif delay is not None or then is not None:
            raise FaultError("'delay' and 'then' apply only to error 'timeout'")
        fault.id = next(self._ids)
        self._faults.append(fault)
        return fault

    def clear(self) -> int:
        """Forget every fault; returns how many there were."""
        cleared = len(self._faults)
        self._faults.clear()
        return cleared

    def get(self, fault_id: int) -> Fault | None:
        return next((f for f in self._faults if f.id == fault_id), None)

    def strike(self, method: str, chat_id: int | None) -> Fault | None:
        """The first active fault for this request, its hit counted; None: answer normally."""
        for fault in self._faults:
            if fault.active and fault.matches(method, chat_id):
                fault.hits += 1
                return fault
        return None

    def to_json(self) -> list[dict[str, Any]]:
        return [fault.to_json() for fault in self._faults]

    def _method(self, method: Any) -> str:
        if not isinstance(method, str):
            raise FaultError("'method' must be a string: a Bot API method name or '*'")
        if method == "*":
            return method
        if not _METHOD_RE.match(method):
            raise FaultError(f"'method' must be a Bot API method name or '*', got {method!r}")
        if self.known_methods is not None and method.lower() not in self.known_methods:
            raise FaultError(f"the sandbox does not implement the Bot API method {method!r}")
        return method


def _error(error: Any) -> str:
    kind = str(error) if _is_int(error) else error
    if kind not in FAULT_KINDS:
        raise FaultError(f"'error' must be one of: {', '.join(FAULT_KINDS)}; got {error!r}")
    return str(kind)


def _count(count: Any) -> int | None:
    if count is None:
        return None
    if not _is_int(count) or count < 1:
        raise FaultError(
            f"'count' must be a positive integer (or null: until cleared), got {count!r}"
        )
    return int(count)


def _chat_id(chat_id: Any) -> int | None:
    if chat_id is not None and not _is_int(chat_id):
        raise FaultError(f"'chat_id' must be an integer, got {chat_id!r}")
    return chat_id


def _retry_after(retry_after: Any) -> int:
    if retry_after is None:
        return DEFAULT_RETRY_AFTER
    if not _is_int(retry_after) or not 1 <= retry_after <= MAX_RETRY_AFTER:
        raise FaultError(
            f"'retry_after' must be whole seconds from 1 to {MAX_RETRY_AFTER}, got {retry_after!r}"
        )
    return int(retry_after)


def _delay(delay: Any) -> float:
    if delay is None:
        return DEFAULT_DELAY
    valid = isinstance(delay, int | float) and not isinstance(delay, bool)
    if not valid or not math.isfinite(delay) or not 0 < delay <= MAX_DELAY:
        raise FaultError(
            f"'delay' must be seconds above 0 and at most {MAX_DELAY:g}, got {delay!r}"
        )
    return float(delay)


def _then(then: Any) -> str:
    if then is None:
        return "close"
    if then not in _THEN:
        raise FaultError(f"'then' must be one of: {', '.join(_THEN)}; got {then!r}")
    return str(then)
