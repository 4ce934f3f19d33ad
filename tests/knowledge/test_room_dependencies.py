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
    for path in sorted((PACKAGE / room).rglob("*.py")):
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


def test_the_faq_index_reaches_the_support_app_in_two_places_only():
    assert _imports("knowledge", "supportbot.support") == {
        "knowledge/store.py": {"supportbot.support.faq_store"},  # default_store(): the ORM's FaqStore
        "knowledge/apps.py": {"supportbot.support.signals"},  # faq_changed: the after-commit sync
    }


def test_the_pipeline_imports_without_django_models():
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    code = ("import sys, supportbot.pipeline as p; from django.apps import apps; "
            "assert p.Source.FAQ == 'faq' and p.Source.HANDOVER == 'handover'; "
            "assert not apps.ready and 'supportbot.support.models' not in sys.modules")
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
