"""The ``/sandbox/api/`` half of the sandbox: a small JSON API that plays the customer.

The staff chat page, the tests and the benchmarks send messages, press buttons and
block the bot through it, and read back what the bot sent. Tests also make the Bot API
fail through it (``/sandbox/api/faults``, see ``faults.py``) and read how many Bot API
requests arrived (``/sandbox/api/requests``).
"""

from __future__ import annotations

import json
import mimetypes
import re
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from aiohttp.web_request import FileField

from supportbot.sandbox.faults import FAULT_FIELDS, FaultError
from supportbot.sandbox.formatting import MAX_MESSAGE_LENGTH, ParsedText, utf16_len
from supportbot.sandbox.state import (
    CallbackQueryRecord,
    SandboxChat,
    SandboxState,
    file_extension,
    now,
)

__all__ = ["ControlApi", "ControlError", "control_errors"]

_COMMAND_RE = re.compile(r"^/[A-Za-z0-9_]{1,32}(?:@[A-Za-z0-9_]{1,64})?(?=\s|$)")


class ControlError(Exception):
    """An error answered on the control API as ``{"error": "..."}``."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


_USER_FIELDS = ("first_name", "last_name", "username", "language_code")
_UPLOAD_KINDS = frozenset({"voice", "audio", "video_note", "document", "photo"})
_JSON_KINDS = ("text", "sticker", "photo", "document", "location", "voice", "audio", "video_note")
_DEFAULT_MIME = {
    "voice": "audio/ogg",
    "audio": "audio/mpeg",
    "video_note": "video/mp4",
    "document": "application/octet-stream",
    "photo": "image/jpeg",
    "sticker": "image/webp",
}
_FOLDERS = {
    "voice": "voice",
    "audio": "music",
    "video_note": "video_notes",
    "document": "documents",
    "photo": "photos",
    "sticker": "stickers",
}
# Stand-in bytes for media sent through the JSON variant, so getFile still works.
_PLACEHOLDER_BYTES = b"sandbox placeholder media\n"


def _json_response(data: Any, status: int = 200) -> web.Response:
    return web.json_response(data, status=status)


def _user_id(request: web.Request) -> int:
    raw = request.match_info["user_id"]
    try:
        user_id = int(raw)
    except ValueError:
        raise ControlError(f"user_id must be a positive integer, got {raw!r}") from None
    if user_id <= 0:
        raise ControlError(f"user_id must be a positive integer, got {raw!r}")
    return user_id


async def _json_object(request: web.Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except ValueError:
        raise ControlError("request body must be valid JSON") from None
    if not isinstance(body, dict):
        raise ControlError("request body must be a JSON object")
    return body


def _user_info(raw: Any) -> dict[str, Any]:
    if raw is None:
        return {}
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except ValueError:
            raise ControlError("'user' must be a JSON object") from None
    if not isinstance(raw, dict):
        raise ControlError("'user' must be a JSON object")
    info: dict[str, Any] = {}
    for key in _USER_FIELDS:
        value = raw.get(key)
        if value is not None and not isinstance(value, str):
            raise ControlError(f"'user.{key}' must be a string")
        if value:
            info[key] = value
    return info


def _positive_int(value: Any, name: str, default: int) -> int:
    if value is None or value == "":
        return default
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise ControlError(f"'{name}' must be an integer") from None
    if number < 0:
        raise ControlError(f"'{name}' must not be negative")
    return number


def _caption(value: Any) -> tuple[str | None, ParsedText]:
    if value is None or value == "":
        return None, ParsedText("")
    if not isinstance(value, str):
        raise ControlError("'caption' must be a string")
    return value, ParsedText(value.strip())


@dataclass
class _Incoming:
    """A customer message before it is stored."""

    kind: str
    user: dict[str, Any]
    text: str | None = None
    parsed: ParsedText = field(default_factory=lambda: ParsedText(""))
    media: dict[str, Any] = field(default_factory=dict)
    reply_to: int | None = None


class ControlApi:
    """The ``/sandbox/api/`` half of the server: playing the customer."""

    def __init__(self, state: SandboxState) -> None:
        self.state = state

    # -- routes -----------------------------------------------------------------------
    async def health(self, request: web.Request) -> web.Response:
        return _json_response({"ok": True})

    async def bot_info(self, request: web.Request) -> web.Response:
        return _json_response(
            {
                "user": self.state.bot_user,
                "commands": self.state.commands,
                "webhook": self.state.webhook,
            }
        )

    async def list_chats(self, request: web.Request) -> web.Response:
        chats = [
            {
                "user_id": chat.id,
                "user": chat.user.to_telegram(),
                "blocked": chat.blocked,
                "message_count": len(chat.messages),
            }
            for chat in self.state.chats.values()
        ]
        return _json_response({"chats": chats})

    async def post_message(self, request: web.Request) -> web.Response:
        user_id = _user_id(request)
        if request.content_type == "multipart/form-data":
            incoming = await self._incoming_upload(request)
        else:
            incoming = self._incoming_json(await _json_object(request))
        chat = self.state.chats.get(user_id)
        if chat is not None and chat.blocked:
            raise ControlError("this user has blocked the bot; unblock first", status=409)
        chat = self.state.upsert_user(user_id, incoming.user)
        if incoming.reply_to is not None and incoming.reply_to not in chat.messages:
            raise ControlError(
                f"reply_to_message_id {incoming.reply_to} does not exist in this chat"
            )
        message = self.state.add_message(
            chat,
            sender="user",
            kind=incoming.kind,
            text=incoming.text,
            parsed=incoming.parsed,
            media=incoming.media,
            reply_to_message_id=incoming.reply_to,
        )
        payload = self.state.message_to_telegram(message)
        update_id = await self.state.enqueue("message", payload)
        return _json_response({"message": payload, "update_id": update_id})

    async def press(self, request: web.Request) -> web.Response:
        user_id = _user_id(request)
        body = await _json_object(request)
        chat = self.state.chats.get(user_id)
        if chat is None:
            raise ControlError(f"chat {user_id} does not exist (the user never wrote to the bot)")
        if chat.blocked:
            raise ControlError("this user has blocked the bot; unblock first", status=409)
        message_id = body.get("message_id")
        if not isinstance(message_id, int) or isinstance(message_id, bool):
            raise ControlError("'message_id' must be an integer")
        data = body.get("data")
        if not isinstance(data, str):
            raise ControlError("'data' must be a string")
        message = chat.messages.get(message_id)
        if message is None or message.deleted or message.sender != "bot":
            raise ControlError(f"bot message {message_id} does not exist in chat {user_id}")
        record = CallbackQueryRecord(
            id=str(secrets.randbits(63)),
            user_id=user_id,
            message_id=message_id,
            data=data,
            created=time.monotonic(),
        )
        self.state.callbacks[record.id] = record
        update_id = await self.state.enqueue(
            "callback_query",
            {
                "id": record.id,
                "from": chat.user.to_telegram(),
                "message": self.state.message_to_telegram(message),
                "chat_instance": chat.chat_instance,
                "data": data,
            },
        )
        return _json_response({"callback_query_id": record.id, "update_id": update_id})

    async def callback_answer(self, request: web.Request) -> web.Response:
        record = self.state.callbacks.get(request.match_info["callback_id"])
        if record is None:
            raise ControlError("unknown callback_query_id", status=404)
        return _json_response(record.to_control())

    async def list_messages(self, request: web.Request) -> web.Response:
        user_id = _user_id(request)
        after = _positive_int(request.query.get("after"), "after", 0)
        chat = self.state.chats.get(user_id)
        messages = [] if chat is None else [
            m.to_control() for m in chat.messages.values() if m.message_id > after
        ]
        return _json_response({"messages": messages})

    async def list_actions(self, request: web.Request) -> web.Response:
        chat = self.state.chats.get(_user_id(request))
        return _json_response({"actions": [] if chat is None else list(chat.actions)})

    async def block(self, request: web.Request) -> web.Response:
        user_id = _user_id(request)
        body = await _json_object(request)
        blocked = body.get("blocked")
        if not isinstance(blocked, bool):
            raise ControlError("'blocked' must be true or false")
        chat = self.state.chats.get(user_id)
        if chat is None:
            raise ControlError(f"chat {user_id} does not exist", status=404)
        update_id = None
        if chat.blocked != blocked:
            chat.blocked = blocked
            update_id = await self._enqueue_member_change(chat, blocked)
        return _json_response({"blocked": chat.blocked, "update_id": update_id})

    async def _enqueue_member_change(self, chat: SandboxChat, blocked: bool) -> int:
        # Telegram tells the bot about (un)blocking through a my_chat_member update.
        member = {"status": "member", "user": self.state.bot_user}
        kicked = {"status": "kicked", "user": self.state.bot_user, "until_date": 0}
        return await self.state.enqueue(
            "my_chat_member",
            {
                "chat": chat.to_telegram(),
                "from": chat.user.to_telegram(),
                "date": now(),
                "old_chat_member": member if blocked else kicked,
                "new_chat_member": kicked if blocked else member,
            },
        )

    # -- faults and request counts (the Bot API side, for tests) ----------------------
    async def list_faults(self, request: web.Request) -> web.Response:
        return _json_response({"faults": self.state.faults.to_json()})

    async def add_fault(self, request: web.Request) -> web.Response:
        body = await _json_object(request)
        unknown = sorted(set(body) - set(FAULT_FIELDS))
        if unknown:
            raise ControlError(
                f"unknown field(s): {', '.join(unknown)}; a fault has: {', '.join(FAULT_FIELDS)}"
            )
        if "method" not in body or "error" not in body:
            raise ControlError("a fault needs 'method' (a Bot API method name or '*') and 'error'")
        try:
            fault = self.state.faults.add(**body)
        except FaultError as exc:
            raise ControlError(str(exc)) from None
        return _json_response({"fault": fault.to_json()}, status=201)

    async def clear_faults(self, request: web.Request) -> web.Response:
        return _json_response({"cleared": self.state.faults.clear()})

    async def request_counts(self, request: web.Request) -> web.Response:
        return _json_response(self.state.requests.to_json())

    async def clear_request_counts(self, request: web.Request) -> web.Response:
        self.state.requests.clear()
        return _json_response(self.state.requests.to_json())

    async def requeue(self, request: web.Request) -> web.Response:
        """``POST /sandbox/api/updates/{update_id}/requeue``: getUpdates hands out an update it
        handed out before once more (polling's redelivery; webhooks: ``.../redeliver``)."""
        raw = request.match_info["update_id"]
        if not raw.isascii() or not raw.isdigit():
            raise ControlError(f"update_id must be a positive integer, got {raw!r}")
        if not await self.state.requeue(int(raw)):
            raise ControlError(f"update {raw} was never handed out by getUpdates", status=404)
        return _json_response({"update_id": int(raw), "queued": 1})

    # -- building incoming messages --------------------------------------------------
    def _incoming_json(self, body: dict[str, Any]) -> _Incoming:
        kinds = [kind for kind in _JSON_KINDS if kind in body]
        if len(kinds) != 1:
            raise ControlError(f"body must contain exactly one of: {', '.join(_JSON_KINDS)}")
        kind = kinds[0]
        incoming = _Incoming(kind=kind, user=_user_info(body.get("user")))
        incoming.reply_to = _optional_int(body.get("reply_to_message_id"), "reply_to_message_id")
        if kind == "text":
            incoming.text, incoming.parsed = _user_text(body["text"])
            return incoming
        payload = body[kind]
        if not isinstance(payload, dict):
            raise ControlError(f"'{kind}' must be a JSON object")
        incoming.text, incoming.parsed = _caption(body.get("caption"))
        if kind == "location":
            incoming.media = {"location": _location(payload)}
        else:
            incoming.media = self._media(kind, _PLACEHOLDER_BYTES, payload)
        return incoming

    async def _incoming_upload(self, request: web.Request) -> _Incoming:
        try:
            form = await request.post()
        except ValueError:
            raise ControlError("malformed multipart body") from None
        kind = _form_text(form, "kind")
        if kind not in _UPLOAD_KINDS:
            raise ControlError(f"'kind' must be one of: {', '.join(sorted(_UPLOAD_KINDS))}")
        upload = form.get("file")
        if not isinstance(upload, FileField):
            raise ControlError("multipart body must contain a 'file' part")
        data = upload.file.read()
        if not data:
            raise ControlError("'file' is empty")
        payload: dict[str, Any] = {
            "duration": _form_text(form, "duration"),
            "mime_type": _form_text(form, "mime_type") or upload.content_type,
            "file_name": _form_text(form, "file_name") or upload.filename,
            "width": _form_text(form, "width"),
            "height": _form_text(form, "height"),
        }
        incoming = _Incoming(kind=str(kind), user=_user_info(_form_text(form, "user")))
        incoming.text, incoming.parsed = _caption(_form_text(form, "caption"))
        reply_to = _form_text(form, "reply_to_message_id")
        incoming.reply_to = _optional_int(reply_to, "reply_to_message_id")
        incoming.media = self._media(str(kind), data, payload)
        return incoming

    def _media(self, kind: str, data: bytes, payload: dict[str, Any]) -> dict[str, Any]:
        """Store the bytes and build the Telegram field(s) for a media message."""
        mime = payload.get("mime_type")
        if not mime or mime == "application/octet-stream":
            guessed = mimetypes.guess_type(str(payload.get("file_name") or ""))[0]
            mime = guessed or _DEFAULT_MIME[kind]
        file_name = payload.get("file_name")
        if file_name is not None and not isinstance(file_name, str):
            raise ControlError("'file_name' must be a string")
        stored = self.state.store_file(
            data, folder=_FOLDERS[kind], mime_type=str(mime), file_name=file_name
        )
        base = {
            "file_id": stored.file_id,
            "file_unique_id": stored.file_unique_id,
            "file_size": stored.size,
        }
        mime_type = stored.mime_type
        duration = _positive_int(payload.get("duration"), "duration", 1)
        if kind == "voice":
            return {"voice": {**base, "duration": duration, "mime_type": mime_type}}
        if kind == "audio":
            extra = {"file_name": file_name} if file_name else {}
            return {"audio": {**base, "duration": duration, "mime_type": mime_type, **extra}}
        if kind == "video_note":
            return {"video_note": {**base, "length": 240, "duration": duration}}
        if kind == "document":
            name = file_name or f"file{file_extension(None, mime_type)}"
            return {"document": {**base, "file_name": name, "mime_type": mime_type}}
        if kind == "photo":
            width = _positive_int(payload.get("width"), "width", 1280)
            height = _positive_int(payload.get("height"), "height", 720)
            return {"photo": [{**base, "width": width, "height": height}]}
        emoji = payload.get("emoji")
        if emoji is not None and not isinstance(emoji, str):
            raise ControlError("'sticker.emoji' must be a string")
        sticker = {
            **base,
            "type": "regular",
            "width": 512,
            "height": 512,
            "is_animated": False,
            "is_video": False,
        }
        return {"sticker": {**sticker, "emoji": emoji} if emoji else sticker}


def _form_text(form: Any, name: str) -> str | None:
    value = form.get(name)
    if isinstance(value, FileField):
        raise ControlError(f"'{name}' must be a plain form field, not a file")
    return value


def _optional_int(value: Any, name: str) -> int | None:
    if value is None or value == "":
        return None
    return _positive_int(value, name, 0)


def _user_text(value: Any) -> tuple[str, ParsedText]:
    if not isinstance(value, str):
        raise ControlError("'text' must be a string")
    stripped = value.strip()
    if not stripped:
        raise ControlError("'text' must not be empty")
    if utf16_len(stripped) > MAX_MESSAGE_LENGTH:
        raise ControlError(f"'text' is longer than {MAX_MESSAGE_LENGTH} characters")
    entities: tuple[dict[str, Any], ...] = ()
    match = _COMMAND_RE.match(stripped)
    if match:
        # Telegram clients mark a leading /command so bots can route on it.
        entities = ({"type": "bot_command", "offset": 0, "length": utf16_len(match.group(0))},)
    return value, ParsedText(stripped, entities)


def _location(payload: dict[str, Any]) -> dict[str, float]:
    try:
        latitude = float(payload["latitude"])
        longitude = float(payload["longitude"])
    except (KeyError, TypeError, ValueError):
        raise ControlError("'location' needs numeric 'latitude' and 'longitude'") from None
    if not (-90 <= latitude <= 90 and -180 <= longitude <= 180):
        raise ControlError("'location' coordinates are out of range")
    return {"latitude": latitude, "longitude": longitude}


@web.middleware
async def control_errors(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Render control-API failures as JSON; Bot API routes format their own errors."""
    if not request.path.startswith("/sandbox/api/"):
        return await handler(request)
    try:
        return await handler(request)
    except ControlError as exc:
        return _json_response({"error": exc.message}, status=exc.status)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return _json_response({"error": exc.reason}, status=exc.status)
