"""Operator hours (``supportbot.hours``): parsing, holidays, "back Monday at 09:00", the settings'
validation, and the hand-over notice outside hours in the customer's language."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from supportbot.config import ConfigError, load_settings
from supportbot.conversation import Command
from supportbot.hours import OperatorHours, describe_opening, parse_holidays, parse_hours, parse_timezone
from supportbot.i18n import gettext_for

KYIV = ZoneInfo("Europe/Kyiv")
WEEK = "mon-fri 09:00-18:00; sat 10:00-14:00"


def at(day: int, hour: int, minute: int = 0, zone: ZoneInfo = KYIV) -> datetime:
    """A moment in the week of Monday 2026-12-07."""
    return datetime(2026, 12, day, hour, minute, tzinfo=zone)


@pytest.fixture
def hours() -> OperatorHours:
    return OperatorHours.parse(WEEK, "2026-12-25, 2027-01-01", "Europe/Kyiv")


def test_open_and_closed_through_the_week(hours):
    assert at(7, 9).weekday() == 0  # Monday
    assert hours.is_open(at(7, 9)) and hours.is_open(at(11, 17, 59)) and hours.is_open(at(12, 13, 30))
    assert not hours.is_open(at(7, 8, 59)) and not hours.is_open(at(7, 18)) and not hours.is_open(at(12, 14))
    assert not hours.is_open(at(13, 12))  # Sunday
    # The zone counts: 07:30 UTC is 09:30 in Kyiv.
    assert hours.is_open(datetime(2026, 12, 7, 7, 30, tzinfo=ZoneInfo("UTC")))


def test_next_opening(hours):
    assert hours.next_opening(at(7, 10)) is None  # open now
    assert hours.next_opening(at(7, 7)) == at(7, 9)
    assert hours.next_opening(at(11, 19)) == at(12, 10)  # Friday evening -> Saturday 10:00
    assert hours.next_opening(at(12, 15)) == at(14, 9)  # Saturday afternoon -> Monday
    # Christmas (a Friday) is a holiday: Thursday evening -> Saturday.
    assert hours.next_opening(datetime(2026, 12, 24, 19, tzinfo=KYIV)) == datetime(2026, 12, 26, 10, tzinfo=KYIV)


def test_ranges_past_midnight_lists_and_full_day_names():
    night = OperatorHours.parse("Friday,sat 22:00-02:00")
    assert night.is_open(at(11, 23, zone=ZoneInfo("UTC"))) and night.is_open(at(12, 1, zone=ZoneInfo("UTC")))
    assert night.is_open(at(13, 1, zone=ZoneInfo("UTC")))  # Saturday's night goes on into Sunday
    assert not night.is_open(at(12, 3, zone=ZoneInfo("UTC")))
    assert night.next_opening(at(12, 3, zone=ZoneInfo("UTC"))) == at(12, 22, zone=ZoneInfo("UTC"))
    split = parse_hours("mon-wed,fri 08:00-12:00, 13:00-17:00")
    assert split is not None and split[0] == ((480, 720), (780, 1020)) and split[3] == ()
    assert parse_hours("fri-mon 10:00-11:00")[6] == ((600, 660),)  # a day range across Sunday
    assert parse_hours("daily 00:00-24:00") == tuple(((0, 1440),) for _ in range(7))


def test_empty_means_always_but_holidays_still_close():
    always = OperatorHours.parse("", "", "UTC")
    assert always.always and always.is_open(at(13, 3)) and always.next_opening(at(13, 3)) is None
    christmas = OperatorHours.parse("", "2026-12-25", "UTC")
    assert not christmas.always and not christmas.is_open(datetime(2026, 12, 25, 12, tzinfo=ZoneInfo("UTC")))
    assert christmas.next_opening(datetime(2026, 12, 25, 12, tzinfo=ZoneInfo("UTC"))) == datetime(
        2026, 12, 26, 0, tzinfo=ZoneInfo("UTC"))


@pytest.mark.parametrize(("value", "message"), [
    ("mon-fri 9-18", "'9' is not a time"),
    ("funday 09:00-18:00", "'funday' is not a day"),
    ("mon-fri", "needs days and times"),
    ("mon 09:00", "is not a time range"),
    ("mon 25:00-26:00", "not a time of day"),
    ("mon 09:60-10:00", "not a time of day"),
    ("mon 24:00-10:00", "not a time of day"),
    ("mon,,tue 09:00-10:00", "empty day"),
    (";", "no opening hours given"),
])
def test_bad_hours_are_explained(value, message):
    with pytest.raises(ValueError, match=message) as info:
        parse_hours(value)
    assert "mon-fri 09:00-18:00" in str(info.value) or "00:00 to 24:00" in str(info.value)


def test_bad_holidays_and_zones_are_explained():
    assert parse_holidays("2026-12-25 2027-01-01,") == {datetime(2026, 12, 25).date(), datetime(2027, 1, 1).date()}
    with pytest.raises(ValueError, match=r"'25\.12\.2026' is not a date: use ISO dates"):
        parse_holidays("2026-12-24,25.12.2026")
    for zone in ("Mars/Olympus", "", "../etc/passwd", "Europe/Kyiv "):
        with pytest.raises(ValueError, match="is not a time zone: use an IANA name"):
            parse_timezone(zone)


@pytest.mark.parametrize(("variable", "value"), [
    ("OPERATOR_HOURS", "weekdays 9 to 6"),
    ("OPERATOR_HOLIDAYS", "Christmas"),
    ("OPERATOR_TIMEZONE", "Kyiv"),
])
def test_a_bad_setting_stops_the_process_naming_the_variable(monkeypatch, variable, value):
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigError, match=variable) as info:
        load_settings()
    assert value in str(info.value)


def test_the_settings_give_the_parsed_hours(monkeypatch):
    monkeypatch.setenv("OPERATOR_HOURS", WEEK)
    monkeypatch.setenv("OPERATOR_HOLIDAYS", "2027-01-01, 2026-12-25")
    monkeypatch.setenv("OPERATOR_TIMEZONE", "Europe/Kyiv")
    monkeypatch.setenv("REOPEN_WINDOW_HOURS", "24")
    desk = load_settings().desk
    assert desk.operator_holidays == "2026-12-25,2027-01-01"
    assert desk.hours() == OperatorHours.parse(WEEK, "2026-12-25,2027-01-01", "Europe/Kyiv")
    assert desk.reopen_window.total_seconds() == 24 * 3600


@pytest.mark.parametrize(("language", "now", "expected"), [
    ("en", at(7, 7), "today at 09:00"),
    ("en", at(11, 19), "tomorrow at 10:00"),
    ("en", at(12, 15), "Monday at 09:00"),
    ("uk", at(12, 15), "у понеділок о 09:00"),
    ("ru", at(12, 15), "в понедельник в 09:00"),
    ("ru", at(7, 19), "завтра в 09:00"),
])
def test_when_operators_are_back_in_words(hours, language, now, expected):
    opening = hours.next_opening(now)
    assert opening is not None
    assert describe_opening(opening, now, gettext_for(language)) == expected


def test_the_day_and_its_preposition_are_translated_together():
    tuesdays = OperatorHours.parse("tue 09:00-10:00", "", "Europe/Kyiv")
    opening = tuesdays.next_opening(at(12, 15))
    assert describe_opening(opening, at(12, 15), gettext_for("ru")) == "во вторник в 09:00"
    assert describe_opening(opening, at(12, 15), gettext_for("uk")) == "у вівторок о 09:00"


def test_a_long_holiday_gives_the_date():
    hours = OperatorHours.parse(WEEK, ",".join(f"2026-12-{d}" for d in range(14, 25)), "Europe/Kyiv")
    now = at(12, 15)
    opening = hours.next_opening(now)
    assert describe_opening(opening, now, gettext_for("en")) == "on 2026-12-25 at 09:00"


# -- the hand-over notice outside hours ------------------------------------------------------------------
@pytest.fixture
def pipeline(fake, sample_faq):
    from supportbot.assembly import build_pipeline, prepare_index

    pipeline = build_pipeline(fake, llm=None)
    prepare_index(pipeline)
    return pipeline


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(("language", "expected"), [
    ("en", "Our operators are away now and back Monday at 09:00 (Kyiv time)."),
    ("uk", "Зараз оператори не працюють, вони повернуться у понеділок о 09:00 (час: Kyiv)."),
])
async def test_outside_hours_the_hand_over_says_when_a_person_is_back(pipeline, hours, language, expected):
    from asgiref.sync import sync_to_async

    from supportbot.conversation import ConversationService
    from supportbot.support import services

    customer = services.CustomerInfo(id=8301, first_name="Alice", language_code=language)
    saturday = ConversationService(pipeline, hours=hours, clock=lambda: at(12, 15))
    outcome = await saturday.ask(customer, "Can you recommend a good pizza recipe?", language=language)
    [notice] = await sync_to_async(services.messages_by_id)(outcome.outgoing)
    assert outcome.handed_over and notice.text.endswith(expected)
    # Asked for a person again: still told when.
    again = await saturday.command(customer, Command.OPERATOR,
                                   text="/operator", language=language)
    [waiting] = await sync_to_async(services.messages_by_id)(again.outgoing)
    assert waiting.text.endswith(expected)

    monday = ConversationService(pipeline, hours=hours, clock=lambda: at(14, 10))
    during = await monday.command(customer, Command.OPERATOR,
                                  text="/operator", language=language)
    [plain] = await sync_to_async(services.messages_by_id)(during.outgoing)
    assert "\n" not in plain.text  # in hours: the notice alone
