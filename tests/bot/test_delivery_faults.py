"""The one delivery path against Telegram failing, over real HTTP.

The unmodified bot polls the sandbox Bot API; the sandbox's fault injection makes the
call that delivers a message fail the way Telegram and the network do (429, 403, 5xx,
a request that times out, a dropped connection). For each of the three kinds of
outgoing message (an FAQ answer, an LLM answer streamed into a draft, an operator's
reply) the tests assert what the customer ends up seeing, what the message row says,
and how many Bot API requests it took.

Which call delivers what: an FAQ answer and an operator's reply go out with
``sendMessage``; an LLM answer is first streamed into a draft (``sendMessage``) and then
put in place of it with ``editMessageText``: that edit is the delivery, so it is the
call the faults hit. When it fails, the delivery path deletes the draft and a retry
sends the answer anew with ``sendMessage``.

A request that timed out on the bot's side but was carried out by Telegram (the
``"timeout"`` fault with ``then="answer"``) is the ambiguous case: the Bot API has no
idempotency key, so the retry arrives as a second copy. That is documented here as
the behaviour, not hidden: two copies of an FAQ answer or an operator's reply. An LLM
answer ends as one copy, because the draft that the late edit lands on was deleted
before the retry.

Fast settings so that each test takes seconds: the outbox loop runs every 0.1 s,
every back-off is 0.2 s, and the bot's HTTP session gives up after 1 s (aiogram's
``BaseSession.timeout``, 60 s by default; the long poll allows for it on its own).
The FAQ is the sample FAQ embedded with the bag-of-words fake; the LLM step is a
scripted answerer.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import pytest
from asgiref.sync import sync_to_async
from django.contrib.auth import get_user_model
from django.test import Client

from supportbot.config import SANDBOX_BOT_TOKEN
from supportbot.llm.chain import AnswerChain, ChainStep
from supportbot.llm.setup import LlmFallback
from supportbot.sandbox.faults import Fault
from supportbot.support import services
from supportbot.support.models import FaqEntry, Message, TelegramUser, Ticket

from ..conftest import wait_until
from ..llm_helpers import ScriptedAnswerer

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

USER = 8101
BACKOFF = (0.2, 0.2, 0.2, 0.2)
OUTBOX_INTERVAL = 0.1
CLIENT_TIMEOUT = 1.0  # seconds before the bot gives up on a Bot API request
HELD = 2.0  # how long a "timeout" fault holds the request: longer than CLIENT_TIMEOUT
SETTLE = 0.6  # several outbox rounds: anything still to be (re)sent would be by then

FAQ_QUESTION = "How much does shipping cost?"  # the sample FAQ's delivery-cost-en
FOLLOW_UP = "How can I track my order?"  # order-tracking-en
LLM_QUESTION = "Could you wrap my present in blue paper with a bow?"  # no FAQ entry
LLM_ANSWER = "Yes, we can wrap any order as a gift: add a note with the colour at checkout."
LLM_LABEL = "🤖 AI answer\n"
CURSOR = "▍"  # a draft still being written
REPLY = "Your parcel left our warehouse today, the tracking code follows."
WAITING = "An operator is handling your request"
GENERIC_ERROR = "something went wrong"
SERVER_ERRORS = {"500": "Internal Server Error", "502": "Bad Gateway"}


@dataclass(frozen=True)
class Kind:
    """One kind of outgoing message: how it is made and which call delivers it."""

    name: str
    source: str  # Message.source of its row
    method: str  # the Bot API call that delivers it (the faults' target)

    def __str__(self) -> str:
        return self.name


FAQ = Kind("faq", Message.Source.FAQ, "sendMessage")
LLM = Kind("llm", Message.Source.LOCAL_LLM, "editMessageText")  # ScriptedAnswerer's source
OPERATOR = Kind("operator", Message.Source.OPERATOR, "sendMessage")
KINDS = [FAQ, LLM, OPERATOR]


@pytest.fixture
async def app(fake, sample_faq, sandbox):
    """The real bot polling the sandbox; FAQ by the fake embedder, LLM answers scripted.

    ``stream_edit_seconds`` is long so that the draft is sent once and never edited
    while the answer streams: the only ``editMessageText`` is the delivery's.
    """
    from supportbot.assembly import build_pipeline
    from supportbot.bot.runner import BotApp

    answerer = ScriptedAnswerer(LLM_ANSWER, delay=0.03)
    # Delivery is the point, not the answer's facts (an invented gift-wrapping service): not fact-checked.
    llm = LlmFallback(AnswerChain([ChainStep(answerer, 10)]), stream_edit_seconds=30.0, check_facts=False)
    app = BotApp(token=SANDBOX_BOT_TOKEN, api_url=sandbox.url, default_language="en", refresh_seconds=1.0,
                 polling_timeout=1, outbox_interval=OUTBOX_INTERVAL, delivery_backoff=BACKOFF,
                 pipeline=build_pipeline(fake, llm=llm))
    app.bot.session.timeout = CLIENT_TIMEOUT
    await app.start()
    try:
        yield app
    finally:
        await app.stop()


# -- making each kind of message ------------------------------------------------------------------
async def _prepare(kind: Kind, customer_api) -> None:
    """What must happen before the faulted message: an operator's reply needs a handed-over ticket."""
    if kind is OPERATOR:
        sent = await customer_api.send_text(USER, "/operator")
        await customer_api.wait_for_bot_message(USER, after=sent["message"]["message_id"])
        ticket = await Ticket.objects.aget(user_id=USER)
        assert ticket.status == Ticket.Status.WITH_OPERATOR


def _operator_reply() -> Message:
    operator, _ = get_user_model().objects.get_or_create(username="op", defaults={"is_staff": True})
    return services.do_operator_reply(ticket=Ticket.objects.get(user_id=USER), operator=operator, text=REPLY)


def _ticket_page() -> str:
    """The customer's ticket as an operator sees it in the admin."""
    admin, _ = get_user_model().objects.get_or_create(
        username="admin", defaults={"is_staff": True, "is_superuser": True})
    client = Client()
    client.force_login(admin)
    page = client.get(f"/admin/support/ticket/{Ticket.objects.get(user_id=USER).pk}/change/")
    assert page.status_code == 200
    return page.content.decode()


async def _trigger(kind: Kind, customer_api) -> None:
    """The customer asks (FAQ, LLM) or the operator replies."""
    if kind is FAQ:
        await customer_api.send_text(USER, FAQ_QUESTION)
    elif kind is LLM:
        await customer_api.send_text(USER, LLM_QUESTION)
    else:
        await sync_to_async(_operator_reply)()


async def _expected_text(kind: Kind) -> str:
    """The message as the customer must see it."""
    if kind is FAQ:
        return (await FaqEntry.objects.aget(key="delivery-cost-en")).answer
    if kind is LLM:
        return LLM_LABEL + LLM_ANSWER
    return REPLY


async def _row(kind: Kind) -> Message:
    """The message's row, once it exists."""
    return await wait_until(lambda: Message.objects.filter(
        ticket__user_id=USER, direction=Message.Direction.OUT, source=kind.source).order_by("id").first())


async def _draft_shown(customer_api) -> dict:
    """The LLM answer's draft, visible while it streams."""
    return await customer_api.wait_for_bot_message(
        USER, predicate=lambda m: m["plain_text"].startswith(LLM_LABEL) and not m.get("reply_markup"))


# -- what the customer and the sandbox saw ---------------------------------------------------------
async def _copies(customer_api, text: str) -> list[dict]:
    """The bot's messages showing ``text`` now (deleted ones do not count)."""
    return [m for m in await customer_api.bot_messages(USER) if not m["deleted"] and m["plain_text"] == text]


async def _counts(customer_api) -> dict[str, int]:
    return dict((await customer_api.request_counts())["chats"].get(str(USER), {}))


def _delta(after: dict[str, int], before: dict[str, int], *methods: str) -> dict[str, int]:
    return {m: after.get(m, 0) - before.get(m, 0) for m in methods}


async def _struck(fault: Fault, *, hits: int = 1, timeout: float = 10.0) -> float:
    """Wait until ``fault`` has struck ``hits`` times; the ``time.monotonic()`` it was seen.

    The sandbox runs in this event loop, so the hit is seen within a few milliseconds.
    """
    deadline = time.monotonic() + timeout
    while fault.hits < hits:
        if time.monotonic() > deadline:
            raise AssertionError(f"{fault.to_json()} struck {fault.hits} times, not {hits}, within {timeout}s")
        await asyncio.sleep(0.002)
    return time.monotonic()


async def _nothing_in_flight() -> None:
    """Nothing stays "sending" (nor pending): every attempt's result was recorded."""
    await asyncio.sleep(SETTLE)
    stuck = await sync_to_async(lambda: list(
        Message.objects.filter(delivery_status__in=[Message.Delivery.SENDING, Message.Delivery.PENDING])
        .values_list("id", "source", "delivery_status")))()
    assert stuck == []


# -- 429 Too Many Requests ---------------------------------------------------------------------------
@pytest.mark.parametrize("kind", KINDS, ids=str)
async def test_429_is_waited_out_then_delivered_once_and_in_order(kind, app, sandbox, customer_api):
    await _prepare(kind, customer_api)
    fault = sandbox.state.faults.add(method=kind.method, error="429", retry_after=1, chat_id=USER)
    before = await _counts(customer_api)
    await _trigger(kind, customer_api)
    struck_at = await _struck(fault)
    row = await _row(kind)

    # Right after the 429 the customer asks again (the operator's customer writes again):
    # what that records for the same ticket must wait for the first message, not overtake it.
    await customer_api.send_text(USER, FOLLOW_UP)
    text = await _expected_text(kind)
    delivered = await customer_api.wait_for_bot_message(
        USER, predicate=lambda m: m["plain_text"] == text, timeout=5)
    waited = time.monotonic() - struck_at
    assert 0.98 <= waited <= 3.0, waited  # not before retry_after (1 s), and not much later

    if kind is OPERATOR:
        later = lambda m: WAITING in m["plain_text"]  # noqa: E731
    else:
        tracking = (await FaqEntry.objects.aget(key="order-tracking-en")).answer
        later = lambda m: m["plain_text"] == tracking  # noqa: E731
    follow_up = await customer_api.wait_for_bot_message(USER, predicate=later, timeout=5)
    assert follow_up["message_id"] > delivered["message_id"]

    await _nothing_in_flight()
    assert len(await _copies(customer_api, text)) == 1
    await row.arefresh_from_db()
    assert row.delivery_status == Message.Delivery.SENT and row.telegram_message_id == delivered["message_id"]
    assert row.delivery_attempts == 0  # the 429 was Telegram asking to wait, not a failed attempt
    assert row.delivery_error == "rate limited: retry after 1 s"
    counts = _delta(await _counts(customer_api), before, "sendMessage", "editMessageText", "deleteMessage")
    if kind is LLM:  # the draft, the faulted edit, the draft deleted, the answer sent anew, the follow-up
        assert counts == {"sendMessage": 3, "editMessageText": 1, "deleteMessage": 1}
    else:  # the faulted send, its retry, the follow-up's answer (or the operator's "waiting" notice)
        assert counts == {"sendMessage": 3, "editMessageText": 0, "deleteMessage": 0}


# -- 403 Forbidden: the customer blocked the bot -----------------------------------------------------
@pytest.mark.parametrize("kind", KINDS, ids=str)
async def test_403_fails_for_good_and_marks_the_customer_blocked(kind, app, sandbox, customer_api):
    await _prepare(kind, customer_api)
    fault = sandbox.state.faults.add(method=kind.method, error="403", chat_id=USER)
    before = await _counts(customer_api)
    await _trigger(kind, customer_api)
    await _struck(fault)
    row = await wait_until(lambda: Message.objects.filter(
        ticket__user_id=USER, source=kind.source, delivery_status=Message.Delivery.FAILED).first())

    assert row.delivery_error == "Forbidden: bot was blocked by the user" and row.delivery_attempts == 1
    assert row.telegram_message_id is None
    assert await TelegramUser.objects.filter(pk=USER, is_blocked=True).aexists()
    await _nothing_in_flight()  # several rounds later: never retried
    counts = _delta(await _counts(customer_api), before, "sendMessage", "editMessageText", "deleteMessage")
    if kind is LLM:  # the draft, the faulted edit, the draft taken back
        assert counts == {"sendMessage": 1, "editMessageText": 1, "deleteMessage": 1}
    else:  # the faulted send only
        assert counts == {"sendMessage": 1, "editMessageText": 0, "deleteMessage": 0}
    assert await _copies(customer_api, await _expected_text(kind)) == []
    shown = [m["plain_text"] for m in await customer_api.bot_messages(USER) if not m["deleted"]]
    assert not [t for t in shown if GENERIC_ERROR in t.lower() or t.startswith(LLM_LABEL)]
    assert not await Message.objects.filter(text__icontains=GENERIC_ERROR).aexists()
    await row.arefresh_from_db()
    assert row.delivery_status == Message.Delivery.FAILED and row.delivery_attempts == 1


# -- 5xx: retried after the back-off ----------------------------------------------------------------
@pytest.mark.parametrize("error", ["500", "502"])
@pytest.mark.parametrize("kind", KINDS, ids=str)
async def test_a_server_error_once_is_retried_after_the_backoff_and_delivered_once(
    kind, error, app, sandbox, customer_api
):
    await _prepare(kind, customer_api)
    fault = sandbox.state.faults.add(method=kind.method, error=error, chat_id=USER)
    before = await _counts(customer_api)
    await _trigger(kind, customer_api)
    struck_at = await _struck(fault)
    text = await _expected_text(kind)
    delivered = await customer_api.wait_for_bot_message(USER, predicate=lambda m: m["plain_text"] == text)
    assert time.monotonic() - struck_at >= BACKOFF[0] - 0.02

    await _nothing_in_flight()
    assert len(await _copies(customer_api, text)) == 1
    row = await _row(kind)
    assert row.delivery_status == Message.Delivery.SENT and row.telegram_message_id == delivered["message_id"]
    assert row.delivery_attempts == 1
    assert row.delivery_error == f"TelegramServerError: Telegram server says - {SERVER_ERRORS[error]}"
    counts = _delta(await _counts(customer_api), before, "sendMessage", "editMessageText", "deleteMessage")
    if kind is LLM:  # the draft, the faulted edit, the draft deleted, the answer sent anew
        assert counts == {"sendMessage": 2, "editMessageText": 1, "deleteMessage": 1}
    else:
        assert counts == {"sendMessage": 2, "editMessageText": 0, "deleteMessage": 0}


@pytest.mark.parametrize("kind", KINDS, ids=str)
async def test_server_errors_until_cleared_fail_visibly_after_max_attempts(kind, app, sandbox, customer_api):
    await _prepare(kind, customer_api)
    faults = [sandbox.state.faults.add(method=kind.method, error="500", count=None, chat_id=USER)]
    before = await _counts(customer_api)
    await _trigger(kind, customer_api)
    if kind is LLM:  # after the draft, the retries' sendMessage fail too
        await _draft_shown(customer_api)
        faults.append(sandbox.state.faults.add(method="sendMessage", error="500", count=None, chat_id=USER))

    row = await wait_until(lambda: Message.objects.filter(
        ticket__user_id=USER, source=kind.source, delivery_status=Message.Delivery.FAILED).first(), timeout=10)
    assert row.delivery_attempts == services.MAX_DELIVERY_ATTEMPTS
    assert row.delivery_error == f"TelegramServerError: Telegram server says - {SERVER_ERRORS['500']}"
    assert row.telegram_message_id is None
    assert sum(f.hits for f in faults) == services.MAX_DELIVERY_ATTEMPTS
    sandbox.state.faults.clear()
    await _nothing_in_flight()  # failed for good: not sent again once Telegram is back

    assert await _copies(customer_api, await _expected_text(kind)) == []
    counts = _delta(await _counts(customer_api), before, "sendMessage", "editMessageText", "deleteMessage")
    if kind is LLM:  # the draft, the faulted edit (draft deleted), four faulted sends
        assert counts == {"sendMessage": 5, "editMessageText": 1, "deleteMessage": 1}
    else:
        assert counts == {"sendMessage": 5, "editMessageText": 0, "deleteMessage": 0}
    await row.arefresh_from_db()
    assert row.delivery_status == Message.Delivery.FAILED
    # Visible in the ticket's thread in the admin: failed, why, and how often it was tried.
    page = await sync_to_async(_ticket_page)()
    assert "Failed" in page and row.delivery_error in page
    assert f"{services.MAX_DELIVERY_ATTEMPTS} attempts without a result" in page


# -- timeouts and dropped connections -----------------------------------------------------------------
@pytest.mark.parametrize(
    ("error", "then"),
    [("timeout", "answer"), ("timeout", "close"), ("disconnect", None)],
    ids=["timeout-answered-late", "timeout-never-answered", "disconnect"],
)
@pytest.mark.parametrize("kind", KINDS, ids=str)
async def test_a_request_without_an_answer_is_retried_and_delivered(kind, error, then, app, sandbox, customer_api):
    await _prepare(kind, customer_api)
    options = {"delay": HELD, "then": then} if error == "timeout" else {}
    fault = sandbox.state.faults.add(method=kind.method, error=error, chat_id=USER, **options)
    before = await _counts(customer_api)
    await _trigger(kind, customer_api)
    struck_at = await _struck(fault)
    text = await _expected_text(kind)
    delivered = await customer_api.wait_for_bot_message(USER, predicate=lambda m: m["plain_text"] == text)
    if error == "timeout":  # the bot gave up after its own timeout, then retried after the back-off
        assert time.monotonic() - struck_at >= CLIENT_TIMEOUT + BACKOFF[0] - 0.05
    # Past the moment the held request is carried out (then="answer") or dropped.
    await asyncio.sleep(max(0.0, struck_at + HELD + 0.3 - time.monotonic()))
    await _nothing_in_flight()

    row = await _row(kind)
    assert row.delivery_status == Message.Delivery.SENT and row.delivery_attempts == 1
    assert row.delivery_error.startswith("TelegramNetworkError")
    assert row.telegram_message_id == delivered["message_id"]  # the retry's copy: the one the bot heard of
    copies = await _copies(customer_api, text)
    counts = _delta(await _counts(customer_api), before, "sendMessage", "editMessageText", "deleteMessage")
    if kind is LLM:
        # The faulted edit, the draft deleted, the answer sent anew. A late edit lands on
        # the deleted draft: the customer sees one copy even when Telegram did the edit.
        assert len(copies) == 1
        assert counts == {"sendMessage": 2, "editMessageText": 1, "deleteMessage": 1}
    else:
        # Telegram carried out the request the bot gave up on: the retry is a second copy.
        # Unavoidable without an idempotency key in the Bot API; it is the documented case.
        assert len(copies) == (2 if then == "answer" else 1)
        assert counts == {"sendMessage": 2, "editMessageText": 0, "deleteMessage": 0}


# -- the LLM answer's draft ---------------------------------------------------------------------------
@pytest.mark.parametrize("error", ["429", "500"])
async def test_a_draft_that_could_not_be_sent_leaves_the_answer_to_the_delivery(error, app, sandbox, customer_api):
    """``sendMessage`` of the draft fails: nothing is streamed, and the finished answer goes
    out through the delivery path as a new message, once, with its buttons."""
    fault = sandbox.state.faults.add(method="sendMessage", error=error, chat_id=USER)
    before = await _counts(customer_api)
    await customer_api.send_text(USER, LLM_QUESTION)
    await _struck(fault)
    text = LLM_LABEL + LLM_ANSWER
    delivered = await customer_api.wait_for_bot_message(USER, predicate=lambda m: m["plain_text"] == text)
    await _nothing_in_flight()

    assert delivered.get("reply_markup") is not None and delivered["edit_count"] == 0
    assert len(await _copies(customer_api, text)) == 1
    row = await _row(LLM)
    assert row.delivery_status == Message.Delivery.SENT and row.delivery_attempts == 0 and row.delivery_error == ""
    assert row.telegram_message_id == delivered["message_id"]
    assert not [m for m in await customer_api.bot_messages(USER) if m["plain_text"].endswith(CURSOR)]
    counts = _delta(await _counts(customer_api), before, "sendMessage", "editMessageText", "deleteMessage")
    assert counts == {"sendMessage": 2, "editMessageText": 0, "deleteMessage": 0}  # the faulted draft, the answer


async def test_an_llm_answer_queued_behind_a_429_leaves_no_draft_behind(app, sandbox, customer_api):
    """The FAQ answer waits out a 429; the LLM answer asked right after must wait for it,
    and its draft (whose first send got the next 429) must not turn up later on its own."""
    fault = sandbox.state.faults.add(method="sendMessage", error="429", retry_after=1, count=2, chat_id=USER)
    before = await _counts(customer_api)
    await customer_api.send_text(USER, FAQ_QUESTION)
    await _struck(fault)
    await customer_api.send_text(USER, LLM_QUESTION)
    await _struck(fault, hits=2)  # the draft's first send
    faq_text, llm_text = await _expected_text(FAQ), await _expected_text(LLM)
    llm = await customer_api.wait_for_bot_message(USER, predicate=lambda m: m["plain_text"] == llm_text)
    await asyncio.sleep(1.5)  # past the moment a live draft would have tried again
    await _nothing_in_flight()

    shown = [m for m in await customer_api.bot_messages(USER) if not m["deleted"]]
    assert [m["plain_text"] for m in shown] == [faq_text, llm_text] and shown[1]["message_id"] == llm["message_id"]
    rows = await sync_to_async(lambda: list(Message.objects.filter(direction="out").order_by("id").values_list(
        "source", "delivery_status", "delivery_attempts")))()
    assert rows == [("faq", "sent", 0), ("local_llm", "sent", 0)]
    counts = _delta(await _counts(customer_api), before, "sendMessage", "editMessageText", "deleteMessage")
    # the FAQ answer's 429, the draft's 429, the FAQ answer, the LLM answer
    assert counts == {"sendMessage": 4, "editMessageText": 0, "deleteMessage": 0}
