"""Telegram's text formatting: ``parse_mode`` (HTML, MarkdownV2, Markdown) and entities.

A bot's text becomes plain text plus ``MessageEntity`` dicts with UTF-16 offsets, or a
``Bad Request: can't parse entities: ...`` with Telegram's own wording and byte offsets.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from supportbot.sandbox.errors import bad_request

__all__ = [
    "MAX_MESSAGE_LENGTH",
    "EntityParseError",
    "ParsedText",
    "parse_html",
    "parse_markdown",
    "parse_markdown_v2",
    "parse_text",
    "utf16_len",
]

MAX_MESSAGE_LENGTH = 4096  # UTF-16 code units after entity parsing, like Telegram


def utf16_len(text: str) -> int:
    """Length in UTF-16 code units: the unit Telegram uses for offsets and limits."""
    return len(text.encode("utf-16-le")) // 2


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
        _, start, _ = self.stack.pop()
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
        raise bad_request("can't parse entities JSON object")
    return entities


def parse_text(text: str, parse_mode: str | None, entities: Any) -> ParsedText:
    """Turn a sendMessage/editMessageText text into plain text + entities, or fail."""
    if not parse_mode:
        # Explicit entities refer to the untrimmed text; _finalize shifts them like Telegram.
        return _finalize(text, _explicit_entities(entities))
    parser = _PARSERS.get(parse_mode.lower())
    if parser is None:
        raise bad_request("unsupported parse_mode")
    try:
        return parser(text)
    except EntityParseError as exc:
        raise bad_request(f"can't parse entities: {exc}") from exc
