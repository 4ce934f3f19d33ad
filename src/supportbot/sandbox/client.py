"""Async client for the sandbox control API: plays the customer in tests and scripts."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from types import TracebackType
from typing import Any

import aiohttp

logger = logging.getLogger(__name__)

__all__ = ["SandboxClient", "SandboxError"]

MessagePredicate = Callable[[dict[str, Any]], bool]

_POLL_INTERVAL = 0.02


class SandboxError(RuntimeError):
    """The control API refused a request (``{"error": ...}`` with a non-2xx status)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"sandbox control API error {status}: {message}")
        self.status = status
        self.message = message


def _user(
    first_name: str, language_code: str | None, username: str | None, last_name: str | None
) -> dict[str, Any]:
    user: dict[str, Any] = {"first_name": first_name}
    if language_code:
        user["language_code"] = language_code
    if username:
        user["username"] = username
    if last_name:
        user["last_name"] = last_name
    return user


def format_transcript(messages: list[dict[str, Any]]) -> str:
    """One line per message, for assertion and timeout messages."""
    lines = []
    for message in messages:
        flags = []
        if message.get("deleted"):
            flags.append("deleted")
        if message.get("edit_count"):
            flags.append(f"edited x{message['edit_count']}")
        suffix = f" ({', '.join(flags)})" if flags else ""
        text = message.get("text")
        body = text if text is not None else f"<{message.get('kind')}>"
        buttons = _button_summary(message.get("reply_markup"))
        lines.append(f"  #{message['message_id']} {message['from']}: {body!r}{buttons}{suffix}")
    return "\n".join(lines) if lines else "  (no messages)"


def _button_summary(markup: dict[str, Any] | None) -> str:
    if not markup or "inline_keyboard" not in markup:
        return ""
    labels = [
        f"{b.get('text')}={b.get('callback_data') or b.get('url')}"
        for row in markup["inline_keyboard"]
        for b in row
    ]
    return f" [{' | '.join(labels)}]"


class SandboxClient:
    """Talks to ``{base_url}/sandbox/api/``; use as ``async with SandboxClient(url) as c``."""

    def __init__(self, base_url: str, *, session: aiohttp.ClientSession | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self._session = session
        self._owns_session = session is None

    async def __aenter__(self) -> SandboxClient:
        self._ensure_session()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        if self._owns_session and self._session is not None and not self._session.closed:
            await self._session.close()
        self._session = None if self._owns_session else self._session

    def _ensure_session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession()
            self._owns_session = True
        return self._session

    async def _request(self, method: str, path: str, **kwargs: Any) -> Any:
        session = self._ensure_session()
        url = f"{self.base_url}/sandbox/api/{path.lstrip('/')}"
        async with session.request(method, url, **kwargs) as response:
            try:
                payload = await response.json(content_type=None)
            except (aiohttp.ContentTypeError, json.JSONDecodeError):
                payload = {"error": await response.text()}
            if response.status >= 400:
                message = payload.get("error") if isinstance(payload, dict) else None
                raise SandboxError(response.status, str(message or payload))
            return payload

    # -- customer actions -----------------------------------------------------------
    async def health(self) -> bool:
        payload = await self._request("GET", "health")
        return bool(payload.get("ok"))

    async def send_text(
        self,
        user_id: int,
        text: str,
        *,
        language_code: str | None = "en",
        first_name: str = "Test",
        username: str | None = None,
        last_name: str | None = None,
        reply_to_message_id: int | None = None,
    ) -> dict[str, Any]:
        """Send a text message; returns ``{"message": <Message>, "update_id": N}``."""
        body: dict[str, Any] = {
            "text": text,
            "user": _user(first_name, language_code, username, last_name),
        }
        if reply_to_message_id is not None:
            body["reply_to_message_id"] = reply_to_message_id
        return await self._post_message(user_id, json=body)

    async def send_kind(
        self,
        user_id: int,
        kind: str,
        *,
        language_code: str | None = "en",
        first_name: str = "Test",
        username: str | None = None,
        caption: str | None = None,
        **payload: Any,
    ) -> dict[str, Any]:
        """Send a non-text message described in JSON, e.g. ``send_kind(1, "sticker", emoji="👍")``.

        Kinds: sticker, photo, document, location, voice, audio, video_note (media sent
        this way get placeholder bytes; use :meth:`send_file` for real content).
        """
        body: dict[str, Any] = {
            kind: payload,
            "user": _user(first_name, language_code, username, None),
        }
        if caption is not None:
            body["caption"] = caption
        return await self._post_message(user_id, json=body)

    async def send_file(
        self,
        user_id: int,
        kind: str,
        data: bytes,
        *,
        duration: int = 1,
        mime_type: str | None = None,
        language_code: str | None = "en",
        first_name: str = "Test",
        username: str | None = None,
        file_name: str | None = None,
        caption: str | None = None,
    ) -> dict[str, Any]:
        """Upload real bytes as voice/audio/video_note/document/photo."""
        form = aiohttp.FormData()
        form.add_field("kind", kind)
        form.add_field("duration", str(duration))
        if mime_type:
            form.add_field("mime_type", mime_type)
        if caption is not None:
            form.add_field("caption", caption)
        form.add_field("user", json.dumps(_user(first_name, language_code, username, None)))
        form.add_field(
            "file",
            data,
            filename=file_name or kind,
            content_type=mime_type or "application/octet-stream",
        )
        return await self._post_message(user_id, data=form)

    async def _post_message(self, user_id: int, **kwargs: Any) -> dict[str, Any]:
        result: dict[str, Any] = await self._request("POST", f"chats/{user_id}/messages", **kwargs)
        return result

    async def press(self, user_id: int, message_id: int, data: str) -> str:
        """Press an inline button (or forge its data); returns the callback query id."""
        payload = await self._request(
            "POST", f"chats/{user_id}/callback", json={"message_id": message_id, "data": data}
        )
        return str(payload["callback_query_id"])

    async def block(self, user_id: int, blocked: bool = True) -> dict[str, Any]:
        result: dict[str, Any] = await self._request(
            "POST", f"chats/{user_id}/block", json={"blocked": blocked}
        )
        return result

    # -- making the Bot API fail (see supportbot.sandbox.faults) ------------------------
    async def inject_fault(
        self,
        method: str,
        error: str | int,
        *,
        count: int | None = 1,
        chat_id: int | None = None,
        retry_after: int | None = None,
        delay: float | None = None,
        then: str | None = None,
    ) -> dict[str, Any]:
        """Make the next ``count`` calls of ``method`` (``"*"``: any method) fail.

        ``count=None``: until cleared. ``error``: 429, 403, 500, 502, "timeout",
        "disconnect" or "redirect". Returns the fault as listed by :meth:`faults`.
        """
        body: dict[str, Any] = {"method": method, "error": error, "count": count}
        optional = {"chat_id": chat_id, "retry_after": retry_after, "delay": delay, "then": then}
        body.update({key: value for key, value in optional.items() if value is not None})
        payload = await self._request("POST", "faults", json=body)
        return dict(payload["fault"])

    async def faults(self) -> list[dict[str, Any]]:
        """Every fault injected since the last clear, with its ``hits`` and ``active`` flag."""
        payload = await self._request("GET", "faults")
        return list(payload["faults"])

    async def clear_faults(self) -> int:
        """Remove every fault; returns how many there were."""
        payload = await self._request("DELETE", "faults")
        return int(payload["cleared"])

    async def request_counts(self) -> dict[str, Any]:
        """Bot API requests received: ``{"methods": {name: n}, "chats": {chat_id: {name: n}}}``."""
        result: dict[str, Any] = await self._request("GET", "requests")
        return result

    async def clear_request_counts(self) -> None:
        await self._request("DELETE", "requests")

    async def set_limits(self, **fields: Any) -> dict[str, Any]:
        """Telegram's send limits (``enabled``, ``bot_per_second``, ``chat_per_second``,
        ``group_per_minute``; see ``limits.py``); returns the settings and counts."""
        result: dict[str, Any] = await self._request("PUT", "limits", json=fields)
        return result

    async def limits(self) -> dict[str, Any]:
        """The limits and what they let through (``accepted``, ``refused``, ``refused_by_chat``)."""
        result: dict[str, Any] = await self._request("GET", "limits")
        return result

    async def clear_limits(self) -> None:
        """Limits off, counts forgotten."""
        await self._request("DELETE", "limits")

    # -- forum groups (the operators' group desk; see supportbot.sandbox.forum) ----------
    async def create_group(self, title: str, *, chat_id: int | None = None, is_forum: bool = True,
                           bot_can_manage_topics: bool = True) -> dict[str, Any]:
        """A supergroup with the bot as administrator; returns ``{"chat": {...}, "topics": [...]}``."""
        body: dict[str, Any] = {"title": title, "is_forum": is_forum, "bot_can_manage_topics": bot_can_manage_topics}
        if chat_id is not None:
            body["chat_id"] = chat_id
        result: dict[str, Any] = await self._request("POST", "groups", json=body)
        return result

    async def topics(self, chat_id: int) -> list[dict[str, Any]]:
        """The group's topics: ``message_thread_id``, ``name``, ``closed``, ``deleted``..."""
        payload = await self._request("GET", f"groups/{chat_id}/topics")
        return list(payload["topics"])

    async def delete_topic(self, chat_id: int, thread_id: int) -> dict[str, Any]:
        """Delete a topic by hand, as a group administrator would in the app."""
        result: dict[str, Any] = await self._request("DELETE", f"groups/{chat_id}/topics/{thread_id}")
        return result

    async def send_group_text(self, chat_id: int, user: dict[str, Any], text: str, *,
                              thread_id: int | None = None, reply_to_message_id: int | None = None) -> dict[str, Any]:
        """A group member (``user``: ``id``, ``first_name``, ``username``...) writes into the
        topic ``thread_id``; returns ``{"message": <Message>, "update_id": N}``."""
        body: dict[str, Any] = {"user": user, "text": text}
        return await self._group_post(chat_id, body, thread_id, reply_to_message_id)

    async def send_group_sticker(self, chat_id: int, user: dict[str, Any], *, emoji: str = "👍",
                                 thread_id: int | None = None) -> dict[str, Any]:
        return await self._group_post(chat_id, {"user": user, "sticker": {"emoji": emoji}}, thread_id, None)

    async def _group_post(self, chat_id: int, body: dict[str, Any], thread_id: int | None,
                          reply_to: int | None) -> dict[str, Any]:
        if thread_id is not None:
            body["message_thread_id"] = thread_id
        if reply_to is not None:
            body["reply_to_message_id"] = reply_to
        result: dict[str, Any] = await self._request("POST", f"groups/{chat_id}/messages", json=body)
        return result

    async def group_messages(self, chat_id: int, *, thread_id: int | None = None, after: int = 0
                             ) -> list[dict[str, Any]]:
        params: dict[str, Any] = {"after": after}
        if thread_id is not None:
            params["thread"] = thread_id
        payload = await self._request("GET", f"groups/{chat_id}/messages", params=params)
        return list(payload["messages"])

    async def wait_for_group_message(self, chat_id: int, *, thread_id: int | None = None, after: int = 0,
                                     predicate: MessagePredicate | None = None,
                                     timeout: float = 10.0) -> dict[str, Any]:
        """Wait for a (not deleted) bot text message in the group (in one topic, given
        ``thread_id``) newer than ``after`` matching ``predicate``; ``TimeoutError`` shows the group."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            for message in await self.group_messages(chat_id, thread_id=thread_id, after=after):
                if (message["from"] == "bot" and message["kind"] == "text" and not message["deleted"]
                        and (predicate is None or predicate(message))):
                    return message
            if loop.time() >= deadline:
                transcript = format_transcript(await self.group_messages(chat_id))
                raise TimeoutError(
                    f"no matching bot message after #{after} in group {chat_id}"
                    f"{f' topic {thread_id}' if thread_id is not None else ''} within {timeout:g}s; "
                    f"transcript:\n{transcript}"
                )
            await asyncio.sleep(_POLL_INTERVAL)

    async def requeue_update(self, update_id: int) -> None:
        """Polling: getUpdates hands this update out once more (Telegram's redelivery)."""
        await self._request("POST", f"updates/{update_id}/requeue")

    # -- observing the bot ------------------------------------------------------------
    async def callback_answer(self, callback_id: str) -> dict[str, Any]:
        """``{"answered": bool, "text": ..., "show_alert": bool, ...}``."""
        result: dict[str, Any] = await self._request("GET", f"callbacks/{callback_id}")
        return result

    async def messages(self, user_id: int, after: int = 0) -> list[dict[str, Any]]:
        payload = await self._request("GET", f"chats/{user_id}/messages", params={"after": after})
        return list(payload["messages"])

    async def bot_messages(self, user_id: int, after: int = 0) -> list[dict[str, Any]]:
        return [m for m in await self.messages(user_id, after) if m["from"] == "bot"]

    async def actions(self, user_id: int) -> list[dict[str, Any]]:
        payload = await self._request("GET", f"chats/{user_id}/actions")
        return list(payload["actions"])

    async def chats(self) -> list[dict[str, Any]]:
        payload = await self._request("GET", "chats")
        return list(payload["chats"])

    async def bot_info(self) -> dict[str, Any]:
        result: dict[str, Any] = await self._request("GET", "bot")
        return result

    async def wait_for_bot_message(
        self,
        user_id: int,
        *,
        after: int = 0,
        predicate: MessagePredicate | None = None,
        timeout: float = 10.0,
    ) -> dict[str, Any]:
        """Wait for a (not deleted) bot message newer than ``after`` matching ``predicate``.

        Edits count: a placeholder later edited into the awaited text will match.
        Raises ``TimeoutError`` carrying the chat transcript, so failures explain themselves.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            for message in await self.bot_messages(user_id, after):
                if not message["deleted"] and (predicate is None or predicate(message)):
                    return message
            if loop.time() >= deadline:
                transcript = format_transcript(await self.messages(user_id))
                raise TimeoutError(
                    f"no matching bot message after #{after} in chat {user_id} "
                    f"within {timeout:g}s; transcript:\n{transcript}"
                )
            await asyncio.sleep(_POLL_INTERVAL)

    async def wait_for_callback_answer(
        self, callback_id: str, timeout: float = 5.0
    ) -> dict[str, Any]:
        """Wait until the bot answered the callback query; raise ``TimeoutError`` otherwise."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            answer = await self.callback_answer(callback_id)
            if answer["answered"]:
                return answer
            if loop.time() >= deadline:
                raise TimeoutError(
                    f"callback query {callback_id} was not answered within {timeout:g}s"
                )
            await asyncio.sleep(_POLL_INTERVAL)
