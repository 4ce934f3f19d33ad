"""The Bot API's error answer, shared by every layer of the sandbox that can refuse a call."""

from __future__ import annotations

__all__ = ["BotApiError", "bad_request"]


class BotApiError(Exception):
    """An error answered to the bot in the Bot API's ``{"ok": false, ...}`` format."""

    def __init__(self, code: int, description: str) -> None:
        super().__init__(description)
        self.code = code
        self.description = description


def bad_request(detail: str) -> BotApiError:
    return BotApiError(400, f"Bad Request: {detail}")
