"""Dependencies point one way: the FAQ index (knowledge/) reads the support app through
one interface (``FaqStore``) and hears of changes through one signal; the support app
never imports the FAQ index (the admin, a front door, calls its near-duplicate check)."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "src" / "supportbot"


def _imports(room: str, target: str) -> dict[str, set[str]]:
    """Module file (relative to the package) -> the ``target`` modules it imports, anywhere in it."""
    found: dict[str, set[str]] = {}
    where = PACKAGE / room
    for path in [where] if where.is_file() else sorted(where.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module:
                names = {node.module}
            elif isinstance(node, ast.Import):
                names = {alias.name for alias in node.names}
            else:
                continue
            hits = {n for n in names if n == target or n.startswith(target + ".")}
            if hits:
                found.setdefault(str(path.relative_to(PACKAGE)), set()).update(hits)
    return found


def test_the_support_app_does_not_import_the_faq_index():
    assert _imports("support", "supportbot.knowledge") == {"support/admin.py": {"supportbot.knowledge.index"}}


def test_the_faq_index_reaches_the_support_app_in_one_place_only():
    # default_store(): the ORM's FaqStore. The after-commit sync is wired by the web app
    # (web/apps.py, through the assembly), so knowledge/ hears of no support signal itself.
    assert _imports("knowledge", "supportbot.support") == {"knowledge/store.py": {"supportbot.support.faq_store"}}


_LOWER = ["knowledge", "llm", "speech"]


def test_lower_rooms_never_import_higher_ones():
    """bot -> conversation -> pipeline -> knowledge / llm / speech (design.md's direction)."""
    assert _imports("bot", "supportbot.conversation")  # the check itself sees imports
    for lower in [*_LOWER, "support"]:
        for higher in ["supportbot.bot", "supportbot.conversation", "supportbot.assembly", "supportbot.cli",
                       "supportbot.pipeline"]:
            found = _imports(lower, higher)
            # The admin is a front door (Django's): it asks the assembly for this process's index.
            if lower == "support":
                found.pop("support/admin.py", None)
            assert not found, f"{lower}/ imports {higher}: {found}"
    for lower in _LOWER:
        assert not _imports(lower, "supportbot.conversation")
    assert not _imports("conversation.py", "supportbot.bot") and not _imports("conversation.py", "aiogram")
    assert not _imports("pipeline.py", "supportbot.bot") and not _imports("pipeline.py", "aiogram")


def test_settings_are_read_once_by_the_entry_points_and_passed_down():
    readers = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        if "get_settings(" in path.read_text(encoding="utf-8"):
            readers[str(path.relative_to(PACKAGE))] = True
    # config defines it; the CLI, Django's settings module and the assembly read it; nothing else.
    assert sorted(readers) == ["assembly.py", "cli.py", "config.py", "web/settings.py"]


def test_the_pipeline_imports_without_django_models():
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    code = ("import sys, supportbot.pipeline as p; from django.apps import apps; "
            "assert p.Source.FAQ == 'faq' and p.Source.HANDOVER == 'handover'; "
            "assert not apps.ready and 'supportbot.support.models' not in sys.modules")
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
