"""The admin's own translations (Django's "django" domain): extract, compile, check.

    python tools/messages.py extract   # scan the admin's code and templates, update locale/{uk,ru}/.../django.po
    python tools/messages.py compile   # django.po -> django.mo (committed: Django reads .mo files)
    python tools/messages.py check     # exit 1 when a .mo is missing or differs from its .po

Babel only (a dependency already): no GNU gettext needed, unlike ``django-admin makemessages``.
Templates are turned into gettext calls by Django's own ``templatize`` (what makemessages feeds
to xgettext), then read by Babel's Python extractor.

The bot's texts are another domain ("supportbot", ``supportbot/i18n.py``), compiled in memory;
Python files that use it (``gettext_for``) are left out here.
"""

from __future__ import annotations

import argparse
import io
import sys
from collections.abc import Iterator
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "supportbot"
LOCALE = PACKAGE / "locale"
LANGUAGES = ("uk", "ru")
DOMAIN = "django"
#: What the admin shows: the support app, the web project (views, templates), not the bot.
SOURCES = ("support", "web")
KEYWORDS = {
    "_": None, "gettext": None, "gettext_lazy": None, "gettext_noop": None,
    "ngettext": (1, 2), "ngettext_lazy": (1, 2), "npgettext": ((1, "c"), 2, 3), "pgettext": ((1, "c"), 2),
    "pgettext_lazy": ((1, "c"), 2), "npgettext_lazy": ((1, "c"), 2, 3),
}


def _sources() -> Iterator[tuple[Path, str]]:
    for room in SOURCES:
        for path in sorted((PACKAGE / room).rglob("*")):
            if "migrations" in path.parts or not path.is_file():
                continue
            if path.suffix == ".py":
                text = path.read_text(encoding="utf-8")
                if "gettext_for" in text or "supportbot.i18n" in text:  # the bot's own texts
                    continue
                yield path, text
            elif path.suffix in (".html", ".txt") and "templates" in path.parts:
                yield path, _templatize(path)


def _templatize(path: Path) -> str:
    from django.utils.translation.template import templatize

    # Its output keeps the template's layout (for line numbers), which Python's tokenizer reads
    # as bad indentation: every line starts at column 0 instead (messages are one-line literals).
    code = templatize(path.read_text(encoding="utf-8"), origin=str(path))
    return "\n".join(line.lstrip() for line in code.split("\n"))


def extract():
    """A catalogue template of every message the admin's code and templates mark."""
    from babel.messages.catalog import Catalog
    from babel.messages.extract import extract_python

    template = Catalog(domain=DOMAIN, project="supportbot", charset="utf-8")
    for path, text in _sources():
        where = str(path.relative_to(PACKAGE))
        for lineno, _funcname, message, comments in extract_python(io.BytesIO(text.encode("utf-8")), KEYWORDS.keys(),
                                                                    [], {}):
            spec = KEYWORDS.get(_funcname)
            msgid, context = _message(message, spec)
            if msgid is None:
                continue
            flags = ["python-format"] if _has_format(msgid) else []
            template.add(msgid, locations=[(where, lineno)], auto_comments=comments, context=context, flags=flags)
    return template


def _message(message, spec):
    """Babel's raw argument tuple -> (msgid or (singular, plural), context)."""
    args = message if isinstance(message, tuple) else (message,)
    if spec is None:
        return (args[0] or None), None
    context = None
    ids = []
    for item in spec:
        if isinstance(item, tuple):
            context = args[item[0] - 1]
        else:
            ids.append(args[item - 1] if item - 1 < len(args) else None)
    ids = ids[:2]
    if not ids or any(i is None for i in ids):
        return None, None
    return (tuple(ids) if len(ids) == 2 else ids[0]), context


def _has_format(msgid) -> bool:
    text = " ".join(msgid) if isinstance(msgid, tuple) else msgid
    return "%(" in text or "%s" in text or "%d" in text


def po_path(language: str) -> Path:
    return LOCALE / language / "LC_MESSAGES" / f"{DOMAIN}.po"


def read(language: str):
    from babel.messages.pofile import read_po

    path = po_path(language)
    if not path.is_file():
        from babel.messages.catalog import Catalog

        return Catalog(locale=language, domain=DOMAIN, project="supportbot", version="1", charset="utf-8",
                       header_comment="# The supportbot admin's own texts (Django's admin has its own catalogue).\n"
                                      "# Edit the msgstr lines; `python tools/messages.py extract` adds new\n"
                                      "# messages, `python tools/messages.py compile` writes the .mo files.",
                       last_translator="supportbot", language_team=language, fuzzy=False)
    with path.open("rb") as handle:
        return read_po(handle, locale=language, domain=DOMAIN)


def update() -> None:
    from babel.messages.pofile import write_po

    template = extract()
    for language in LANGUAGES:
        catalog = read(language)
        catalog.update(template, no_fuzzy_matching=True)
        catalog.obsolete.clear()  # messages no longer in the code: dropped (git keeps them)
        path = po_path(language)
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("wb") as handle:
            write_po(handle, catalog, width=120, include_lineno=False, sort_output=False)
        missing = sum(1 for m in catalog if m.id and not _translated(m))
        print(f"{path.relative_to(PACKAGE.parent.parent)}: {len(catalog)} messages, {missing} untranslated")


def _translated(message) -> bool:
    strings = message.string if isinstance(message.string, tuple) else (message.string,)
    return all(strings) and not message.fuzzy


def compiled(language: str) -> bytes:
    from babel.messages.mofile import write_mo

    buffer = io.BytesIO()
    write_mo(buffer, read(language))
    return buffer.getvalue()


def compile_all() -> None:
    for language in LANGUAGES:
        path = po_path(language).with_suffix(".mo")
        path.write_bytes(compiled(language))
        print(f"{path.relative_to(PACKAGE.parent.parent)} written")


def stale() -> list[str]:
    """The languages whose committed .mo is missing or says something else than its .po."""
    import gettext

    found = []
    for language in LANGUAGES:
        mo = po_path(language).with_suffix(".mo")
        if not mo.is_file():
            found.append(language)
            continue
        fresh = gettext.GNUTranslations(io.BytesIO(compiled(language)))
        committed = gettext.GNUTranslations(io.BytesIO(mo.read_bytes()))
        if fresh._catalog != committed._catalog:  # type: ignore[attr-defined]
            found.append(language)
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["extract", "compile", "check"])
    command = parser.parse_args(argv).command
    if command == "extract":
        from django.conf import settings

        if not settings.configured:  # templatize needs settings, none of the project's
            settings.configure()
        update()
    elif command == "compile":
        compile_all()
    else:
        languages = stale()
        if languages:
            print(f"out of date: {', '.join(languages)}: run python tools/messages.py compile", file=sys.stderr)
            return 1
        print("the .mo files match their .po files")
    return 0


if __name__ == "__main__":
    sys.exit(main())
