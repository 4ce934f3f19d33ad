"""The queue (the ticket list): waiting tickets first, longest waiting first; what the customer
asked, how long they waited (overdue ones flagged), language, the last automatic answer's
source and the assignee; filters for status, language, assignee, mine and unassigned; search
over message text; a fixed number of queries however long the page."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from supportbot.support.models import Message, TelegramUser, Ticket

pytestmark = pytest.mark.django_db(transaction=True)

QUEUE = reverse("admin:support_ticket_changelist")


@pytest.fixture
def olga():
    return get_user_model().objects.create_superuser("olga", password="pw-123456-long", first_name="Olga")


@pytest.fixture
def client(olga):
    client = Client()
    client.force_login(olga)
    return client


def _ticket(uid: int, *, status: str, asked: list[str], language: str = "en", waiting_min: int | None = None,
            updated_min: int = 0, answer_source: str | None = None, assignee=None) -> Ticket:
    user = TelegramUser.objects.create(id=uid, first_name=f"Customer{uid}", language_code=language)
    ticket = Ticket.objects.create(user=user)
    for text in asked:
        Message.objects.create(ticket=ticket, direction="in", source="user", text=text)
        if answer_source:
            Message.objects.create(ticket=ticket, direction="out", source=answer_source, text="An answer.")
    Message.objects.create(ticket=ticket, direction="out", source="system", text="A notice.")  # not an answer
    now = timezone.now()
    Ticket.objects.filter(pk=ticket.pk).update(
        status=status, assignee=assignee, updated_at=now - timedelta(minutes=updated_min),
        waiting_since=None if waiting_min is None else now - timedelta(minutes=waiting_min))
    return ticket


def _rows(html: str) -> list[int]:
    """Ticket ids in the order the queue shows them."""
    return [int(i) for i in re.findall(r'<th class="field-id"><a href="/admin/support/ticket/(\d+)/change/', html)]


@pytest.fixture
def queue(olga):
    petro = get_user_model().objects.create_user("petro", is_staff=True, first_name="Petro")
    return {
        "answered": _ticket(1, status="answered", asked=["thanks, all good"], updated_min=1, assignee=olga),
        "short_wait": _ticket(2, status="with_operator", asked=["where is my parcel?"], waiting_min=5,
                              language="uk", answer_source="faq"),
        "long_wait": _ticket(3, status="with_operator", asked=["first question", "I want a refund " + "x" * 200],
                             waiting_min=95, language="ru-RU", answer_source="local_llm", assignee=petro),
        "old_open": _ticket(4, status="open", asked=["hello"], updated_min=60, language="de"),
        "closed": _ticket(5, status="closed", asked=["bye"], updated_min=30),
    }


def test_waiting_tickets_come_first_longest_waiting_first_then_the_latest(client, queue):
    html = client.get(QUEUE).content.decode()
    assert _rows(html) == [queue[k].pk for k in ("long_wait", "short_wait", "answered", "closed", "old_open")]
    # The title (and so the browser tab) says how many wait; the list refreshes itself.
    assert "<title>Queue: 2 waiting |" in html and "support/queue.js" in html


def test_the_columns_say_what_an_operator_needs(client, queue):
    html = client.get(QUEUE).content.decode()
    for header in ("Customer", "Last customer message", "Waiting", "Language", "Last automatic answer",
                   "Assignee", "Status"):
        assert f">{header}<" in html, header
    # The last thing the customer wrote, truncated; not the bot's notice.
    assert "I want a refund xxxx" in html and "x" * 120 not in html and "first question" not in html
    assert "A notice." not in html
    # Waiting time, with the overdue ones (over SUPPORTBOT_OVERDUE_MINUTES, 30 by default) marked red.
    assert re.search(r'<span class="queue-overdue" title="[^"]+">⚠ 1 h 35 min</span>', html)
    assert ">5 min<" in html and html.count("queue-overdue") == 1
    # Language, the source of the last automatic answer, the assignee.
    row = html[html.index(f"/admin/support/ticket/{queue['long_wait'].pk}/change/"):]
    row = row[:row.index("</tr>")]
    assert ">ru-RU<" in row and ">Local LLM<" in row and ">Petro<" in row and ">With operator<" in row
    row = html[html.index(f"/admin/support/ticket/{queue['short_wait'].pk}/change/"):]
    assert ">FAQ<" in row[:row.index("</tr>")]
    assert "desk.css" in html


def test_the_overdue_threshold_is_a_setting(client, queue, settings):
    settings.SUPPORTBOT_OVERDUE_MINUTES = 3
    html = client.get(QUEUE).content.decode()
    assert html.count('class="queue-overdue"') == 2


@pytest.mark.parametrize(("params", "expected"), [
    ({"status__exact": "with_operator"}, ["long_wait", "short_wait"]),
    ({"language": "uk"}, ["short_wait"]),
    ({"language": "ru"}, ["long_wait"]),  # ru-RU is Russian
    ({"language": "other"}, ["old_open"]),
    ({"assignee": "mine"}, ["answered"]),
    ({"assignee": "none"}, ["short_wait", "closed", "old_open"]),
    ({"q": "parcel"}, ["short_wait"]),  # search over message text
    ({"q": "refund", "status__exact": "with_operator"}, ["long_wait"]),
])
def test_filters_and_search(client, queue, params, expected):
    html = client.get(QUEUE, params).content.decode()
    assert _rows(html) == [queue[k].pk for k in expected]


def test_filter_by_one_operator_and_broken_filter_values(client, queue):
    petro = get_user_model().objects.get(username="petro")
    html = client.get(QUEUE, {"assignee": str(petro.pk)}).content.decode()
    assert _rows(html) == [queue["long_wait"].pk]
    assert ">Petro<" in html and ">Mine<" in html and ">Unassigned<" in html  # the filter's choices
    for params in ({"assignee": "abc"}, {"language": "xx"}):
        response = client.get(QUEUE, params)
        assert response.status_code == 302 and response["Location"].endswith("?e=1"), params  # "incorrect lookup"


def test_rows_open_the_conversation(client, queue):
    html = client.get(QUEUE).content.decode()
    url = reverse("admin:support_ticket_change", args=[queue["long_wait"].pk])
    assert f'href="{url}"' in html
    assert 'id="thread"' in client.get(url).content.decode()


def test_the_queue_runs_a_fixed_number_of_queries(client, queue):
    def count() -> int:
        with CaptureQueriesContext(connection) as queries:
            assert client.get(QUEUE).status_code == 200
        return len(queries)

    few = count()
    for uid in range(100, 130):
        _ticket(uid, status="with_operator", asked=["one", "two"], waiting_min=uid - 90, answer_source="faq",
                assignee=get_user_model().objects.get(username="petro"))
    assert count() == few  # no query per row
