"""Text normalisation shared by the support desk (is this question already a phrasing?)
and the FAQ index (what is embedded and hashed): one rule, so both agree on "the same text"."""

from __future__ import annotations

import re
import unicodedata

_SPACE = re.compile(r"\s+")


def clean(text: str) -> str:
    """Unicode-normalise and collapse whitespace (what is embedded and hashed)."""
    return _SPACE.sub(" ", unicodedata.normalize("NFC", text)).strip()
