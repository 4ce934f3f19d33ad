"""A local, in-memory implementation of the Telegram Bot API (the "sandbox").

The unmodified aiogram bot talks to it through ``TelegramAPIServer.from_base(url)``
exactly as it would talk to ``api.telegram.org``; the customer side (the staff web
chat page, tests, benchmarks) drives it through a small JSON *control API* under
``/sandbox/api/``.  Only the Bot API methods the support bot uses are implemented,
but those follow the real API closely, including its error codes and descriptions,
because tests against a permissive fake would prove nothing about production.

Everything lives in memory and runs on a single event loop, so plain attribute
mutations are atomic with respect to other handlers; the only cross-request
coordination needed is the long-polling wake-up, done with an ``asyncio.Condition``.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import itertools
import json
import logging
import mimetypes
import re
import secrets
import signal
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger
from aiohttp.web_request import FileField

logger = logging.getLogger(__name__)

__all__ = [
    "BOT_FIRST_NAME",
    "BOT_USERNAME",
    "BotApiError",
    "EntityParseError",
    "ParsedText",
    "SandboxServer",
    "STATE_KEY",
    "SandboxState",
    "create_app",
    "parse_html",
    "parse_markdown",
    "parse_markdown_v2",
    "run_forever",
    "start_server",
]

BOT_FIRST_NAME = "Sandbox Support Bot"
BOT_USERNAME = "sandbox_support_bot"

MAX_MESSAGE_LENGTH = 4096  # UTF-16 code units after entity parsing, like Telegram
MAX_CALLBACK_DATA_BYTES = 64
MAX_CALLBACK_ANSWER_LENGTH = 200
MAX_DOWNLOAD_SIZE = 20 * 1024 * 1024  # getFile refuses bigger files for cloud bots
MAX_UPLOAD_SIZE = 64 * 1024 * 1024  # what the control API accepts from the "customer"
DEFAULT_CALLBACK_QUERY_TTL = 15.0  # seconds Telegram waits for answerCallbackQuery
MAX_POLL_TIMEOUT = 50.0

_TOKEN_RE = re.compile(r"^(\d+):[A-Za-z0-9_-]+$")
_COMMAND_RE = re.compile(r"^/[A-Za-z0-9_]{1,32}(?:@[A-Za-z0-9_]{1,64})?(?=\s|$)")
_BOT_COMMAND_NAME_RE = re.compile(r"^[a-z0-9_]{1,32}$")

# Update types Telegram delivers when getUpdates never named allowed_updates.
_DEFAULT_EXCLUDED_UPDATES = frozenset(
    {"chat_member", "message_reaction", "message_reaction_count"}
)

_CHAT_ACTIONS = frozenset(
    {
        "typing",
        "upload_photo",
        "record_video",
        "upload_video",
        "record_voice",
        "upload_voice",
        "upload_document",
        "choose_sticker",
        "find_location",
        "record_video_note",
        "upload_video_note",
    }
)

_NOT_MODIFIED = (
    "Bad Request: message is not modified: specified new message content and reply markup "
    "are exactly the same as a current content and reply markup of the message"
)
_QUERY_TOO_OLD = (
    "Bad Request: query is too old and response timeout expired or query ID is invalid"
)


class BotApiError(Exception):
    """An error answered to the bot in the Bot API's ``{"ok": false, ...}`` format."""

    def __init__(self, code: int, description: str) -> None:
        super().__init__(description)
        self.code = code
        self.description = description


def _bad_request(detail: str) -> BotApiError:
    return BotApiError(400, f"Bad Request: {detail}")


class ControlError(Exception):
    """An error answered on the control API as ``{"error": "..."}``."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _now() -> int:
    return int(time.time())


def utf16_len(text: str) -> int:
    """Length in UTF-16 code units: the unit Telegram uses for offsets and limits."""
    return len(text.encode("utf-16-le")) // 2


# --------------------------------------------------------------------------------------
# Formatting (parse_mode) parsers
# --------------------------------------------------------------------------------------


class EntityParseError(Exception):
    """Malformed markup; becomes ``Bad Request: can't parse entities: ...``."""


@dataclass(frozen=True)
class ParsedText:
    """Plain text plus Telegram ``MessageEntity`` dicts (UTF-16 offsets)."""

    text: str
    entities: tuple[dict[str, Any], ...] = ()


def _byte_offset(source: str, index: int) -> int:
    # Telegram reports positions as UTF-8 byte offsets into the original text.
    return len(source[:index].encode("utf-8"))


def _finalize(text: str, entities: Iterable[dict[str, Any]]) -> ParsedText:
    """Trim surrounding whitespace like Telegram does, shifting and clipping entities."""
    stripped = text.strip()
    lead = utf16_len(text[: len(text) - len(text.lstrip())])
    total = utf16_len(stripped)
    result: list[dict[str, Any]] = []
    for entity in entities:
        start = max(0, entity["offset"] - lead)
        end = min(total, entity["offset"] + entity["length"] - lead)
        if end > start:
            result.append({**entity, "offset": start, "length": end - start})
    result.sort(key=lambda e: (e["offset"], -e["length"]))
    return ParsedText(stripped, tuple(result))


class _TextBuilder:
    """Accumulates output text while tracking its UTF-16 length for entity offsets."""

    def __init__(self) -> None:
        self._parts: list[str] = []
        self.u16 = 0

    def add(self, chunk: str) -> None:
        self._parts.append(chunk)
        self.u16 += utf16_len(chunk)

    def text(self) -> str:
        return "".join(self._parts)


_HTML_TAGS: dict[str, str] = {
    "b": "bold",
    "strong": "bold",
    "i": "italic",
    "em": "italic",
    "u": "underline",
    "ins": "underline",
    "s": "strikethrough",
    "strike": "strikethrough",
    "del": "strikethrough",
    "a": "text_link",
    "code": "code",
    "pre": "pre",
    "tg-spoiler": "spoiler",
    "span": "spoiler",
    "blockquote": "blockquote",
    "tg-emoji": "custom_emoji",
}

_HTML_ENTITY_RE = re.compile(r"&(?:#([0-9]{1,8})|#[xX]([0-9a-fA-F]{1,8})|(lt|gt|amp|quot));")
_HTML_NAMED = {"lt": "<", "gt": ">", "amp": "&", "quot": '"'}


@dataclass
class _OpenTag:
    name: str
    start: int  # UTF-16 offset in the output
    attrs: dict[str, str]


def _decode_html_entity(match: re.Match[str]) -> str | None:
    decimal, hexadecimal, named = match.groups()
    if named:
        return _HTML_NAMED[named]
    code = int(decimal) if decimal else int(hexadecimal, 16)
    if code == 0 or code > 0x10FFFF or 0xD800 <= code <= 0xDFFF:
        return None
    return chr(code)


class _HtmlParser:
    """Telegram's HTML subset, with the real parser's error messages.

    Follows the documented contract strictly: every ``<`` and ``&`` that is not part
    of a supported tag or a valid entity is an error (the production parser is a bit
    more forgiving with a lone ``&``, but the docs require escaping it, and a bot that
    forgets ``html.escape`` on user-provided text is exactly what the sandbox must catch).
    """

    def __init__(self, source: str) -> None:
        self.src = source
        self.i = 0
        self.out = _TextBuilder()
        self.stack: list[_OpenTag] = []
        self.entities: list[dict[str, Any]] = []

    def error(self, message: str) -> EntityParseError:
        return EntityParseError(message)

    def offset(self, index: int) -> int:
        return _byte_offset(self.src, index)

    def run(self) -> ParsedText:
        while self.i < len(self.src):
            char = self.src[self.i]
            if char == "&":
                self._entity_reference()
            elif char == "<":
                if self.src.startswith("</", self.i):
                    self._end_tag()
                else:
                    self._start_tag()
            else:
                # Copy the whole run of ordinary characters at once.
                end = self.i + 1
                while end < len(self.src) and self.src[end] not in "&<":
                    end += 1
                self.out.add(self.src[self.i : end])
                self.i = end
        if self.stack:
            raise self.error(
                f'Can\'t find end tag corresponding to start tag "{self.stack[-1].name}"'
            )
        return _finalize(self.out.text(), self.entities)

    def _entity_reference(self) -> None:
        match = _HTML_ENTITY_RE.match(self.src, self.i)
        decoded = _decode_html_entity(match) if match else None
        if match is None or decoded is None:
            raise self.error(
                f"Unsupported HTML entity or unescaped \"&\" at byte offset {self.offset(self.i)}"
                ' (write "&" as "&amp;")'
            )
        self.out.add(decoded)
        self.i = match.end()

    def _skip_spaces(self, j: int) -> int:
        while j < len(self.src) and self.src[j].isspace():
            j += 1
        return j

    def _start_tag(self) -> None:
        begin = self.i
        j = begin + 1
        while j < len(self.src) and not self.src[j].isspace() and self.src[j] != ">":
            j += 1
        if j >= len(self.src):
            raise self.error(f"Unclosed start tag at byte offset {self.offset(begin)}")
        name = self.src[begin + 1 : j].lower()
        if name not in _HTML_TAGS:
            raise self.error(f'Unsupported start tag "{name}" at byte offset {self.offset(begin)}')
        attrs, j = self._attributes(name, begin, j)
        if name == "span" and attrs.get("class") != "tg-spoiler":
            raise self.error(
                f'Tag "span" must have class "tg-spoiler" at byte offset {self.offset(begin)}'
            )
        if name == "tg-emoji" and not attrs.get("emoji-id", "").isdigit():
            raise self.error(
                f'Tag "tg-emoji" must have a numeric attribute "emoji-id" '
                f"at byte offset {self.offset(begin)}"
            )
        self.stack.append(_OpenTag(name, self.out.u16, attrs))
        self.i = j

    def _attributes(self, name: str, begin: int, j: int) -> tuple[dict[str, str], int]:
        attrs: dict[str, str] = {}
        src = self.src
        while True:
            j = self._skip_spaces(j)
            if j >= len(src):
                raise self.error(f"Unclosed start tag at byte offset {self.offset(begin)}")
            if src[j] == ">":
                return attrs, j + 1
            attr_begin = j
            while j < len(src) and not src[j].isspace() and src[j] not in "=>":
                j += 1
            attr_name = src[attr_begin:j].lower()
            if not attr_name:
                raise self.error(
                    f'Empty attribute name in the tag "{name}" at byte offset {self.offset(begin)}'
                )
            j = self._skip_spaces(j)
            if name == "blockquote" and attr_name == "expandable" and src[j : j + 1] != "=":
                attrs[attr_name] = ""  # the one valueless attribute Telegram accepts
                continue
            if j >= len(src) or src[j] != "=":
                raise self.error(
                    "Expected equal sign in declaration of an attribute of the tag "
                    f'"{name}" at byte offset {self.offset(begin)}'
                )
            value, j = self._attribute_value(begin, self._skip_spaces(j + 1))
            attrs.setdefault(attr_name, value)

    def _attribute_value(self, begin: int, j: int) -> tuple[str, int]:
        src = self.src
        if j >= len(src):
            raise self.error(f"Unclosed start tag at byte offset {self.offset(begin)}")
        if src[j] in "\"'":
            quote = src[j]
            end = src.find(quote, j + 1)
            if end < 0:
                raise self.error(f"Unclosed start tag at byte offset {self.offset(begin)}")
            # Entities are decoded inside values; a stray "&" in a URL stays literal.
            raw = src[j + 1 : end]
            value = _HTML_ENTITY_RE.sub(lambda m: _decode_html_entity(m) or m.group(0), raw)
            return value, end + 1
        token_begin = j
        while j < len(src) and (src[j].isalnum() or src[j] in ".-"):
            j += 1
        if j >= len(src):
            raise self.error(f"Unclosed start tag at byte offset {self.offset(begin)}")
        if not src[j].isspace() and src[j] != ">":
            raise self.error(
                f"Unexpected end of name token at byte offset {self.offset(token_begin)}"
            )
        return src[token_begin:j].lower(), j

    def _end_tag(self) -> None:
        begin = self.i
        if not self.stack:
            raise self.error(f"Unexpected end tag at byte offset {self.offset(begin)}")
        j = begin + 2
        while j < len(self.src) and not self.src[j].isspace() and self.src[j] != ">":
            j += 1
        end_name = self.src[begin + 2 : j].lower()
        j = self._skip_spaces(j)
        if j >= len(self.src) or self.src[j] != ">":
            raise self.error(f"Unclosed end tag at byte offset {self.offset(begin)}")
        top = self.stack[-1]
        if end_name and end_name != top.name:
            raise self.error(
                f"Unmatched end tag at byte offset {self.offset(begin)}, "
                f'expected "</{top.name}>", found "</{end_name}>"'
            )
        self.stack.pop()
        self.i = j + 1
        self._close(top)

    def _close(self, tag: _OpenTag) -> None:
        length = self.out.u16 - tag.start
        if length <= 0:
            return  # Telegram silently drops empty entities
        entity: dict[str, Any] = {
            "type": _HTML_TAGS[tag.name],
            "offset": tag.start,
            "length": length,
        }
        if tag.name == "a":
            href = tag.attrs.get("href", "").strip()
            if not href:
                return
            entity["url"] = href
        elif tag.name == "code":
            language = tag.attrs.get("class", "")
            parent = self.stack[-1] if self.stack else None
            if language.startswith("language-") and parent is not None and parent.name == "pre":
                # <pre><code class="language-x"> is one pre entity with a language.
                parent.attrs["\0language"] = language.removeprefix("language-")
                return
        elif tag.name == "pre" and tag.attrs.get("\0language"):
            entity["language"] = tag.attrs["\0language"]
        elif tag.name == "blockquote" and "expandable" in tag.attrs:
            entity["type"] = "expandable_blockquote"
        elif tag.name == "tg-emoji":
            entity["custom_emoji_id"] = tag.attrs["emoji-id"]
        self.entities.append(entity)


def parse_html(source: str) -> ParsedText:
    """Parse Telegram HTML; raise :class:`EntityParseError` on malformed markup."""
    return _HtmlParser(source).run()


_MDV2_RESERVED = frozenset("_*[]()~`>#+-=|{}.!")
_MDV2_MARKERS: dict[str, tuple[str, str]] = {
    # marker -> (entity type, name used in error messages)
    "*": ("bold", "Bold"),
    "_": ("italic", "Italic"),
    "__": ("underline", "Underline"),
    "~": ("strikethrough", "Strikethrough"),
    "||": ("spoiler", "Spoiler"),
    "[": ("text_link", "TextUrl"),
}


class _MarkdownV2Parser:
    """A compact MarkdownV2 parser: enough to reject what Telegram rejects in practice."""

    def __init__(self, source: str) -> None:
        self.src = source
        self.i = 0
        self.out = _TextBuilder()
        self.stack: list[tuple[str, int, int]] = []  # (marker, utf16 start, source index)
        self.entities: list[dict[str, Any]] = []

    def offset(self, index: int) -> int:
        return _byte_offset(self.src, index)

    def run(self) -> ParsedText:
        src = self.src
        while self.i < len(src):
            char = src[self.i]
            if char == "\\" and self.i + 1 < len(src) and 0 < ord(src[self.i + 1]) <= 126:
                self.out.add(src[self.i + 1])
                self.i += 2
            elif char == "`":
                self._code()
            elif char == ">" and (self.i == 0 or src[self.i - 1] == "\n"):
                self.i += 1  # blockquote marker at line start; quote entity not modelled
            elif char == "]" and self.stack and self.stack[-1][0] == "[":
                self._close_link()
            elif char == "!" and src.startswith("![", self.i):
                self.i += 1  # custom emoji "![👍](tg://emoji?id=...)": parsed as a link
            elif char in "*_~|[":
                self._marker()
            elif char in _MDV2_RESERVED:
                raise EntityParseError(
                    f"Character '{char}' is reserved and must be escaped with the preceding '\\'"
                )
            else:
                self.out.add(char)
                self.i += 1
        if self.stack:
            marker, _, index = self.stack[-1]
            raise EntityParseError(
                f"Can't find end of {_MDV2_MARKERS[marker][1]} entity "
                f"at byte offset {self.offset(index)}"
            )
        return _finalize(self.out.text(), self.entities)

    def _marker(self) -> None:
        src = self.src
        marker = src[self.i]
        if src.startswith("__", self.i) or src.startswith("||", self.i):
            marker = src[self.i : self.i + 2]
        if marker == "|":
            raise EntityParseError(
                "Character '|' is reserved and must be escaped with the preceding '\\'"
            )
        if self.stack and self.stack[-1][0] == marker and marker != "[":
            _, start, _ = self.stack.pop()
            self._add_entity(_MDV2_MARKERS[marker][0], start)
        elif any(open_marker == marker for open_marker, _, _ in self.stack):
            _, _, index = next(item for item in self.stack if item[0] == marker)
            raise EntityParseError(
                f"Can't find end of {_MDV2_MARKERS[marker][1]} entity "
                f"at byte offset {self.offset(index)}"
            )
        else:
            self.stack.append((marker, self.out.u16, self.i))
        self.i += len(marker)

    def _add_entity(self, entity_type: str, start: int, **extra: Any) -> None:
        if self.out.u16 > start:
            self.entities.append(
                {"type": entity_type, "offset": start, "length": self.out.u16 - start, **extra}
            )

    def _close_link(self) -> None:
        _, start, index = self.stack.pop()
        self.i += 1
        if not self.src.startswith("(", self.i):
            return  # "[text]" without a URL: plain text, no entity
        url_chars: list[str] = []
        j = self.i + 1
        while j < len(self.src) and self.src[j] != ")":
            if self.src[j] == "\\" and j + 1 < len(self.src):
                j += 1
            url_chars.append(self.src[j])
            j += 1
        if j >= len(self.src):
            raise EntityParseError(
                f"Can't find end of a URL at byte offset {self.offset(self.i)}"
            )
        self.i = j + 1
        url = "".join(url_chars)
        if url.startswith("tg://emoji?id="):
            self._add_entity("custom_emoji", start, custom_emoji_id=url.split("=", 1)[1])
        else:
            self._add_entity("text_link", start, url=url)

    def _code(self) -> None:
        src = self.src
        is_pre = src.startswith("```", self.i)
        fence = "```" if is_pre else "`"
        begin = self.i
        j = self.i + len(fence)
        language = ""
        if is_pre:
            newline = src.find("\n", j)
            first_line = src[j:newline] if newline >= 0 else ""
            if newline >= 0 and first_line and not any(c.isspace() for c in first_line):
                language = first_line
                j = newline + 1
        start = self.out.u16
        chars: list[str] = []
        while j < len(src) and not src.startswith(fence, j):
            if src[j] == "\\" and j + 1 < len(src) and src[j + 1] in "`\\":
                j += 1
            chars.append(src[j])
            j += 1
        if j >= len(src):
            name = "Pre" if is_pre else "Code"
            raise EntityParseError(
                f"Can't find end of {name} entity at byte offset {self.offset(begin)}"
            )
        self.out.add("".join(chars))
        self.i = j + len(fence)
        if is_pre:
            extra = {"language": language} if language else {}
            self._add_entity("pre", start, **extra)
        else:
            self._add_entity("code", start)


def parse_markdown_v2(source: str) -> ParsedText:
    """Parse MarkdownV2; raise :class:`EntityParseError` like Telegram does."""
    return _MarkdownV2Parser(source).run()


_LEGACY_MARKERS = {"*": "bold", "_": "italic", "`": "code", "[": "text_link"}


def parse_markdown(source: str) -> ParsedText:
    """Legacy ``Markdown``: ``*bold* _italic_ `code` ```pre``` [text](url)``, no nesting."""
    out = _TextBuilder()
    entities: list[dict[str, Any]] = []
    i = 0
    while i < len(source):
        char = source[i]
        if char == "\\" and i + 1 < len(source) and source[i + 1] in "_*`[":
            out.add(source[i + 1])
            i += 2
            continue
        if char not in _LEGACY_MARKERS:
            out.add(char)
            i += 1
            continue
        closing = {"[": "]"}.get(char, char)
        fence = "```" if source.startswith("```", i) else char
        end = source.find(fence if fence == "```" else closing, i + len(fence))
        if end < 0:
            raise EntityParseError(
                f"Can't find end of the entity starting at byte offset {_byte_offset(source, i)}"
            )
        start = out.u16
        out.add(source[i + len(fence) : end])
        i = end + len(fence if fence == "```" else closing)
        entity: dict[str, Any] = {"type": "pre" if fence == "```" else _LEGACY_MARKERS[char]}
        if char == "[":
            url_end = source.find(")", i) if source.startswith("(", i) else -1
            if url_end < 0:
                continue
            entity["url"] = source[i + 1 : url_end]
            i = url_end + 1
        if out.u16 > start:
            entities.append({**entity, "offset": start, "length": out.u16 - start})
    return _finalize(out.text(), entities)


_PARSERS: dict[str, Callable[[str], ParsedText]] = {
    "html": parse_html,
    "markdownv2": parse_markdown_v2,
    "markdown": parse_markdown,
}


def _explicit_entities(entities: Any) -> list[dict[str, Any]]:
    """Validate the ``entities`` parameter (used instead of parse_mode)."""
    if entities is None:
        return []
    valid = isinstance(entities, list) and all(
        isinstance(e, dict)
        and isinstance(e.get("type"), str)
        and isinstance(e.get("offset"), int)
        and isinstance(e.get("length"), int)
        for e in entities
    )
    if not valid:
        raise _bad_request("can't parse entities JSON object")
    return entities


def _parse_text(text: str, parse_mode: str | None, entities: Any) -> ParsedText:
    """Turn a sendMessage/editMessageText text into plain text + entities, or fail."""
    if not parse_mode:
        # Explicit entities refer to the untrimmed text; _finalize shifts them like Telegram.
        return _finalize(text, _explicit_entities(entities))
    parser = _PARSERS.get(parse_mode.lower())
    if parser is None:
        raise _bad_request("unsupported parse_mode")
    try:
        return parser(text)
    except EntityParseError as exc:
        raise _bad_request(f"can't parse entities: {exc}") from exc


# --------------------------------------------------------------------------------------
# State
# --------------------------------------------------------------------------------------


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


class SandboxState:
    """All sandbox data: users/chats/messages, the update queue, files and callbacks."""

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
        self._next_update_id = 1
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
            message_id=chat.next_message_id, chat_id=chat.id, date=_now(), **fields
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
        extension = _extension(file_name, mime_type)
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
            self.updates = [u for u in self.updates if u["update_id"] >= offset]
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
        return self._deliverable()[:limit]

    async def close(self) -> None:
        """Release long polls so the HTTP server can shut down promptly."""
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


def _extension(file_name: str | None, mime_type: str) -> str:
    if file_name and "." in file_name:
        return "." + file_name.rsplit(".", 1)[1].lower()
    return _FOLDER_EXTENSIONS.get(mime_type) or mimetypes.guess_extension(mime_type) or ""


# --------------------------------------------------------------------------------------
# Bot API parameters
# --------------------------------------------------------------------------------------


class Params:
    """Request parameters from JSON, urlencoded or multipart bodies and the query string.

    Form bodies carry every value as a string (objects as JSON strings, booleans as
    ``true``/``false``), JSON bodies carry native values; the getters accept both.
    """

    def __init__(self, values: dict[str, Any]) -> None:
        self.values = values

    def raw(self, name: str) -> Any:
        return self.values.get(name)

    def has(self, name: str) -> bool:
        return self.values.get(name) not in (None, "")

    def string(self, name: str, *, required: bool = False) -> str | None:
        value = self.values.get(name)
        if value is None or value == "":
            if required:
                raise _bad_request(f"{name} is empty")
            return None
        if isinstance(value, FileField):
            raise _bad_request(f"{name} must be a string")
        return value if isinstance(value, str) else json.dumps(value)

    def integer(
        self, name: str, *, required: bool = False, default: int | None = None
    ) -> int | None:
        value = self.values.get(name)
        if value is None or value == "":
            if required:
                raise _bad_request(f"{name} is empty")
            return default
        if isinstance(value, bool):
            raise _bad_request(f"invalid {name} specified")
        try:
            return int(value)
        except (TypeError, ValueError):
            raise _bad_request(f"invalid {name} specified") from None

    def number(self, name: str, default: float) -> float:
        value = self.values.get(name)
        if value is None or value == "":
            return default
        try:
            return float(value)
        except (TypeError, ValueError):
            raise _bad_request(f"invalid {name} specified") from None

    def flag(self, name: str) -> bool:
        value = self.values.get(name)
        if isinstance(value, str):
            return value.strip().lower() in ("true", "1")
        return bool(value)

    def obj(self, name: str, *, what: str = "JSON object") -> Any:
        value = self.values.get(name)
        if value is None or value == "":
            return None
        if isinstance(value, str):
            try:
                return json.loads(value)
            except ValueError:
                raise _bad_request(f"can't parse {what}") from None
        return value

    def chat_ref(self) -> int | str:
        value = self.values.get("chat_id")
        if value is None or value == "":
            raise _bad_request("chat_id is empty")
        if isinstance(value, str) and value.startswith("@"):
            return value
        try:
            return int(value)
        except (TypeError, ValueError):
            raise _bad_request("chat not found") from None


async def _read_params(request: web.Request) -> Params:
    values: dict[str, Any] = dict(request.query)
    if request.body_exists:
        if request.content_type == "application/json":
            try:
                body = await request.json()
            except ValueError:
                raise _bad_request("can't parse JSON object") from None
            if not isinstance(body, dict):
                raise _bad_request("JSON object expected")
            values.update(body)
        elif request.content_type in ("multipart/form-data", "application/x-www-form-urlencoded"):
            try:
                form = await request.post()
            except ValueError:
                raise _bad_request("can't parse request body") from None
            values.update(form.items())
    return Params(values)


def _validate_reply_markup(markup: Any) -> dict[str, Any] | None:
    if markup is None:
        return None
    if not isinstance(markup, dict):
        raise _bad_request("can't parse reply keyboard markup JSON object")
    if "inline_keyboard" in markup:
        _validate_inline_keyboard(markup["inline_keyboard"])
    elif not {"keyboard", "remove_keyboard", "force_reply"} & markup.keys():
        raise _bad_request("can't parse reply keyboard markup JSON object")
    return markup


_BUTTON_ACTIONS = (
    "url",
    "callback_data",
    "web_app",
    "login_url",
    "switch_inline_query",
    "switch_inline_query_current_chat",
    "switch_inline_query_chosen_chat",
    "copy_text",
    "callback_game",
    "pay",
)


def _validate_inline_keyboard(rows: Any) -> None:
    if not isinstance(rows, list) or not all(isinstance(row, list) for row in rows):
        raise _bad_request(
            'field "inline_keyboard" of the InlineKeyboardMarkup must be an Array of Arrays'
        )
    for row in rows:
        for button in row:
            if not isinstance(button, dict) or not isinstance(button.get("text"), str):
                raise _bad_request(
                    'can\'t parse inline keyboard button: Field "text" must be of type String'
                )
            actions = [key for key in _BUTTON_ACTIONS if key in button]
            if not actions:
                raise _bad_request(
                    "can't parse inline keyboard button: "
                    "Text buttons are unallowed in the inline keyboard"
                )
            if "callback_data" in button:
                data = button["callback_data"]
                size = len(data.encode("utf-8")) if isinstance(data, str) else 0
                if not 1 <= size <= MAX_CALLBACK_DATA_BYTES:
                    raise _bad_request("BUTTON_DATA_INVALID")
            if "url" in button and not re.match(r"^(https?|tg)://\S+$", str(button["url"])):
                raise _bad_request("BUTTON_URL_INVALID")


def _reply_markup(params: Params) -> dict[str, Any] | None:
    return _validate_reply_markup(
        params.obj("reply_markup", what="reply keyboard markup JSON object")
    )


def _markup_key(markup: dict[str, Any] | None) -> str:
    return json.dumps(markup, sort_keys=True) if markup else ""


# --------------------------------------------------------------------------------------
# Bot API methods
# --------------------------------------------------------------------------------------

_Method = Callable[[Params], Awaitable[Any]]


class BotApi:
    """The ``/bot{token}/{method}`` half of the server."""

    def __init__(self, state: SandboxState, token: str) -> None:
        self.state = state
        self._token = token
        self.methods: dict[str, _Method] = {
            "getme": self.get_me,
            "logout": self.always_true,
            "close": self.always_true,
            "deletewebhook": self.delete_webhook,
            "setwebhook": self.set_webhook,
            "getwebhookinfo": self.get_webhook_info,
            "setmycommands": self.set_my_commands,
            "getmycommands": self.get_my_commands,
            "deletemycommands": self.delete_my_commands,
            "setmydescription": self.always_true,
            "setmyshortdescription": self.always_true,
            "setmyname": self.always_true,
            "setchatmenubutton": self.always_true,
            "getupdates": self.get_updates,
            "sendmessage": self.send_message,
            "editmessagetext": self.edit_message_text,
            "editmessagereplymarkup": self.edit_message_reply_markup,
            "deletemessage": self.delete_message,
            "answercallbackquery": self.answer_callback_query,
            "sendchataction": self.send_chat_action,
            "getfile": self.get_file,
        }

    def token_matches(self, token: str) -> bool:
        return hmac.compare_digest(token.encode(), self._token.encode())

    # -- HTTP glue --------------------------------------------------------------------
    async def handle(self, request: web.Request) -> web.Response:
        if not self.token_matches(request.match_info["token"]):
            return _bot_error(401, "Unauthorized")
        method = self.methods.get(request.match_info["method"].lower())
        if method is None:
            return _bot_error(404, "Not Found: method not found")
        try:
            params = await _read_params(request)
            result = await method(params)
        except BotApiError as exc:
            return _bot_error(exc.code, exc.description)
        return web.json_response({"ok": True, "result": result})

    async def download(self, request: web.Request) -> web.StreamResponse:
        if not self.token_matches(request.match_info["token"]):
            return _bot_error(401, "Unauthorized")
        stored = self.state.file_by_path(request.match_info["path"])
        if stored is None:
            return _bot_error(404, "Not Found")
        return web.Response(body=stored.data, content_type=stored.mime_type)

    # -- lookups ----------------------------------------------------------------------
    def _chat(self, params: Params, *, sending: bool = False) -> SandboxChat:
        chat = self.state.find_chat(params.chat_ref())
        if chat is None:
            raise _bad_request("chat not found")
        if sending and chat.blocked:
            raise BotApiError(403, "Forbidden: bot was blocked by the user")
        return chat

    def _message_id(self, params: Params) -> int:
        message_id = params.integer("message_id")
        if message_id is None:
            raise _bad_request("message identifier is not specified")
        return message_id

    def _message_to_edit(self, params: Params) -> StoredMessage:
        if params.has("inline_message_id"):
            raise _bad_request("MESSAGE_ID_INVALID")  # no inline mode in the sandbox
        chat = self._chat(params)
        message = chat.messages.get(self._message_id(params))
        if message is None or message.deleted:
            raise _bad_request("message to edit not found")
        if message.sender != "bot":
            raise _bad_request("message can't be edited")
        return message

    # -- simple methods ---------------------------------------------------------------
    async def always_true(self, params: Params) -> bool:
        return True

    async def get_me(self, params: Params) -> dict[str, Any]:
        return {
            **self.state.bot_user,
            "can_join_groups": False,
            "can_read_all_group_messages": False,
            "supports_inline_queries": False,
            "can_connect_to_business": False,
            "has_main_web_app": False,
        }

    async def delete_webhook(self, params: Params) -> bool:
        self.state.webhook = {}
        if params.flag("drop_pending_updates"):
            self.state.updates.clear()
        return True

    async def set_webhook(self, params: Params) -> bool:
        url = params.string("url") or ""
        if url and not url.startswith("https://"):
            raise _bad_request("bad webhook: An HTTPS URL must be provided for webhook")
        # Stored only: the sandbox never pushes updates, the bot must long-poll.
        allowed = params.obj("allowed_updates")
        self.state.webhook = {"url": url, "allowed_updates": allowed} if url else {}
        if params.flag("drop_pending_updates"):
            self.state.updates.clear()
        return True

    async def get_webhook_info(self, params: Params) -> dict[str, Any]:
        info: dict[str, Any] = {
            "url": self.state.webhook.get("url", ""),
            "has_custom_certificate": False,
            "pending_update_count": len(self.state.updates),
        }
        if self.state.webhook.get("allowed_updates"):
            info["allowed_updates"] = self.state.webhook["allowed_updates"]
        return info

    def _commands_key(self, params: Params) -> str:
        scope = params.obj("scope") or {"type": "default"}
        return f"{json.dumps(scope, sort_keys=True)}|{params.string('language_code') or ''}"

    async def set_my_commands(self, params: Params) -> bool:
        commands = params.obj("commands", what="commands JSON object")
        if not isinstance(commands, list) or len(commands) > 100:
            raise _bad_request("can't parse commands JSON object")
        for command in commands:
            name = str(command.get("command", "")) if isinstance(command, dict) else ""
            if not _BOT_COMMAND_NAME_RE.match(name):
                raise _bad_request("BOT_COMMAND_INVALID")
            if not 1 <= len(str(command.get("description", "")).strip()) <= 256:
                raise _bad_request("BOT_COMMAND_DESCRIPTION_INVALID")
        self.state.commands[self._commands_key(params)] = [
            {"command": c["command"], "description": c["description"]} for c in commands
        ]
        return True

    async def get_my_commands(self, params: Params) -> list[dict[str, str]]:
        return self.state.commands.get(self._commands_key(params), [])

    async def delete_my_commands(self, params: Params) -> bool:
        self.state.commands.pop(self._commands_key(params), None)
        return True

    # -- updates ----------------------------------------------------------------------
    async def get_updates(self, params: Params) -> list[dict[str, Any]]:
        if self.state.webhook.get("url"):
            raise BotApiError(
                409,
                "Conflict: can't use getUpdates method while webhook is active; "
                "use deleteWebhook to delete the webhook first",
            )
        offset = params.integer("offset", default=0) or 0
        limit = min(max(params.integer("limit", default=100) or 100, 1), 100)
        timeout = min(max(params.number("timeout", 0.0), 0.0), MAX_POLL_TIMEOUT)
        allowed = params.obj("allowed_updates")
        if isinstance(allowed, list):
            # An empty list restores the default set, as documented.
            self.state.allowed_updates = frozenset(map(str, allowed)) if allowed else None
        return await self.state.get_updates(offset, limit, timeout)

    # -- messages ---------------------------------------------------------------------
    def _parsed_text(self, params: Params) -> tuple[str, ParsedText]:
        text = params.string("text") or ""
        if not text.strip():
            raise _bad_request("message text is empty")
        parsed = _parse_text(text, params.string("parse_mode"), params.obj("entities"))
        if not parsed.text:
            raise _bad_request("message text is empty")
        if utf16_len(parsed.text) > MAX_MESSAGE_LENGTH:
            raise _bad_request("message is too long")
        return text, parsed

    def _reply_target(self, params: Params, chat: SandboxChat) -> int | None:
        reply = params.obj("reply_parameters")
        if isinstance(reply, dict):
            target = reply.get("message_id")
            allow_missing = bool(reply.get("allow_sending_without_reply"))
        else:
            target = params.integer("reply_to_message_id")
            allow_missing = params.flag("allow_sending_without_reply")
        if target is None:
            return None
        if not isinstance(target, int) or isinstance(target, bool):
            raise _bad_request("invalid reply_parameters specified")
        message = chat.messages.get(target)
        if message is None or message.deleted:
            if allow_missing:
                return None
            raise _bad_request("message to be replied not found")
        return message.message_id

    async def send_message(self, params: Params) -> dict[str, Any]:
        chat = self._chat(params, sending=True)
        text, parsed = self._parsed_text(params)
        markup = _reply_markup(params)
        preview = params.obj("link_preview_options")
        if preview is None and params.flag("disable_web_page_preview"):
            preview = {"is_disabled": True}
        message = self.state.add_message(
            chat,
            sender="bot",
            kind="text",
            text=text,
            parse_mode=params.string("parse_mode"),
            parsed=parsed,
            reply_markup=markup,
            reply_to_message_id=self._reply_target(params, chat),
            link_preview_options=preview if isinstance(preview, dict) else None,
            disable_notification=params.flag("disable_notification"),
        )
        await self.state.notify()
        return self.state.message_to_telegram(message)

    async def edit_message_text(self, params: Params) -> dict[str, Any]:
        message = self._message_to_edit(params)
        if message.kind != "text":
            raise _bad_request("there is no text in the message to edit")
        text, parsed = self._parsed_text(params)
        markup = _reply_markup(params)
        if markup is not None and "inline_keyboard" not in markup:
            raise _bad_request("inline keyboard expected")
        # Like Telegram, an edit without reply_markup removes the inline keyboard.
        same_markup = _markup_key(markup) == _markup_key(message.inline_markup())
        if parsed == message.parsed and same_markup:
            raise BotApiError(400, _NOT_MODIFIED)
        message.text, message.parsed, message.reply_markup = text, parsed, markup
        message.parse_mode = params.string("parse_mode")
        preview = params.obj("link_preview_options")
        if isinstance(preview, dict):
            message.link_preview_options = preview
        return await self._edited(message)

    async def edit_message_reply_markup(self, params: Params) -> dict[str, Any]:
        message = self._message_to_edit(params)
        markup = _reply_markup(params)
        if markup is not None and "inline_keyboard" not in markup:
            raise _bad_request("inline keyboard expected")
        if _markup_key(markup) == _markup_key(message.inline_markup()):
            raise BotApiError(400, _NOT_MODIFIED)
        message.reply_markup = markup
        return await self._edited(message)

    async def _edited(self, message: StoredMessage) -> dict[str, Any]:
        message.edit_date = _now()
        message.edit_count += 1
        await self.state.notify()
        return self.state.message_to_telegram(message)

    async def delete_message(self, params: Params) -> bool:
        chat = self._chat(params)
        message = chat.messages.get(self._message_id(params))
        if message is None or message.deleted:
            raise _bad_request("message to delete not found")
        message.deleted = True
        await self.state.notify()
        return True

    async def answer_callback_query(self, params: Params) -> bool:
        callback_id = params.string("callback_query_id")
        if callback_id is None:
            raise _bad_request("query_id is empty")
        record = self.state.live_callback(callback_id)
        if record is None:
            raise BotApiError(400, _QUERY_TOO_OLD)
        text = params.string("text")
        if text is not None and len(text) > MAX_CALLBACK_ANSWER_LENGTH:
            raise _bad_request("MESSAGE_TOO_LONG")
        record.answered = True
        record.text = text
        record.show_alert = params.flag("show_alert")
        record.url = params.string("url")
        await self.state.notify()
        return True

    async def send_chat_action(self, params: Params) -> bool:
        chat = self._chat(params, sending=True)
        action = params.string("action")
        if action is None:
            raise _bad_request("action is empty")
        if action not in _CHAT_ACTIONS:
            raise _bad_request("wrong parameter action in request")
        chat.actions.append({"action": action, "date": _now()})
        return True

    async def get_file(self, params: Params) -> dict[str, Any]:
        file_id = params.string("file_id")
        if file_id is None:
            raise _bad_request("file_id is empty")
        stored = self.state.files.get(file_id)
        if stored is None:
            raise _bad_request("invalid file_id")
        if stored.size > MAX_DOWNLOAD_SIZE:
            raise _bad_request("file is too big")
        return {
            "file_id": stored.file_id,
            "file_unique_id": stored.file_unique_id,
            "file_size": stored.size,
            "file_path": stored.file_path,
        }


def _bot_error(code: int, description: str) -> web.Response:
    return web.json_response(
        {"ok": False, "error_code": code, "description": description}, status=code
    )


# --------------------------------------------------------------------------------------
# Control API (the customer side)
# --------------------------------------------------------------------------------------

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
                "date": _now(),
                "old_chat_member": member if blocked else kicked,
                "new_chat_member": kicked if blocked else member,
            },
        )

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
            name = file_name or f"file{_extension(None, mime_type)}"
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
async def _control_errors(
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


# --------------------------------------------------------------------------------------
# Application and server lifecycle
# --------------------------------------------------------------------------------------


def _bot_id(token: str) -> int:
    match = _TOKEN_RE.match(token)
    if match is None:
        raise ValueError("token must look like '123456:ABC-DEF...' (digits, colon, secret)")
    return int(match.group(1))


STATE_KEY = web.AppKey("sandbox_state", SandboxState)


def create_app(state: SandboxState | None = None, *, token: str) -> web.Application:
    """Build the aiohttp application serving both the Bot API and the control API."""
    state = state if state is not None else SandboxState()
    state.set_bot(_bot_id(token))
    bot_api = BotApi(state, token)
    control = ControlApi(state)
    app = web.Application(client_max_size=MAX_UPLOAD_SIZE, middlewares=[_control_errors])
    app[STATE_KEY] = state
    app.router.add_route("*", "/bot{token}/{method}", bot_api.handle)
    app.router.add_get("/file/bot{token}/{path:.+}", bot_api.download)
    app.router.add_get("/sandbox/api/health", control.health)
    app.router.add_get("/sandbox/api/bot", control.bot_info)
    app.router.add_get("/sandbox/api/chats", control.list_chats)
    app.router.add_post("/sandbox/api/chats/{user_id}/messages", control.post_message)
    app.router.add_get("/sandbox/api/chats/{user_id}/messages", control.list_messages)
    app.router.add_post("/sandbox/api/chats/{user_id}/callback", control.press)
    app.router.add_get("/sandbox/api/chats/{user_id}/actions", control.list_actions)
    app.router.add_post("/sandbox/api/chats/{user_id}/block", control.block)
    app.router.add_get("/sandbox/api/callbacks/{callback_id}", control.callback_answer)

    async def accept_pollers(_: web.Application) -> None:
        state.reopen()

    async def release_pollers(_: web.Application) -> None:
        await state.close()

    app.on_startup.append(accept_pollers)
    app.on_shutdown.append(release_pollers)
    return app


class _RedactingAccessLogger(AbstractAccessLogger):
    """Access log at DEBUG that never prints the token embedded in Bot API paths."""

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        if not self.logger.isEnabledFor(logging.DEBUG):
            return
        path = re.sub(r"/bot[^/]+/", "/bot<token>/", request.path)
        self.logger.debug(
            "%s %s -> %s (%.1f ms)", request.method, path, response.status, time * 1000
        )


@dataclass
class SandboxServer:
    """A running sandbox; ``url`` is the base to give aiogram / TELEGRAM_API_URL."""

    url: str
    port: int
    state: SandboxState
    runner: web.AppRunner

    async def close(self) -> None:
        await self.state.close()
        await self.runner.cleanup()

    async def __aenter__(self) -> SandboxServer:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()


def _public_host(host: str) -> str:
    # A wildcard bind address is not something a client can connect to.
    if host in ("", "0.0.0.0"):
        return "127.0.0.1"
    if host == "::":
        return "[::1]"
    return f"[{host}]" if ":" in host else host


async def start_server(
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    token: str,
    state: SandboxState | None = None,
) -> SandboxServer:
    """Start serving on ``host:port`` (0 = an ephemeral port) and return the handle."""
    state = state if state is not None else SandboxState()
    app = create_app(state, token=token)
    runner = web.AppRunner(
        app,
        access_log_class=_RedactingAccessLogger,
        access_log=logging.getLogger(f"{__name__}.access"),
        shutdown_timeout=1.0,
    )
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    try:
        await site.start()
    except OSError:
        await runner.cleanup()
        raise
    real_port = int(runner.addresses[0][1])
    url = f"http://{_public_host(host)}:{real_port}"
    return SandboxServer(url=url, port=real_port, state=state, runner=runner)


async def _serve_until_stopped(host: str, port: int, token: str) -> None:
    server = await start_server(host, port, token=token)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):  # e.g. Windows: Ctrl-C still works
            loop.add_signal_handler(signum, stop.set)
    logger.info(
        "Telegram Bot API sandbox listening on %s (control API at %s/sandbox/api/)",
        server.url,
        server.url,
    )
    try:
        await stop.wait()
    finally:
        await server.close()
        logger.info("Telegram Bot API sandbox stopped")


def run_forever(host: str = "127.0.0.1", port: int = 8081, token: str = "") -> None:
    """Serve until Ctrl-C / SIGTERM (the ``supportbot sandbox`` command)."""
    _bot_id(token)  # fail fast, before binding, on a malformed token
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve_until_stopped(host, port, token))
