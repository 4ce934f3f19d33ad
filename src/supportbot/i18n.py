"""The bot's own texts in Ukrainian, Russian and English, through gettext.

Catalogues are the ``.po`` files under ``locale/``; they are compiled in memory
with Babel when first used, so no build step or binary ``.mo`` is needed.
"""

from __future__ import annotations

import gettext
import io
from functools import cache
from importlib import resources

SUPPORTED = ("uk", "ru", "en")
DOMAIN = "supportbot"


def pick_language(language_code: str | None, default: str) -> str:
    """Telegram's ``language_code`` (e.g. ``uk``, ``ru-RU``, ``en-GB``) -> a supported language."""
    code = (language_code or "").lower().replace("_", "-").split("-", 1)[0]
    return code if code in SUPPORTED else default


@cache
def translations(language: str) -> gettext.NullTranslations:
    from babel.messages.mofile import write_mo
    from babel.messages.pofile import read_po

    po_file = resources.files("supportbot") / "locale" / language / "LC_MESSAGES" / f"{DOMAIN}.po"
    if not po_file.is_file():
        return gettext.NullTranslations()
    with po_file.open("rb") as handle:
        catalog = read_po(handle, locale=language, domain=DOMAIN)
    buffer = io.BytesIO()
    write_mo(buffer, catalog)
    buffer.seek(0)
    return gettext.GNUTranslations(buffer)


def gettext_for(language: str):
    return translations(language).gettext
