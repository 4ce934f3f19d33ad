"""The numbers behind the analytics page, for a period of days.

What the bot answered by itself (and from which source), what it handed to a person and why,
how fast operators replied, how customers rated the operators, when customers write, and which
handed-over questions come back again and again (FAQ entries worth writing).

Pure query and compute functions: no request, no settings. The admin view
(``web/admin_analytics.py``, a front door) chooses the period and passes in the matcher's
embedder and the similarity line for grouping questions, so this module never imports the
FAQ index (``tests/knowledge/test_room_dependencies.py``).

Definitions (also in ``docs/analytics.md``):

* a **hand-over** is a status change into "with operator" from anything but "with operator"
  and "answered" (an operator taking a ticket, or a customer writing again after an operator's
  reply, starts no new hand-over); reopened tickets are hand-overs of their own category;
* the **automation rate** is the bot's decisions it made without a person: automatic answers
  (FAQ, local LLM, API LLM) not marked "Not helpful", over those plus the hand-overs (reopened
  tickets left out: they are no new question). An answer marked "Not helpful" hands the ticket
  over, so it is counted once, as a hand-over;
* the **time to first operator reply** runs from each hand-over to the first operator message
  in that ticket after it; the p90 is the nearest-rank 90th percentile.
"""

from __future__ import annotations

import math
import re
import statistics
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, tzinfo
from typing import Any, Protocol

import numpy as np
from django.db.models import Count, Exists, OuterRef, Q, Subquery
from django.utils import timezone
from django.utils.functional import Promise
from django.utils.translation import gettext_lazy as _

from supportbot.support.choices import AUTOMATIC_SOURCES, MessageSource
from supportbot.support.models import CsatRating, Feedback, Message, Ticket, TicketStatusChange

#: The longest period the page computes at once (a year and a day).
MAX_DAYS = 366
#: Handed-over questions grouped at most (the latest ones): embedding runs in the request, and
#: EmbeddingGemma+e5 took 48 s for 200 questions on a busy 2-core machine (vectors are remembered).
MAX_GROUPED_QUESTIONS = 300

SOURCES: tuple[str, ...] = tuple(AUTOMATIC_SOURCES)
SOURCE_LABELS: dict[str, Promise] = {
    MessageSource.FAQ: _("FAQ"),
    MessageSource.LOCAL_LLM: _("Local LLM"),
    MessageSource.API_LLM: _("API LLM"),
}
WEEKDAYS: tuple[Promise, ...] = (_("Mon"), _("Tue"), _("Wed"), _("Thu"), _("Fri"), _("Sat"), _("Sun"))


class PeriodError(ValueError):
    """A period the page cannot compute (the message says why, for the operator)."""


@dataclass(frozen=True)
class Period:
    """Whole days ``first`` .. ``last`` (both included) in the time zone ``tz``."""

    first: date
    last: date
    tz: tzinfo

    def __post_init__(self) -> None:
        if self.first > self.last:
            raise PeriodError(_("The start date is after the end date."))
        if self.length > MAX_DAYS:
            raise PeriodError(_("The period is too long: at most %(days)d days.") % {"days": MAX_DAYS})

    @classmethod
    def preset(cls, name: str, *, today: date, tz: tzinfo) -> Period:
        """``today``, ``7d`` or ``30d``: days up to and including ``today``."""
        days = {"today": 1, "7d": 7, "30d": 30}.get(name)
        if days is None:
            raise PeriodError(_("Unknown period preset."))
        return cls(today - timedelta(days=days - 1), today, tz)

    @property
    def length(self) -> int:
        return (self.last - self.first).days + 1

    @property
    def since(self) -> datetime:
        return datetime.combine(self.first, time.min, tzinfo=self.tz)

    @property
    def until(self) -> datetime:
        """The first moment after the period (exclusive bound)."""
        return datetime.combine(self.last + timedelta(days=1), time.min, tzinfo=self.tz)

    def days(self) -> list[date]:
        return [self.first + timedelta(days=i) for i in range(self.length)]

    def day_of(self, moment: datetime) -> date:
        return moment.astimezone(self.tz).date()

    def created_in(self, prefix: str = "") -> Q:
        return Q(**{f"{prefix}created_at__gte": self.since, f"{prefix}created_at__lt": self.until})


# -- hand-overs and their reasons ---------------------------------------------------------
#: Categories of hand-over reasons, in the order the page lists them. The reason strings are
#: the ones the code writes: services.record_feedback, conversation (asking for a person, voice),
#: pipeline (no confident FAQ match; each LLM step's outcome), bot error handler, reopen.
CATEGORIES: dict[str, Promise] = {
    "not_helpful": _("Answer marked not helpful"),
    "no_answer": _("No confident answer"),
    "llm_refused": _("LLM refused or its answer was rejected"),
    "llm_unavailable": _("LLM unavailable (timeout, error, busy)"),
    "llm_limit": _("Hourly LLM limit reached"),
    "llm_draft": _("LLM draft kept for the operator"),
    "asked_person": _("Customer asked for a person"),
    "voice": _("Voice message not processed"),
    "error": _("Bot error"),
    "reopened": _("Reopened"),
    "other": _("Other"),
}
#: Hand-overs whose question the bot could not answer well: the FAQ's gaps.
QUESTION_CATEGORIES = ("not_helpful", "no_answer", "llm_refused", "llm_unavailable", "llm_limit", "llm_draft")

#: Each LLM step's outcome in a reason: "local_llm: refused (NO_ANSWER)" (llm.chain.StepReport.summary).
_LLM_STEP = re.compile(r"\b(?:local_llm|api_llm): ([^;(]+)")
_LLM_FAILURES = ("timeout", "error", "busy")
_LLM_NOT_ANSWERS = ("off", "answered")


def handover_category(reason: str, old_status: str = "") -> str:
    """The category of a hand-over's reason (see :data:`CATEGORIES`)."""
    text = (reason or "").lower()
    if old_status in (Ticket.Status.RESOLVED, Ticket.Status.CLOSED) or "reopen" in text:
        return "reopened"
    if "asked for a person" in text:
        return "asked_person"
    if "not helpful" in text:
        return "not_helpful"
    if text.startswith("bot error"):
        return "error"
    if text.startswith("voice message"):
        return "voice"
    if "draft kept for the operator" in text:
        return "llm_draft"
    if "hourly llm limit" in text:
        return "llm_limit"
    outcomes = [outcome.strip() for outcome in _LLM_STEP.findall(text)]
    # Refused, or its answer rejected (too short, not a choice, failed the fact check...).
    if any(o not in _LLM_FAILURES and o not in _LLM_NOT_ANSWERS for o in outcomes):
        return "llm_refused"
    if any(o in _LLM_FAILURES for o in outcomes):
        return "llm_unavailable"
    if any(word in text for word in ("no confident", "empty faq", "faq skipped", "no answer")):
        return "no_answer"
    return "other"


def _handovers(period: Period):
    return (TicketStatusChange.objects.filter(period.created_in(), new_status=Ticket.Status.WITH_OPERATOR)
            .exclude(old_status__in=[Ticket.Status.WITH_OPERATOR, Ticket.Status.ANSWERED]))


@dataclass
class Handovers:
    total: int
    by_category: dict[str, int]  # every category of CATEGORIES, in its order

    def rows(self) -> list[tuple[str, Promise, int]]:
        return [(key, CATEGORIES[key], self.by_category[key]) for key in CATEGORIES]


def handovers(period: Period) -> Handovers:
    counts = Counter(handover_category(reason, old) for reason, old in
                     _handovers(period).values_list("reason", "old_status"))
    return Handovers(total=sum(counts.values()), by_category={key: counts.get(key, 0) for key in CATEGORIES})


# -- automation -------------------------------------------------------------------------------
@dataclass
class DayCounts:
    day: date
    answered: dict[str, int]  # source -> automatic answers not marked "Not helpful"
    handed_over: int


@dataclass
class Automation:
    answered: dict[str, int]  # source -> automatic answers not marked "Not helpful"
    not_helpful: dict[str, int]  # source -> answers marked "Not helpful" (counted as hand-overs)
    handed_over: int  # hand-overs of the period, reopened tickets left out
    daily: list[DayCounts]

    @property
    def answered_total(self) -> int:
        return sum(self.answered.values())

    @property
    def decisions(self) -> int:
        return self.answered_total + self.handed_over

    @property
    def rate(self) -> float | None:
        return self.answered_total / self.decisions if self.decisions else None

    @property
    def handed_over_share(self) -> float | None:
        return self.handed_over / self.decisions if self.decisions else None

    def share(self, source: str) -> float | None:
        return self.answered[source] / self.decisions if self.decisions else None


def automation(period: Period) -> Automation:
    unhelpful = Feedback.objects.filter(message=OuterRef("pk"), helpful=False)
    answers = (Message.objects.filter(period.created_in(), direction=Message.Direction.OUT, source__in=SOURCES)
               .annotate(unhelpful=Exists(unhelpful)).values_list("source", "created_at", "unhelpful"))
    answered = dict.fromkeys(SOURCES, 0)
    not_helpful = dict.fromkeys(SOURCES, 0)
    per_day = {day: DayCounts(day, dict.fromkeys(SOURCES, 0), 0) for day in period.days()}
    for source, created_at, was_unhelpful in answers:
        if was_unhelpful:
            not_helpful[source] += 1
            continue
        answered[source] += 1
        per_day[period.day_of(created_at)].answered[source] += 1
    handed_over = 0
    for reason, old, created_at in _handovers(period).values_list("reason", "old_status", "created_at"):
        if handover_category(reason, old) == "reopened":
            continue
        handed_over += 1
        per_day[period.day_of(created_at)].handed_over += 1
    return Automation(answered=answered, not_helpful=not_helpful, handed_over=handed_over,
                      daily=[per_day[day] for day in period.days()])


# -- helpful rate ------------------------------------------------------------------------------
@dataclass
class HelpfulRow:
    source: str
    answers: int  # automatic answers of the period from this source
    rated: int  # of them, rated Helpful or Not helpful
    helpful: int

    @property
    def label(self) -> Promise:
        return SOURCE_LABELS[self.source]

    @property
    def rate(self) -> float | None:
        return self.helpful / self.rated if self.rated else None


def helpful_rates(period: Period) -> list[HelpfulRow]:
    answers = dict(Message.objects.filter(period.created_in(), direction=Message.Direction.OUT,
                                          source__in=SOURCES)
                   .order_by().values("source").annotate(n=Count("id")).values_list("source", "n"))
    rated: dict[str, tuple[int, int]] = {
        source: (n, helpful) for source, n, helpful in
        Feedback.objects.filter(period.created_in("message__"), message__direction=Message.Direction.OUT,
                                message__source__in=SOURCES)
        .order_by().values("message__source")
        .annotate(rated=Count("id"), helpful=Count("id", filter=Q(helpful=True)))
        .values_list("message__source", "rated", "helpful")}
    return [HelpfulRow(source, answers.get(source, 0), *rated.get(source, (0, 0))) for source in SOURCES]


# -- time to the first operator reply -----------------------------------------------------
def nearest_rank(values: Sequence[float], percentile: float) -> float | None:
    """The nearest-rank percentile (``percentile`` in 0..100) of ``values``: an observed value."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(1, math.ceil(percentile / 100 * len(ordered))) - 1]


@dataclass
class ReplyTimes:
    handovers: int
    seconds: list[float]  # one per hand-over that got an operator reply, sorted

    @property
    def replied(self) -> int:
        return len(self.seconds)

    @property
    def unanswered(self) -> int:
        return self.handovers - self.replied

    @property
    def median(self) -> float | None:
        return statistics.median(self.seconds) if self.seconds else None

    @property
    def p90(self) -> float | None:
        return nearest_rank(self.seconds, 90)


def reply_times(period: Period) -> ReplyTimes:
    first_reply = (Message.objects.filter(ticket_id=OuterRef("ticket_id"), direction=Message.Direction.OUT,
                                          source=MessageSource.OPERATOR, created_at__gte=OuterRef("created_at"))
                   .order_by("created_at", "id").values("created_at")[:1])
    rows = _handovers(period).annotate(first_reply=Subquery(first_reply)).values_list("created_at", "first_reply")
    seconds, count = [], 0
    for handed_over_at, replied_at in rows:
        count += 1
        if replied_at is not None:
            seconds.append((replied_at - handed_over_at).total_seconds())
    return ReplyTimes(handovers=count, seconds=sorted(seconds))


# -- CSAT ----------------------------------------------------------------------------------------
@dataclass
class OperatorCsat:
    operator: str
    count: int
    average: float


@dataclass
class Csat:
    distribution: dict[int, int]  # score 1..5 -> ratings
    by_operator: list[OperatorCsat] = field(default_factory=list)

    @property
    def count(self) -> int:
        return sum(self.distribution.values())

    @property
    def average(self) -> float | None:
        return sum(s * n for s, n in self.distribution.items()) / self.count if self.count else None

    @property
    def satisfied_share(self) -> float | None:
        """Ratings of 4 or 5 (the usual "CSAT score")."""
        return (self.distribution[4] + self.distribution[5]) / self.count if self.count else None


def csat(period: Period) -> Csat:
    ratings = CsatRating.objects.filter(period.created_in())
    counts = dict(ratings.order_by().values("score").annotate(n=Count("id")).values_list("score", "n"))
    per_operator: dict[str, list[int]] = {}
    for username, score in ratings.values_list("operator__username", "score"):
        per_operator.setdefault(username or "—", []).append(score)
    by_operator = sorted((OperatorCsat(name, len(scores), sum(scores) / len(scores))
                          for name, scores in per_operator.items()), key=lambda row: (-row.count, row.operator))
    return Csat(distribution={score: counts.get(score, 0) for score in range(1, 6)}, by_operator=by_operator)


# -- busiest hours ----------------------------------------------------------------------------------
def busiest_hours(period: Period) -> list[list[int]]:
    """Customer messages per weekday (0 = Monday) and hour of the day, in the period's time zone."""
    grid = [[0] * 24 for _weekday in range(7)]
    rows = Message.objects.filter(period.created_in(), direction=Message.Direction.IN).values_list("created_at",
                                                                                                   flat=True)
    for moment in rows.iterator(chunk_size=2000):
        local = moment.astimezone(period.tz)
        grid[local.weekday()][local.hour] += 1
    return grid


# -- the most frequent handed-over questions ------------------------------------------------------
class QuestionEmbedder(Protocol):
    """The matcher's embedder (``knowledge.embedders.Embedder``): only ``embed`` is needed."""

    def embed(self, texts: Sequence[str]) -> np.ndarray: ...


@dataclass
class HandedOverQuestion:
    text: str
    language: str
    handed_over_at: datetime


def handed_over_questions(period: Period, *,
                          limit: int = MAX_GROUPED_QUESTIONS) -> tuple[list[HandedOverQuestion], int]:
    """The customer's question behind each hand-over the bot could not answer well
    (:data:`QUESTION_CATEGORIES`), the latest ``limit`` of them; and how many there were in all.

    The question is the customer's last message in the ticket up to the hand-over, commands
    (``/operator``) and empty messages (a photo, an unheard voice message) left out.
    """
    question = (Message.objects.filter(ticket_id=OuterRef("ticket_id"), direction=Message.Direction.IN,
                                       created_at__lte=OuterRef("created_at"))
                .exclude(text="").exclude(text__startswith="/").order_by("-created_at", "-id").values("text")[:1])
    rows = (_handovers(period).annotate(question=Subquery(question))
            .values_list("reason", "old_status", "question", "ticket__user__language_code", "created_at")
            .order_by("-created_at", "-id"))
    found: list[HandedOverQuestion] = []
    total = 0
    for reason, old, text, language, created_at in rows.iterator(chunk_size=500):
        if handover_category(reason, old) not in QUESTION_CATEGORIES or not (text or "").strip():
            continue
        total += 1
        if len(found) < limit:
            found.append(HandedOverQuestion(text.strip(), (language or "")[:2].lower(), created_at))
    return found, total


def group_similar(vectors: np.ndarray, threshold: float) -> list[list[int]]:
    """Greedy grouping by cosine similarity: each row (in order) joins the group whose
    centroid it is closest to when that similarity reaches ``threshold``, else starts a new
    group. Rows must be L2-normalised. Returns row indices per group, biggest groups first
    (ties: the group started first)."""
    groups: list[list[int]] = []
    sums: list[np.ndarray] = []
    centroids = np.zeros((0, vectors.shape[1] if vectors.ndim == 2 else 0), dtype=np.float32)
    for row, vector in enumerate(vectors):
        if len(groups):
            scores = centroids @ vector
            best = int(np.argmax(scores))
            if scores[best] >= threshold:
                groups[best].append(row)
                sums[best] = sums[best] + vector
                centroids[best] = sums[best] / (np.linalg.norm(sums[best]) or 1.0)
                continue
        groups.append([row])
        sums.append(vector.astype(np.float32))
        centroids = np.vstack([centroids, vector[None, :].astype(np.float32)])
    order = sorted(range(len(groups)), key=lambda g: (-len(groups[g]), g))
    return [groups[g] for g in order]


@dataclass
class QuestionGroup:
    question: str  # the most frequent wording (ties: the latest)
    language: str  # the customers' most frequent language (uk/ru/en) or ""
    size: int
    examples: list[str]  # up to 5 other distinct wordings


@dataclass
class QuestionGroups:
    groups: list[QuestionGroup]
    grouped: int  # questions embedded and grouped (at most MAX_GROUPED_QUESTIONS)
    total: int  # handed-over questions of the period
    threshold: float
    error: str = ""  # why the questions could not be grouped (the embedder failed)

    @property
    def repeated(self) -> list[QuestionGroup]:
        """Groups of two or more questions."""
        return [g for g in self.groups if g.size > 1]


def question_groups(period: Period, embedder: QuestionEmbedder, *, threshold: float,
                    limit: int = MAX_GROUPED_QUESTIONS, top: int = 20) -> QuestionGroups:
    """The handed-over questions of the period grouped by similarity (the matcher's embeddings),
    biggest groups first, at most ``top`` groups."""
    questions, total = handed_over_questions(period, limit=limit)
    if not questions:
        return QuestionGroups([], 0, total, threshold)
    distinct = list(dict.fromkeys(q.text for q in questions))  # the same wording embedded once
    unique = np.asarray(embedder.embed(distinct), dtype=np.float32)
    norms = np.linalg.norm(unique, axis=1, keepdims=True)
    unique = unique / np.where(norms == 0, 1.0, norms)
    row_of = {text: i for i, text in enumerate(distinct)}
    vectors = unique[[row_of[q.text] for q in questions]]
    groups = []
    for members in group_similar(vectors, threshold)[:top]:
        texts = [questions[i].text for i in members]  # latest first
        wording = Counter(texts)
        question = max(texts, key=lambda t: (wording[t], -texts.index(t)))
        languages = Counter(questions[i].language for i in members if questions[i].language in ("uk", "ru", "en"))
        examples = [t for t in dict.fromkeys(texts) if t != question][:5]
        groups.append(QuestionGroup(question, languages.most_common(1)[0][0] if languages else "", len(members),
                                    examples))
    return QuestionGroups(groups, len(questions), total, threshold)


# -- the whole page --------------------------------------------------------------------------------
@dataclass
class Report:
    period: Period
    automation: Automation
    helpful: list[HelpfulRow]
    handovers: Handovers
    reply_times: ReplyTimes
    csat: Csat
    heatmap: list[list[int]]
    questions: QuestionGroups | None

    def csv_rows(self) -> list[tuple[str, str, Any]]:
        """The page's numbers as (section, metric, value) rows (``?format=csv``)."""
        a, r, c = self.automation, self.reply_times, self.csat
        rows: list[tuple[str, str, Any]] = [
            ("period", "from", self.period.first.isoformat()),
            ("period", "to", self.period.last.isoformat()),
            ("automation", "decisions", a.decisions),
            ("automation", "answered_without_operator", a.answered_total),
            ("automation", "handed_over", a.handed_over),
            ("automation", "automation_rate", _ratio(a.rate)),
            ("automation", "handed_over_share", _ratio(a.handed_over_share)),
        ]
        rows += [("automation", f"answered_{s}", a.answered[s]) for s in SOURCES]
        rows += [("automation", f"not_helpful_{s}", a.not_helpful[s]) for s in SOURCES]
        for h in self.helpful:
            rows += [("helpful", f"{h.source}_answers", h.answers), ("helpful", f"{h.source}_rated", h.rated),
                     ("helpful", f"{h.source}_helpful", h.helpful), ("helpful", f"{h.source}_rate", _ratio(h.rate))]
        rows.append(("handovers", "total", self.handovers.total))
        rows += [("handovers", key, n) for key, n in self.handovers.by_category.items()]
        rows += [("first_reply", "handovers", r.handovers), ("first_reply", "replied", r.replied),
                 ("first_reply", "unanswered", r.unanswered), ("first_reply", "median_seconds", _seconds(r.median)),
                 ("first_reply", "p90_seconds", _seconds(r.p90))]
        rows += [("csat", "count", c.count), ("csat", "average", "" if c.average is None else f"{c.average:.2f}"),
                 ("csat", "satisfied_share", _ratio(c.satisfied_share))]
        rows += [("csat", f"score_{s}", n) for s, n in c.distribution.items()]
        rows += [("csat_operator", row.operator, f"{row.average:.2f} ({row.count})") for row in c.by_operator]
        for day in a.daily:
            rows += [("daily", f"{day.day.isoformat()} answered_{s}", day.answered[s]) for s in SOURCES]
            rows.append(("daily", f"{day.day.isoformat()} handed_over", day.handed_over))
        rows += [("busiest_hours", f"{weekday} {hour:02d}", self.heatmap[weekday][hour])
                 for weekday in range(7) for hour in range(24)]
        if self.questions is not None:
            rows += [("questions", "handed_over", self.questions.total),
                     ("questions", "grouped", self.questions.grouped)]
            rows += [("question_group", g.question, g.size) for g in self.questions.groups]
        return rows


def _ratio(value: float | None) -> str:
    return "" if value is None else f"{value:.4f}"


def _seconds(value: float | None) -> str:
    return "" if value is None else f"{value:.0f}"


def build_report(period: Period, *, embedder: QuestionEmbedder | None, threshold: float) -> Report:
    """Every number of the page. ``embedder=None``: no question grouping."""
    groups = None
    if embedder is not None:
        try:
            groups = question_groups(period, embedder, threshold=threshold)
        except Exception as exc:  # noqa: BLE001 - the model failing must not take the page down
            _questions, total = handed_over_questions(period, limit=0)
            groups = QuestionGroups([], 0, total, threshold, error=f"{type(exc).__name__}: {exc}"[:200])
    return Report(period=period, automation=automation(period), helpful=helpful_rates(period),
                  handovers=handovers(period), reply_times=reply_times(period), csat=csat(period),
                  heatmap=busiest_hours(period), questions=groups)


def today_in(tz: tzinfo | None = None) -> date:
    return timezone.localdate(timezone=tz)
