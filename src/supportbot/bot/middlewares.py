"""Per-update context: who the customer is and which language to speak."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from aiogram import BaseMiddleware
from aiogram.types import TelegramObject, User

from supportbot.i18n import gettext_for, pick_language
from supportbot.support.services import CustomerInfo


class CustomerContextMiddleware(BaseMiddleware):
    def __init__(self, default_language: str) -> None:
        self.default_language = default_language

    async def __call__(
        self,
        handler: Callable[[TelegramObject, dict[str, Any]], Awaitable[Any]],
        event: TelegramObject,
        data: dict[str, Any],
    ) -> Any:
        user: User | None = data.get("event_from_user")
        if user is None or user.is_bot:
            return None  # channel posts, other bots: nothing to support
        language = pick_language(user.language_code, self.default_language)
        data["customer"] = CustomerInfo(
            id=user.id,
            username=user.username or "",
            first_name=user.first_name or "",
            last_name=user.last_name or "",
            language_code=user.language_code or "",
        )
        data["language"] = language
        data["_"] = gettext_for(language)
        return await handler(event, data)
