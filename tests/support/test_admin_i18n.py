"""The admin in the operator's language: Ukrainian, Russian or English, from the browser's
Accept-Language or the operator's own choice (the switcher in the header), with the project's
own texts translated (a Django catalogue compiled to committed .mo files that match the .po)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from django.utils import translation

from supportbot.support.analytics import CATEGORIES

pytestmark = pytest.mark.django_db

ROOT = Path(__file__).resolve().parents[2]


def _messages_tool():
    spec = importlib.util.spec_from_file_location("messages_tool", ROOT / "tools" / "messages.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(autouse=True)
def _english_after():
    """A request in Ukrainian leaves its language active in the thread: later tests get English."""
    yield
    translation.deactivate()


@pytest.fixture
def operator_client():
    client = Client()
    client.force_login(get_user_model().objects.create_superuser("op", password="pw-123456-long"))
    return client


@pytest.mark.parametrize(("accept", "lang", "analytics", "django_own"), [
    ("uk,en;q=0.5", "uk", "Аналітика", "Вийти"),
    ("ru-RU,ru;q=0.9", "ru", "Аналитика", "Выйти"),
    ("en-GB,en;q=0.9", "en", "Analytics", "Log out"),
    ("de-DE,de;q=0.9", "en", "Analytics", "Log out"),  # not offered: English
])
def test_the_browsers_language_is_used(operator_client, accept, lang, analytics, django_own):
    html = operator_client.get("/admin/", HTTP_ACCEPT_LANGUAGE=accept).content.decode()
    assert f'<html lang="{lang}"' in html
    assert f'id="analytics-link" href="/admin/analytics/">{analytics}</a>' in html
    assert django_own in html  # Django's own admin texts follow too


def test_the_analytics_page_in_ukrainian_and_russian(operator_client, fake):
    uk = operator_client.get("/admin/analytics/", HTTP_ACCEPT_LANGUAGE="uk").content.decode()
    for text in ("<title>Аналітика", "Найзавантаженіші години", "Завантажити CSV", "Задоволеність клієнтів (CSAT)",
                 "Передачі людині та їхні причини", ">Пн</text>", "Останні 7 днів", "(днів: 7)"):
        assert text in uk, text
    ru = operator_client.get("/admin/analytics/", HTTP_ACCEPT_LANGUAGE="ru").content.decode()
    for text in ("<title>Аналитика", "Самые загруженные часы", "Скачать CSV", ">Вс</text>", "Последние 30 дней"):
        assert text in ru, text


def test_a_broken_period_is_explained_in_the_operators_language(operator_client):
    page = operator_client.get("/admin/analytics/", {"from": "2026-03-09", "to": "2026-03-02"},
                               HTTP_ACCEPT_LANGUAGE="uk")
    assert page.status_code == 400 and "Дата початку пізніша за дату кінця." in page.content.decode()
    bad_date = operator_client.get("/admin/analytics/", {"from": "2026-02-30"}, HTTP_ACCEPT_LANGUAGE="ru")
    assert bad_date.status_code == 400 and "Введите правильную дату." in bad_date.content.decode()


def test_the_switcher_sets_the_language_over_the_browsers(operator_client):
    page = operator_client.get("/admin/", HTTP_ACCEPT_LANGUAGE="en").content.decode()
    assert 'id="language-switcher" action="/i18n/setlang/" method="post"' in page
    assert '<option value="uk">Українська</option>' in page and '<option value="en" selected>' in page
    switched = operator_client.post("/i18n/setlang/", {"language": "ru", "next": "/admin/analytics/"})
    assert switched.status_code == 302 and switched["Location"] == "/admin/analytics/"
    assert switched.cookies["django_language"].value == "ru"
    html = operator_client.get("/admin/", HTTP_ACCEPT_LANGUAGE="en").content.decode()
    assert ">Аналитика</a>" in html and '<option value="ru" selected>' in html
    # A language the site does not offer changes nothing.
    operator_client.post("/i18n/setlang/", {"language": "xx", "next": "/admin/"})
    assert ">Аналитика</a>" in operator_client.get("/admin/").content.decode()
    operator_client.post("/i18n/setlang/", {"language": "en", "next": "/admin/"})
    assert ">Analytics</a>" in operator_client.get("/admin/", HTTP_ACCEPT_LANGUAGE="uk").content.decode()


def test_the_login_page_has_the_switcher_too():
    page = Client().get("/admin/login/", HTTP_ACCEPT_LANGUAGE="uk").content.decode()
    assert 'id="language-switcher"' in page and "Увійти" in page


def test_labels_built_in_code_are_translated_when_shown():
    with translation.override("uk"):
        assert str(CATEGORIES["reopened"]) == "Відкрито знову"
    with translation.override("ru"):
        assert str(CATEGORIES["not_helpful"]) == "Ответ отмечен «Не помогло»"
        assert translation.ngettext("%(counter)s hand-over in the period.", "%(counter)s hand-overs in the period.",
                                    5) == "%(counter)s передач человеку за период."
        assert translation.ngettext("%(counter)s hand-over in the period.", "%(counter)s hand-overs in the period.",
                                    22) == "%(counter)s передачи человеку за период."
    with translation.override("en"):
        assert str(CATEGORIES["reopened"]) == "Reopened"


def test_the_committed_mo_files_match_the_po_files():
    tool = _messages_tool()
    assert tool.stale() == [], "run: python tools/messages.py compile"


@pytest.mark.parametrize("language", ["uk", "ru"])
def test_every_message_is_translated(language):
    """Each message of the catalogue has a translation here, or Django's admin translates it."""
    tool = _messages_tool()
    untranslated = []
    with translation.override(language):
        for message in tool.read(language):
            if not message.id or tool._translated(message):
                continue
            msgid = message.id[0] if isinstance(message.id, tuple) else message.id
            if translation.gettext(msgid) == msgid:
                untranslated.append(msgid)
    assert untranslated == []


def test_the_catalogue_has_every_message_the_code_marks():
    """Every marked text of the admin's code and templates is in the catalogue (extract was run)."""
    tool = _messages_tool()
    catalogue = {m.id for m in tool.read("uk") if m.id}
    marked = {m.id for m in tool.extract() if m.id}
    assert sorted(map(str, marked - catalogue)) == [], "run: python tools/messages.py extract"


def test_model_names_fields_and_choices_are_translated(operator_client):
    index = operator_client.get("/admin/", HTTP_ACCEPT_LANGUAGE="uk").content.decode()
    assert "Служба підтримки" in index and "Шаблони відповідей" in index and "Облікові записи операторів" in index
    tickets = operator_client.get("/admin/support/ticket/", HTTP_ACCEPT_LANGUAGE="ru").content.decode()
    assert "У оператора" in tickets  # a status in the filter
    faq = operator_client.get("/admin/support/faqentry/add/", HTTP_ACCEPT_LANGUAGE="ru").content.decode()
    assert "Постоянный идентификатор для импорта и экспорта" in faq and ">Вопрос:</label>" in faq


def test_the_models_need_no_new_migration():
    from io import StringIO

    from django.core.management import call_command

    out = StringIO()
    call_command("makemigrations", "support", "--check", "--dry-run", stdout=out)
    assert "No changes detected" in out.getvalue()


@pytest.mark.parametrize("language", ["uk", "ru"])
def test_every_refusal_a_service_raises_is_shown_in_the_operators_language(language):
    """Services raise DomainError subclasses with English messages (``gettext_noop``); the admin
    shows ``gettext(exc.message)``, so each must be in the catalogue, translated."""
    from supportbot.support import errors

    refusals = [cls for cls in vars(errors).values()
                if isinstance(cls, type) and issubclass(cls, errors.DomainError)]
    texts = [cls.message for cls in refusals] + [errors.NotAHelpfulFaqAnswer.NOT_FROM_FAQ]
    assert len(refusals) >= 8
    with translation.override(language):
        untranslated = [text for text in texts if translation.gettext(text) == text]
    assert untranslated == []
