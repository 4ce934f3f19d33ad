"""Forum supergroups in the sandbox: the operators' group desk (``OPERATOR_CHAT_ID``) runs here.

A forum is a supergroup with topics. The bot must be an administrator with the "Manage topics"
right to create, rename, close, reopen and delete them; each topic is a thread whose id
(``message_thread_id``) is the id of its "topic created" service message. This module holds:

- :class:`SandboxGroup` and :class:`SandboxTopic`, what the sandbox remembers of a group;
- :class:`ForumMethods`, the Bot API side: ``createForumTopic``, ``editForumTopic``,
  ``closeForumTopic``, ``reopenForumTopic``, ``deleteForumTopic`` and ``sendMessage`` into a
  group (with ``message_thread_id``), refused with Telegram's texts: ``Bad Request: message
  thread not found`` for a deleted or unknown topic, ``Bad Request: TOPIC_NOT_MODIFIED`` for
  closing a closed topic, ``Bad Request: TOPIC_CLOSED`` for posting into a closed topic
  without the right to manage topics, ``Bad Request: the chat is not a forum``, ``Bad
  Request: not enough rights to create a topic``;
- :class:`ForumControl`, the control API for tests and the chat page, under
  ``/sandbox/api/groups``: create a forum group with the bot as administrator, post a
  message as a group member into a topic (the bot gets the update Telegram would send:
  ``chat.type`` supergroup, ``message_thread_id``, ``is_topic_message``, ``from``), delete a
  topic by hand, and read the group's topics and messages.

The bot gets no updates for what it did itself (Telegram sends a bot none of its own
messages, service messages included), only for members' messages.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from aiohttp import web

from supportbot.sandbox.errors import bad_request
from supportbot.sandbox.formatting import MAX_MESSAGE_LENGTH, ParsedText, utf16_len
from supportbot.sandbox.params import Params
from supportbot.sandbox.state import SandboxState, SandboxUser, StoredMessage, now

if TYPE_CHECKING:
    from supportbot.sandbox.control import ControlError

__all__ = [
    "MAX_TOPIC_NAME",
    "TOPIC_ICON_COLORS",
    "ForumControl",
    "ForumMethods",
    "SandboxGroup",
    "SandboxTopic",
]

#: A topic's name: 1-128 characters.
MAX_TOPIC_NAME = 128
#: The colours Telegram allows for a topic's icon (``icon_color``); the first is the default.
TOPIC_ICON_COLORS = (0x6FB9F0, 0xFFD67E, 0xCB86DB, 0x8EEE98, 0xFF93B2, 0xFB6F5F)

_THREAD_NOT_FOUND = "message thread not found"
_COMMAND_RE = re.compile(r"^/[A-Za-z0-9_]{1,32}(?:@[A-Za-z0-9_]{1,64})?(?=\s|$)")
# Supergroup ids look like -100xxxxxxxxxx; the sandbox numbers its own from here down.
_FIRST_GROUP_ID = -1001000000001


@dataclass
class SandboxTopic:
    message_thread_id: int
    name: str
    icon_color: int = TOPIC_ICON_COLORS[0]
    icon_custom_emoji_id: str | None = None
    closed: bool = False
    deleted: bool = False

    def to_telegram(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "message_thread_id": self.message_thread_id,
            "name": self.name,
            "icon_color": self.icon_color,
        }
        if self.icon_custom_emoji_id:
            data["icon_custom_emoji_id"] = self.icon_custom_emoji_id
        return data

    def to_control(self) -> dict[str, Any]:
        return {**self.to_telegram(), "closed": self.closed, "deleted": self.deleted}


@dataclass
class SandboxGroup:
    """A supergroup (a forum when ``is_forum``) the bot is a member of."""

    id: int
    title: str
    is_forum: bool = True
    #: The bot is an administrator with the "Manage topics" right.
    bot_can_manage_topics: bool = True
    members: dict[int, SandboxUser] = field(default_factory=dict)
    topics: dict[int, SandboxTopic] = field(default_factory=dict)
    messages: dict[int, StoredMessage] = field(default_factory=dict)  # insertion-ordered
    next_message_id: int = 1

    def to_telegram(self) -> dict[str, Any]:
        data: dict[str, Any] = {"id": self.id, "title": self.title, "type": "supergroup"}
        if self.is_forum:
            data["is_forum"] = True
        return data

    def to_control(self) -> dict[str, Any]:
        return {
            "chat": self.to_telegram(),
            "bot_can_manage_topics": self.bot_can_manage_topics,
            "topics": [t.to_control() for t in self.topics.values()],
            "message_count": len(self.messages),
        }

    def add_message(self, **fields: Any) -> StoredMessage:
        message = StoredMessage(message_id=self.next_message_id, chat_id=self.id, date=now(), **fields)
        self.next_message_id += 1
        self.messages[message.message_id] = message
        return message

    def live_topic(self, thread_id: int | None) -> SandboxTopic | None:
        topic = self.topics.get(thread_id) if thread_id is not None else None
        return topic if topic is not None and not topic.deleted else None


class ForumState:
    """The groups of one sandbox (kept on :class:`SandboxState` as ``state.forum``)."""

    def __init__(self) -> None:
        self.groups: dict[int, SandboxGroup] = {}
        self._next_id = itertools.count(0)

    def create(self, *, title: str, chat_id: int | None = None, is_forum: bool = True,
               bot_can_manage_topics: bool = True) -> SandboxGroup:
        if chat_id is None:
            chat_id = next(i for i in (_FIRST_GROUP_ID - n for n in self._next_id) if i not in self.groups)
        group = SandboxGroup(id=chat_id, title=title, is_forum=is_forum,
                             bot_can_manage_topics=bot_can_manage_topics)
        self.groups[chat_id] = group
        return group

    def message_to_telegram(self, state: SandboxState, group: SandboxGroup, message: StoredMessage, *,
                            with_reply: bool = True) -> dict[str, Any]:
        sender = (state.bot_user if message.sender == "bot" or message.from_user_id is None
                  else group.members[message.from_user_id].to_telegram())
        data: dict[str, Any] = {
            "message_id": message.message_id,
            "from": sender,
            "chat": group.to_telegram(),
            "date": message.date,
        }
        thread_id = message.message_thread_id
        if thread_id is not None:
            data["message_thread_id"] = thread_id
            data["is_topic_message"] = True
        if message.kind == "text":
            data["text"] = message.parsed.text
            if message.parsed.entities:
                data["entities"] = list(message.parsed.entities)
        elif message.text:
            data["caption"] = message.parsed.text
        data.update(message.media)
        markup = message.inline_markup()
        if markup is not None:
            data["reply_markup"] = markup
        # In a topic, a message that answers nothing in particular replies to the topic's
        # "created" service message, as Telegram shows it.
        replied = group.messages.get(message.reply_to_message_id or thread_id or 0)
        if with_reply and replied is not None and not replied.deleted and replied.message_id != message.message_id:
            data["reply_to_message"] = self.message_to_telegram(state, group, replied, with_reply=False)
        return data


def group_message_control(message: StoredMessage) -> dict[str, Any]:
    """A group message as the control API lists it: the private chat's fields plus the topic
    (``message_thread_id``) and, for members' messages, who wrote it (``from_user``)."""
    return {**message.to_control(), "message_thread_id": message.message_thread_id,
            "from_user": message.from_user_id}


class ForumMethods:
    """The Bot API methods of forum groups (registered by ``BotApi``)."""

    def __init__(self, state: SandboxState) -> None:
        self.state = state

    def methods(self) -> dict[str, Any]:
        return {
            "createForumTopic": self.create_topic,
            "editForumTopic": self.edit_topic,
            "closeForumTopic": self.close_topic,
            "reopenForumTopic": self.reopen_topic,
            "deleteForumTopic": self.delete_topic,
        }

    # -- lookups ----------------------------------------------------------------------
    def group_of(self, params: Params) -> SandboxGroup | None:
        """The group ``chat_id`` names, or None when it names no group (a private chat, nothing)."""
        ref = params.chat_ref()
        return self.state.forum.groups.get(ref) if isinstance(ref, int) else None

    def _forum(self, params: Params, *, manage: bool = True) -> SandboxGroup:
        group = self.group_of(params)
        if group is None:
            if isinstance(params.chat_ref(), int) and self.state.find_chat(params.chat_ref()) is not None:
                raise bad_request("the chat is not a forum")  # a private chat
            raise bad_request("chat not found")
        if not group.is_forum:
            raise bad_request("the chat is not a forum")
        if manage and not group.bot_can_manage_topics:
            raise bad_request("not enough rights to manage topics")
        return group

    def _topic(self, group: SandboxGroup, params: Params) -> SandboxTopic:
        thread_id = params.integer("message_thread_id")
        if thread_id is None:
            raise bad_request("message thread identifier is not specified")
        topic = group.live_topic(thread_id)
        if topic is None:
            raise bad_request(_THREAD_NOT_FOUND)
        return topic

    @staticmethod
    def _name(params: Params, *, required: bool) -> str | None:
        name = params.string("name")
        if name is None or not name.strip():
            if required:
                raise bad_request("TOPIC_TITLE_EMPTY")
            return None
        if len(name) > MAX_TOPIC_NAME:
            raise bad_request("TOPIC_TITLE_TOO_LONG")
        return name

    def _service(self, group: SandboxGroup, thread_id: int, kind: str, payload: dict[str, Any]) -> StoredMessage:
        return group.add_message(sender="bot", kind=kind, media={kind: payload}, message_thread_id=thread_id)

    # -- the methods ------------------------------------------------------------------
    async def create_topic(self, params: Params) -> dict[str, Any]:
        group = self.group_of(params)
        if group is not None and group.is_forum and not group.bot_can_manage_topics:
            raise bad_request("not enough rights to create a topic")
        group = self._forum(params)
        name = self._name(params, required=True)
        assert name is not None
        color = params.integer("icon_color", default=TOPIC_ICON_COLORS[0])
        if color not in TOPIC_ICON_COLORS:
            raise bad_request("TOPIC_ICON_COLOR_INVALID")  # only Telegram's six colours
        created = group.add_message(sender="bot", kind="forum_topic_created", media={})
        topic = SandboxTopic(created.message_id, name, int(color), params.string("icon_custom_emoji_id"))
        created.message_thread_id = topic.message_thread_id
        created.media = {"forum_topic_created": {k: v for k, v in topic.to_telegram().items()
                                                 if k != "message_thread_id"}}
        group.topics[topic.message_thread_id] = topic
        await self.state.notify()
        return topic.to_telegram()

    async def edit_topic(self, params: Params) -> bool:
        group = self._forum(params)
        topic = self._topic(group, params)
        name = self._name(params, required=False)
        emoji = params.string("icon_custom_emoji_id") if params.raw("icon_custom_emoji_id") is not None else None
        changes: dict[str, Any] = {}
        if name is not None and name != topic.name:
            changes["name"] = name
        if emoji is not None and emoji != (topic.icon_custom_emoji_id or ""):
            changes["icon_custom_emoji_id"] = emoji
        if not changes:
            raise bad_request("TOPIC_NOT_MODIFIED")
        topic.name = changes.get("name", topic.name)
        topic.icon_custom_emoji_id = changes.get("icon_custom_emoji_id", topic.icon_custom_emoji_id) or None
        self._service(group, topic.message_thread_id, "forum_topic_edited", changes)
        await self.state.notify()
        return True

    async def close_topic(self, params: Params) -> bool:
        return await self._set_closed(params, True)

    async def reopen_topic(self, params: Params) -> bool:
        return await self._set_closed(params, False)

    async def _set_closed(self, params: Params, closed: bool) -> bool:
        group = self._forum(params)
        topic = self._topic(group, params)
        if topic.closed == closed:
            raise bad_request("TOPIC_NOT_MODIFIED")
        topic.closed = closed
        self._service(group, topic.message_thread_id, "forum_topic_closed" if closed else "forum_topic_reopened", {})
        await self.state.notify()
        return True

    async def delete_topic(self, params: Params) -> bool:
        group = self._forum(params)
        delete(group, self._topic(group, params))
        await self.state.notify()
        return True

    async def send_message(self, group: SandboxGroup, params: Params, message_fields: dict[str, Any]) -> StoredMessage:
        """``sendMessage`` into a group: into the topic ``message_thread_id`` names (a forum's
        General topic without it)."""
        thread_id = params.integer("message_thread_id")
        if thread_id is not None:
            topic = group.live_topic(thread_id) if group.is_forum else None
            if topic is None:
                raise bad_request(_THREAD_NOT_FOUND)
            if topic.closed and not group.bot_can_manage_topics:
                raise bad_request("TOPIC_CLOSED")
        return group.add_message(sender="bot", kind="text", message_thread_id=thread_id, **message_fields)


def delete(group: SandboxGroup, topic: SandboxTopic) -> None:
    """A topic deleted (by the bot or by hand): gone with its messages."""
    topic.deleted = True
    for message in group.messages.values():
        if message.message_thread_id == topic.message_thread_id:
            message.deleted = True


class ForumControl:
    """``/sandbox/api/groups``: the operators' side of a forum group, for tests and the chat page."""

    def __init__(self, state: SandboxState) -> None:
        self.state = state

    def routes(self, app: web.Application) -> None:
        app.router.add_get("/sandbox/api/groups", self.list_groups)
        app.router.add_post("/sandbox/api/groups", self.create_group)
        app.router.add_get("/sandbox/api/groups/{chat_id}/topics", self.list_topics)
        app.router.add_delete("/sandbox/api/groups/{chat_id}/topics/{thread_id}", self.delete_topic)
        app.router.add_post("/sandbox/api/groups/{chat_id}/messages", self.post_message)
        app.router.add_get("/sandbox/api/groups/{chat_id}/messages", self.list_messages)

    @staticmethod
    def _error(message: str, status: int = 400) -> ControlError:
        from supportbot.sandbox.control import ControlError

        return ControlError(message, status)

    async def _body(self, request: web.Request) -> dict[str, Any]:
        try:
            body = await request.json()
        except ValueError:
            raise self._error("request body must be valid JSON") from None
        if not isinstance(body, dict):
            raise self._error("request body must be a JSON object")
        return body

    def _group(self, request: web.Request) -> SandboxGroup:
        raw = request.match_info["chat_id"]
        try:
            chat_id = int(raw)
        except ValueError:
            raise self._error(f"chat_id must be a negative integer (a group), got {raw!r}") from None
        group = self.state.forum.groups.get(chat_id)
        if group is None:
            raise self._error(f"group {chat_id} does not exist (create it with POST /sandbox/api/groups)", 404)
        return group

    # -- groups -----------------------------------------------------------------------
    async def list_groups(self, request: web.Request) -> web.Response:
        return web.json_response({"groups": [g.to_control() for g in self.state.forum.groups.values()]})

    async def create_group(self, request: web.Request) -> web.Response:
        """``{"title": "Support team", "chat_id"?: -100..., "is_forum"?: true,
        "bot_can_manage_topics"?: true}``: a supergroup with the bot as administrator."""
        body = await self._body(request)
        unknown = sorted(set(body) - {"title", "chat_id", "is_forum", "bot_can_manage_topics"})
        if unknown:
            raise self._error(f"unknown field(s): {', '.join(unknown)}; a group has: title, chat_id, is_forum, "
                              "bot_can_manage_topics")
        title = body.get("title")
        if not isinstance(title, str) or not title.strip():
            raise self._error("'title' is required: the group's name, a non-empty string")
        if len(title) > 128:
            raise self._error("'title' is longer than 128 characters")
        chat_id = body.get("chat_id")
        if chat_id is not None and (isinstance(chat_id, bool) or not isinstance(chat_id, int) or chat_id >= 0):
            raise self._error(f"'chat_id' must be a negative integer (groups have negative ids), got {chat_id!r}")
        if chat_id is not None and chat_id in self.state.forum.groups:
            raise self._error(f"group {chat_id} exists already", 409)
        flags = {}
        for name in ("is_forum", "bot_can_manage_topics"):
            value = body.get(name, True)
            if not isinstance(value, bool):
                raise self._error(f"'{name}' must be true or false, got {value!r}")
            flags[name] = value
        group = self.state.forum.create(title=title.strip(), chat_id=chat_id, **flags)
        return web.json_response(group.to_control(), status=201)

    async def list_topics(self, request: web.Request) -> web.Response:
        group = self._group(request)
        return web.json_response({"topics": [t.to_control() for t in group.topics.values()]})

    async def delete_topic(self, request: web.Request) -> web.Response:
        """An operator deletes a topic by hand (in the Telegram app)."""
        group = self._group(request)
        raw = request.match_info["thread_id"]
        topic = group.live_topic(int(raw)) if raw.isascii() and raw.isdigit() else None
        if topic is None:
            raise self._error(f"topic {raw} does not exist in group {group.id}", 404)
        delete(group, topic)
        await self.state.notify()
        return web.json_response(topic.to_control())

    # -- members' messages --------------------------------------------------------------
    async def post_message(self, request: web.Request) -> web.Response:
        """``{"user": {"id": 77, "first_name": "Anna", ...}, "text": "..." | "sticker": {...},
        "message_thread_id"?: N, "reply_to_message_id"?: M}``: a member writes; the bot gets
        the update."""
        group = self._group(request)
        body = await self._body(request)
        user = self._member(group, body.get("user"))
        kinds = [k for k in ("text", "sticker") if k in body]
        if len(kinds) != 1:
            raise self._error("body must contain exactly one of: text, sticker")
        thread_id = body.get("message_thread_id")
        if thread_id is not None:
            if isinstance(thread_id, bool) or not isinstance(thread_id, int):
                raise self._error("'message_thread_id' must be an integer")
            topic = group.live_topic(thread_id) if group.is_forum else None
            if topic is None:
                raise self._error(f"message thread {thread_id} not found in group {group.id}")
            if topic.closed:
                raise self._error(f"topic {thread_id} is closed: only administrators may write there", 409)
        reply_to = body.get("reply_to_message_id")
        if reply_to is not None and (not isinstance(reply_to, int) or reply_to not in group.messages):
            raise self._error(f"reply_to_message_id {reply_to!r} does not exist in this group")
        fields: dict[str, Any] = {"from_user_id": user.id, "message_thread_id": thread_id,
                                  "reply_to_message_id": reply_to}
        if kinds[0] == "text":
            text = body["text"]
            if not isinstance(text, str) or not text.strip():
                raise self._error("'text' must be a non-empty string")
            if utf16_len(text.strip()) > MAX_MESSAGE_LENGTH:
                raise self._error(f"'text' is longer than {MAX_MESSAGE_LENGTH} characters")
            stripped = text.strip()
            match = _COMMAND_RE.match(stripped)
            entities = ({"type": "bot_command", "offset": 0, "length": utf16_len(match.group(0))},) if match else ()
            message = group.add_message(sender="user", kind="text", text=text,
                                        parsed=ParsedText(stripped, entities), **fields)
        else:
            sticker = body["sticker"]
            if not isinstance(sticker, dict):
                raise self._error("'sticker' must be a JSON object")
            stored = self.state.store_file(b"sandbox placeholder media\n", folder="stickers", mime_type="image/webp")
            fields["media"] = {"sticker": {
                "file_id": stored.file_id, "file_unique_id": stored.file_unique_id, "type": "regular",
                "width": 512, "height": 512, "is_animated": False, "is_video": False,
                **({"emoji": sticker["emoji"]} if isinstance(sticker.get("emoji"), str) else {}),
            }}
            message = group.add_message(sender="user", kind="sticker", **fields)
        payload = self.state.forum.message_to_telegram(self.state, group, message)
        update_id = await self.state.enqueue("message", payload)
        return web.json_response({"message": payload, "update_id": update_id})

    def _member(self, group: SandboxGroup, raw: Any) -> SandboxUser:
        if not isinstance(raw, dict):
            raise self._error("'user' is required: a JSON object with the member's 'id' and 'first_name'")
        user_id = raw.get("id")
        if isinstance(user_id, bool) or not isinstance(user_id, int) or user_id <= 0:
            raise self._error(f"'user.id' must be a positive integer, got {user_id!r}")
        for key in ("first_name", "last_name", "username", "language_code"):
            if raw.get(key) is not None and not isinstance(raw[key], str):
                raise self._error(f"'user.{key}' must be a string")
        member = group.members.get(user_id)
        if member is None:
            member = SandboxUser(id=user_id, first_name=raw.get("first_name") or f"User {user_id}")
            group.members[user_id] = member
        for key in ("first_name", "last_name", "username", "language_code"):
            if raw.get(key):
                setattr(member, key, raw[key])
        return member

    async def list_messages(self, request: web.Request) -> web.Response:
        """The group's messages (``?thread=N``: one topic's; ``?after=M``: newer than M)."""
        group = self._group(request)
        try:
            after = int(request.query.get("after") or 0)
            thread = int(request.query["thread"]) if request.query.get("thread") else None
        except ValueError:
            raise self._error("'after' and 'thread' must be integers") from None
        messages = [
            group_message_control(m) for m in group.messages.values()
            if m.message_id > after and (thread is None or m.message_thread_id == thread)
        ]
        return web.json_response({"messages": messages})

