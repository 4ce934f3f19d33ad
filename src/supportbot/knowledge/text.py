"""Text normalisation shared by the FAQ sync (hashing) and the matcher."""

from __future__ import annotations

import hashlib
import re

from supportbot.text import clean

__all__ = ["clean", "clean_question", "text_hash"]

_MENTION = re.compile(r"(?<!\w)@\w+")
_URL = re.compile(r"https?://\S+")


def clean_question(text: str) -> str:
    """A customer question without Telegram noise (mentions, links)."""
    return clean(_URL.sub(" ", _MENTION.sub(" ", text)))


def text_hash(text: str) -> str:
    return hashlib.sha256(clean(text).encode("utf-8")).hexdigest()
