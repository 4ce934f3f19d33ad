"""Operator hours: when a person is at the desk, and when one is back.

``OPERATOR_HOURS`` says when operators work, as day ranges and time ranges in
``OPERATOR_TIMEZONE``::

    mon-fri 09:00-18:00; sat 10:00-14:00
    mon,wed,fri 08:00-12:00,13:00-17:00; sun 22:00-02:00     (a range past midnight)
    daily 00:00-24:00                                         (the same as empty: always)

``OPERATOR_HOLIDAYS`` lists ISO dates without operators (``2026-12-25,2027-01-01``),
``OPERATOR_TIMEZONE`` is an IANA zone (``Europe/Kyiv``). Empty hours mean always (holidays
still apply). Outside hours the hand-over notice tells the customer when a person is back
(``supportbot.conversation``).

Pure functions of a moment: no settings, no Django, no clock of its own. ``parse_*`` raise
:class:`ValueError` with a message that shows a valid value (``config.py`` names the
variable).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
#: Whole phrases, not a weekday put into one: languages inflect the day and its preposition
#: (uk "у середу", ru "во вторник").
_ON_DAY = ("Monday at {time}", "Tuesday at {time}", "Wednesday at {time}", "Thursday at {time}",
           "Friday at {time}", "Saturday at {time}", "Sunday at {time}")
_EXAMPLE = "e.g. mon-fri 09:00-18:00; sat 10:00-14:00"
_TIME = re.compile(r"^(\d{1,2}):(\d{2})$")
#: How far ahead :meth:`OperatorHours.next_opening` looks (a year of holidays and then some).
_LOOK_AHEAD_DAYS = 400
_DAY_MINUTES = 24 * 60

#: Minutes since midnight, [start, end) within one day.
Span = tuple[int, int]


_FULL_DAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")


def _day(name: str) -> int:
    key = name.strip().lower()
    if key in DAYS:
        return DAYS.index(key)
    if key in _FULL_DAYS:
        return _FULL_DAYS.index(key)
    raise ValueError(f"{name.strip()!r} is not a day: use mon, tue, wed, thu, fri, sat, sun ({_EXAMPLE})")


def _days(text: str) -> list[int]:
    """``mon-fri``, ``sat``, ``mon,wed,fri``, ``fri-mon`` (wraps past Sunday), ``daily``."""
    if text.strip().lower() in ("daily", "every day", "*"):
        return list(range(7))
    days: list[int] = []
    for part in text.split(","):
        if not part.strip():
            raise ValueError(f"empty day in {text!r} ({_EXAMPLE})")
        if "-" in part:
            first, _, last = part.partition("-")
            start, end = _day(first), _day(last)
            days += [(start + n) % 7 for n in range((end - start) % 7 + 1)]
        else:
            days.append(_day(part))
    return days


def _minutes(text: str, *, end: bool) -> int:
    match = _TIME.match(text.strip())
    if not match:
        raise ValueError(f"{text.strip()!r} is not a time: use HH:MM ({_EXAMPLE})")
    hours, minutes = int(match[1]), int(match[2])
    if minutes > 59 or hours > 24 or (hours == 24 and (minutes or not end)):
        raise ValueError(f"{text.strip()!r} is not a time of day (00:00 to 24:00)")
    return hours * 60 + minutes


def parse_hours(text: str) -> tuple[tuple[Span, ...], ...] | None:
    """``OPERATOR_HOURS`` -> the open spans of each weekday (Monday first); None: always open.

    A range whose end is not after its start runs past midnight into the next day.
    """
    if not text.strip():
        return None
    week: list[list[Span]] = [[] for _ in range(7)]
    for group in text.split(";"):
        if not group.strip():
            continue
        days_text, _, ranges_text = group.strip().partition(" ")
        if not ranges_text.strip():
            raise ValueError(f"{group.strip()!r} needs days and times ({_EXAMPLE})")
        for time_range in ranges_text.replace(" ", "").split(","):
            first, dash, last = time_range.partition("-")
            if not dash:
                raise ValueError(f"{time_range!r} is not a time range: use 09:00-18:00 ({_EXAMPLE})")
            start, end = _minutes(first, end=False), _minutes(last, end=True)
            for day in _days(days_text):
                if end > start:
                    week[day].append((start, end))
                else:  # past midnight: the rest of this day and the start of the next
                    week[day].append((start, _DAY_MINUTES))
                    if end:
                        week[(day + 1) % 7].append((0, end))
    if not any(week):
        raise ValueError(f"no opening hours given ({_EXAMPLE}); leave it empty for always")
    return tuple(tuple(_merged(spans)) for spans in week)


def _merged(spans: Iterable[Span]) -> list[Span]:
    out: list[Span] = []
    for start, end in sorted(spans):
        if out and start <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], end))
        else:
            out.append((start, end))
    return out


def parse_holidays(text: str) -> frozenset[date]:
    """``OPERATOR_HOLIDAYS``: ISO dates separated by commas (or spaces)."""
    days = set()
    for part in re.split(r"[,\s]+", text.strip()):
        if not part:
            continue
        try:
            days.add(date.fromisoformat(part))
        except ValueError:
            raise ValueError(f"{part!r} is not a date: use ISO dates separated by commas, "
                             "e.g. 2026-12-25,2027-01-01") from None
    return frozenset(days)


def parse_timezone(name: str) -> ZoneInfo:
    """``OPERATOR_TIMEZONE``: an IANA time zone such as ``Europe/Kyiv`` or ``UTC``."""
    try:
        if not name.strip() or name.strip() != name or ".." in name:
            raise ValueError(name)
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"{name!r} is not a time zone: use an IANA name, e.g. Europe/Kyiv or UTC") from None


@dataclass(frozen=True)
class OperatorHours:
    """When operators work. Build it with :meth:`parse`; ask :meth:`is_open` and :meth:`next_opening`."""

    #: Open spans per weekday (Monday first), in ``zone``; None: always open (but on holidays).
    week: tuple[tuple[Span, ...], ...] | None = None
    holidays: frozenset[date] = field(default_factory=frozenset)
    zone: ZoneInfo = field(default_factory=lambda: ZoneInfo("UTC"))

    @classmethod
    def parse(cls, hours: str = "", holidays: str = "", timezone: str = "UTC") -> OperatorHours:
        return cls(parse_hours(hours), parse_holidays(holidays), parse_timezone(timezone))

    @property
    def always(self) -> bool:
        """Operators are always there: no hours and no holidays."""
        return self.week is None and not self.holidays

    def _spans(self, day: date) -> tuple[Span, ...]:
        if day in self.holidays:
            return ()
        if self.week is None:
            return ((0, _DAY_MINUTES),)
        return self.week[day.weekday()]

    def is_open(self, now: datetime) -> bool:
        """Whether a person is at the desk at ``now`` (an aware datetime)."""
        local = now.astimezone(self.zone)
        minute = local.hour * 60 + local.minute
        return any(start <= minute < end for start, end in self._spans(local.date()))

    def next_opening(self, now: datetime) -> datetime | None:
        """When operators are back (aware, in :attr:`zone`); None while open, or never again."""
        if self.is_open(now):
            return None
        local = now.astimezone(self.zone)
        minute = local.hour * 60 + local.minute
        for ahead in range(_LOOK_AHEAD_DAYS):
            day = local.date() + timedelta(days=ahead)
            for start, _end in self._spans(day):
                if ahead == 0 and start <= minute:
                    continue
                if start == 0 and self._open_at_midnight(day):
                    continue  # the previous day's span goes on: not an opening
                return datetime.combine(day, time(start // 60, start % 60), tzinfo=self.zone)
        return None

    def _open_at_midnight(self, day: date) -> bool:
        before = day - timedelta(days=1)
        return any(end == _DAY_MINUTES for _, end in self._spans(before))

    @property
    def zone_label(self) -> str:
        """``Europe/Kyiv`` -> ``Kyiv``; ``UTC`` stays ``UTC``."""
        return str(self.zone.key).rsplit("/", 1)[-1].replace("_", " ")


def describe_opening(opening: datetime, now: datetime, _: Callable[[str], str]) -> str:
    """``opening`` as a customer reads it, in their language (``_``): "today at 14:00",
    "tomorrow at 09:00", "Monday at 09:00", or the date when it is a week or more away."""
    local_now = now.astimezone(opening.tzinfo)
    at = opening.strftime("%H:%M")
    days = (opening.date() - local_now.date()).days
    if days <= 0:
        return _("today at {time}").format(time=at)
    if days == 1:
        return _("tomorrow at {time}").format(time=at)
    if days < 7:
        return _(_ON_DAY[opening.weekday()]).format(time=at)
    return _("on {date} at {time}").format(date=opening.date().isoformat(), time=at)
