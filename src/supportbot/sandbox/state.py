"""Everything the sandbox remembers: users and their private chats, messages, files,
callback queries, the update queue that ``getUpdates`` long-polls, the injected faults
and how many Bot API requests arrived.

Everything lives in memory and runs on a single event loop, so plain attribute
mutations are atomic with respect to other handlers; the only cross-request
coordination needed is the long-polling wake-up, done with an ``asyncio.Condition``.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import mimetypes
import secrets
import time
from collections import Counter, OrderedDict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from supportbot.sandbox.errors import BotApiError
from supportbot.sandbox.faults import FaultRegistry
from supportbot.sandbox.formatting import ParsedText
from supportbot.sandbox.limits import SendLimits

if TYPE_CHECKING:
    from supportbot.sandbox.forum import ForumState

__all__ = [
    "BOT_FIRST_NAME",
    "BOT_USERNAME",
    "DEFAULT_CALLBACK_QUERY_TTL",
    "CallbackQueryRecord",
    "RequestCounts",
    "SandboxChat",
    "SandboxState",
    "SandboxUser",
    "StoredFile",
    "StoredMessage",
    "file_extension",
    "now",
]

BOT_FIRST_NAME = "Sandbox Support Bot"
BOT_USERNAME = "sandbox_support_bot"
DEFAULT_CALLBACK_QUERY_TTL = 15.0  # seconds Telegram waits for answerCallbackQuery
KEEP_FETCHED = 10_000  # updates remembered after getUpdates handed them out (requeue)

# Update types Telegram delivers when getUpdates never named allowed_updates.
_DEFAULT_EXCLUDED_UPDATES = frozenset(
    {"chat_member", "message_reaction", "message_reaction_count"}
)


def now() -> int:
    return int(time.time())


@dataclass
class SandboxUser:
    id: int
    first_name: str
    last_name: str | None = None
    username: str | None = None
    language_code: str | None = None

    def to_telegram(self) -> dict[str, Any]:
        data: dict[str, Any] = {"id": self.id, "is_bot": False, "first_name": self.first_name}
        for key in ("last_name", "username", "language_code"):
            value = getattr(self, key)
            if value:
                data[key] = value
        return data


@dataclass
class StoredFile:
    file_id: str
    file_unique_id: str
    file_path: str
    data: bytes
    mime_type: str

    @property
    def size(self) -> int:
        return len(self.data)


@dataclass
class StoredMessage:
    message_id: int
    chat_id: int
    sender: str  # "user" | "bot"
    kind: str  # text, sticker, photo, document, voice, audio, video_note, location
    date: int
    text: str | None = None  # as sent (raw markup for bot messages); caption for media
    parse_mode: str | None = None
    parsed: ParsedText = field(default_factory=lambda: ParsedText(""))
    reply_markup: dict[str, Any] | None = None
    media: dict[str, Any] = field(default_factory=dict)  # Telegram fields, e.g. {"voice": {...}}
    reply_to_message_id: int | None = None
    link_preview_options: dict[str, Any] | None = None
    disable_notification: bool = False
    edit_date: int | None = None
    edit_count: int = 0
    deleted: bool = False
    # Groups (forum.py): the topic a message is in, and which member wrote it.
    message_thread_id: int | None = None
    from_user_id: int | None = None

    def inline_markup(self) -> dict[str, Any] | None:
        """The markup Telegram echoes back in Message objects: inline keyboards only."""
        if self.reply_markup and "inline_keyboard" in self.reply_markup:
            return self.reply_markup
        return None

    def to_control(self) -> dict[str, Any]:
        return {
            "message_id": self.message_id,
            "from": self.sender,
            "kind": self.kind,
            "text": self.text,
            "plain_text": self.parsed.text if self.text is not None else None,
            "entities": list(self.parsed.entities),
            "parse_mode": self.parse_mode,
            "reply_markup": self.reply_markup,
            "media": self.media,
            "reply_to_message_id": self.reply_to_message_id,
            "date": self.date,
            "edit_date": self.edit_date,
            "edit_count": self.edit_count,
            "deleted": self.deleted,
        }


@dataclass
class SandboxChat:
    user: SandboxUser
    chat_instance: str
    messages: dict[int, StoredMessage] = field(default_factory=dict)  # insertion-ordered
    actions: list[dict[str, Any]] = field(default_factory=list)
    blocked: bool = False
    next_message_id: int = 1

    @property
    def id(self) -> int:
        return self.user.id  # private chats share the user's id

    def to_telegram(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "id": self.id,
            "type": "private",
            "first_name": self.user.first_name,
        }
        if self.user.last_name:
            data["last_name"] = self.user.last_name
        if self.user.username:
            data["username"] = self.user.username
        return data


@dataclass
class CallbackQueryRecord:
    id: str
    user_id: int
    message_id: int
    data: str
    created: float  # loop-independent monotonic seconds
    answered: bool = False
    text: str | None = None
    show_alert: bool = False
    url: str | None = None

    def to_control(self) -> dict[str, Any]:
        return {
            "callback_query_id": self.id,
            "answered": self.answered,
            "text": self.text,
            "show_alert": self.show_alert,
            "url": self.url,
        }


@dataclass
class RequestCounts:
    """Bot API requests received, per method and per chat and method (faulted ones too).

    Methods are counted under their Bot API names (``sendMessage``), whatever the case
    the client used; a request without a ``chat_id`` counts only under its method.
    """

    by_method: Counter[str] = field(default_factory=Counter)
    by_chat: dict[int, Counter[str]] = field(default_factory=dict)

    def add(self, method: str, chat_id: int | None) -> None:
        self.by_method[method] += 1
        if chat_id is not None:
            self.by_chat.setdefault(chat_id, Counter())[method] += 1

    def clear(self) -> None:
        self.by_method.clear()
        self.by_chat.clear()

    def to_json(self) -> dict[str, Any]:
        return {
            "methods": dict(self.by_method),
            "chats": {str(chat_id): dict(counts) for chat_id, counts in self.by_chat.items()},
        }


class SandboxState:
    """All sandbox data: users/chats/messages, the update queue, files, callbacks, faults."""

    def __init__(self, *, callback_query_ttl: float = DEFAULT_CALLBACK_QUERY_TTL) -> None:
        self.callback_query_ttl = callback_query_ttl
        self.chats: dict[int, SandboxChat] = {}
        self.files: dict[str, StoredFile] = {}
        self.callbacks: dict[str, CallbackQueryRecord] = {}
        self.updates: list[dict[str, Any]] = []
        self.webhook: dict[str, Any] = {}
        self.commands: dict[str, list[dict[str, str]]] = {}  # "scope|lang" -> commands
        self.bot_user: dict[str, Any] = {}
        self.allowed_updates: frozenset[str] | None = None
        self.faults = FaultRegistry()
        self.requests = RequestCounts()
        self.limits = SendLimits()  # Telegram's send limits, off unless switched on (limits.py)
        self.forum: ForumState = _forum_state()  # forum supergroups and their topics (forum.py)
        #: Updates getUpdates handed out lately, for ``POST /sandbox/api/updates/{id}/requeue``.
        self.fetched: OrderedDict[int, dict[str, Any]] = OrderedDict()
        self._requeued: list[dict[str, Any]] = []
        # Update ids never repeat across sandbox restarts (Telegram's are unique per bot): the
        # bot claims each id once (UpdateClaim), so a restarted sandbox starting at 1 again would
        # have its updates dropped as duplicates for a day.
        self._next_update_id = int(time.time() * 1000)
        self._file_counter = itertools.count(1)
        self._poll_generation = 0
        self._closing = False
        self._changed: asyncio.Condition | None = None

    # -- bot identity ---------------------------------------------------------------
    def set_bot(self, bot_id: int) -> None:
        self.bot_user = {
            "id": bot_id,
            "is_bot": True,
            "first_name": BOT_FIRST_NAME,
            "username": BOT_USERNAME,
        }

    # -- users/chats ----------------------------------------------------------------
    def upsert_user(self, user_id: int, info: dict[str, Any] | None) -> SandboxChat:
        """Create the private chat on first contact; later calls refresh the profile."""
        info = info or {}
        chat = self.chats.get(user_id)
        if chat is None:
            user = SandboxUser(id=user_id, first_name=info.get("first_name") or f"User {user_id}")
            chat = SandboxChat(user=user, chat_instance=str(secrets.randbits(62)))
            self.chats[user_id] = chat
        for key in ("first_name", "last_name", "username", "language_code"):
            if info.get(key) is not None:
                setattr(chat.user, key, info[key])
        return chat

    def find_chat(self, chat_ref: int | str) -> SandboxChat | None:
        if isinstance(chat_ref, str):
            name = chat_ref.removeprefix("@").lower()
            return next(
                (c for c in self.chats.values() if (c.user.username or "").lower() == name), None
            )
        return self.chats.get(chat_ref)

    def add_message(self, chat: SandboxChat, **fields: Any) -> StoredMessage:
        message = StoredMessage(
            message_id=chat.next_message_id, chat_id=chat.id, date=now(), **fields
        )
        chat.next_message_id += 1
        chat.messages[message.message_id] = message
        return message

    def message_to_telegram(
        self, message: StoredMessage, *, with_reply: bool = True
    ) -> dict[str, Any]:
        chat = self.chats[message.chat_id]
        data: dict[str, Any] = {
            "message_id": message.message_id,
            "from": self.bot_user if message.sender == "bot" else chat.user.to_telegram(),
            "chat": chat.to_telegram(),
            "date": message.date,
        }
        if message.edit_date is not None:
            data["edit_date"] = message.edit_date
        if message.kind == "text":
            data["text"] = message.parsed.text
            if message.parsed.entities:
                data["entities"] = list(message.parsed.entities)
        elif message.text:
            data["caption"] = message.parsed.text
            if message.parsed.entities:
                data["caption_entities"] = list(message.parsed.entities)
        data.update(message.media)
        if message.link_preview_options:
            data["link_preview_options"] = message.link_preview_options
        markup = message.inline_markup()
        if markup is not None:
            data["reply_markup"] = markup
        replied = chat.messages.get(message.reply_to_message_id or 0)
        if with_reply and replied is not None and not replied.deleted:
            data["reply_to_message"] = self.message_to_telegram(replied, with_reply=False)
        return data

    # -- files ------------------------------------------------------------------------
    def store_file(
        self, data: bytes, *, folder: str, mime_type: str, file_name: str | None = None
    ) -> StoredFile:
        number = next(self._file_counter)
        extension = file_extension(file_name, mime_type)
        stored = StoredFile(
            file_id=f"SBX{secrets.token_urlsafe(24)}",
            file_unique_id=f"U{secrets.token_urlsafe(8)}",
            file_path=f"{folder}/file_{number}{extension}",
            data=data,
            mime_type=mime_type,
        )
        self.files[stored.file_id] = stored
        return stored

    def file_by_path(self, path: str) -> StoredFile | None:
        return next((f for f in self.files.values() if f.file_path == path), None)

    # -- updates ----------------------------------------------------------------------
    @property
    def changed(self) -> asyncio.Condition:
        # Created lazily so the state can be built outside a running loop.
        if self._changed is None:
            self._changed = asyncio.Condition()
        return self._changed

    async def notify(self) -> None:
        async with self.changed:
            self.changed.notify_all()

    async def enqueue(self, update_type: str, payload: dict[str, Any]) -> int:
        update_id = self._next_update_id
        self._next_update_id += 1
        self.updates.append({"update_id": update_id, update_type: payload})
        await self.notify()
        return update_id

    def confirm(self, offset: int) -> None:
        """getUpdates' offset semantics: everything before ``offset`` is forgotten."""
        if offset > 0:
            self.updates = [u for u in self.updates
                            if u["update_id"] >= offset or any(u is r for r in self._requeued)]
        elif offset < 0:
            self.updates = self.updates[offset:]

    def _deliverable(self) -> list[dict[str, Any]]:
        # Updates of types the bot did not ask for are dropped, as Telegram never sends them.
        allowed = self.allowed_updates
        kept = [u for u in self.updates if _is_allowed(_update_type(u), allowed)]
        self.updates = kept
        return kept

    async def get_updates(self, offset: int, limit: int, timeout: float) -> list[dict[str, Any]]:
        self.confirm(offset)
        self._poll_generation += 1
        generation = self._poll_generation
        await self.notify()  # wakes an older poller so it learns it was superseded

        def ready() -> bool:
            superseded = generation != self._poll_generation
            return self._closing or superseded or bool(self._deliverable())

        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout), self.changed:
                await self.changed.wait_for(ready)
        if generation != self._poll_generation:
            raise BotApiError(
                409,
                "Conflict: terminated by other getUpdates request; "
                "make sure that only one bot instance is running",
            )
        handed_out = self._deliverable()[:limit]
        for update in handed_out:
            self.fetched[update["update_id"]] = update
        while len(self.fetched) > KEEP_FETCHED:
            self.fetched.popitem(last=False)
        # A requeued update goes out once more, whatever the offset says; then it is forgotten.
        self._requeued = [u for u in self._requeued if all(u is not h for h in handed_out)]
        return handed_out

    async def requeue(self, update_id: int) -> bool:
        """Polling: hand an update out again (its confirmation got lost, as far as the bot can
        tell: Telegram then delivers it once more). False when it was never handed out."""
        update = self.fetched.get(update_id)
        if update is None:
            return False
        copy = dict(update)
        self._requeued.append(copy)
        self.updates.append(copy)
        await self.notify()
        return True

    async def hold(self, seconds: float) -> bool:
        """Wait ``seconds`` (a held request); False when the sandbox closed meanwhile."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds), self.changed:
                await self.changed.wait_for(lambda: self._closing)
        return not self._closing

    async def close(self) -> None:
        """Release long polls and held requests so the HTTP server can shut down promptly."""
        self._closing = True
        await self.notify()

    def reopen(self) -> None:
        """Allow long polling again when a closed state is served by a new app."""
        self._closing = False

    # -- callbacks --------------------------------------------------------------------
    def live_callback(self, callback_id: str) -> CallbackQueryRecord | None:
        record = self.callbacks.get(callback_id)
        if record is None or record.answered:
            return None
        if time.monotonic() - record.created > self.callback_query_ttl:
            return None
        return record


def _update_type(update: dict[str, Any]) -> str:
    return next(key for key in update if key != "update_id")


def _is_allowed(update_type: str, allowed: frozenset[str] | None) -> bool:
    if allowed is None:
        return update_type not in _DEFAULT_EXCLUDED_UPDATES
    return update_type in allowed


_FOLDER_EXTENSIONS = {
    "audio/ogg": ".oga",
    "audio/mpeg": ".mp3",
    "image/jpeg": ".jpg",
    "image/webp": ".webp",
    "video/mp4": ".mp4",
}


def file_extension(file_name: str | None, mime_type: str) -> str:
    if file_name and "." in file_name:
        return "." + file_name.rsplit(".", 1)[1].lower()
    return _FOLDER_EXTENSIONS.get(mime_type) or mimetypes.guess_extension(mime_type) or ""


def _forum_state() -> ForumState:
    from supportbot.sandbox.forum import ForumState  # forum.py builds on this module

    return ForumState()
