"""A day's ticket, in the browser, as one person does it in two tabs of one admin session: the
customer in the sandbox chat page, the operator on the desk.

Olena asks, presses "Not helpful" and waits; the operator finds her ticket at the top of the
queue, opens it and takes it; her next message appears on the open page without a reload; the
operator answers with a canned reply (/shortcut, Tab, Ctrl+Enter), sees it delivered (the state
turns to Sent) and in the customer's chat; adds an internal note, which the customer never
sees; resolves, and the chat shows the rating buttons; Olena
rates; the answer is saved to the FAQ, and the next customer who asks the same gets it from the
FAQ; the analytics page shows the hand-over, the reply and the rating this test made. The
README's screenshots are taken on the way.
"""

from __future__ import annotations

import re
import time

import pytest
from playwright.sync_api import Page, expect

from supportbot.i18n import SUPPORTED, gettext_for

from .conftest import assert_waiting_first, queue, screenshot

# The first test also starts the stack (`supportbot run`, ~20-30 s on a busy 2-core machine).
pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

QUESTION = "Can you engrave my name on the laptop lid before it ships?"
CANNED = "Thank you for waiting! Your order has been found and it ships today."
NEXT_CUSTOMER = 7201


def _customer_id(chat: Page) -> int:
    shown = chat.locator("#sb-customer").inner_text()  # "Olena, id 900000001"
    match = re.search(r"id (\d+)", shown)
    assert match, f"the sandbox chat page shows no customer id: {shown!r}"
    return int(match.group(1))


def _say_in_chat(chat: Page, text: str) -> None:
    chat.fill("#sb-text", text)
    chat.press("#sb-text", "Enter")  # Enter sends on the sandbox page
    expect(chat.locator(".sb-msg.sb-user").last).to_contain_text(text)


def _reload_until(page: Page, selector: str, text: str, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while page.locator(selector).filter(has_text=text).count() == 0:
        assert time.monotonic() < deadline, f"{text!r} not shown in {selector} within {timeout:g} s"
        time.sleep(0.3)
        page.reload()
    expect(page.locator(selector).filter(has_text=text)).to_be_visible()


def _asked_until_answered_from_the_faq(stack, within: float = 20) -> int:
    """A new customer asks the saved question until the bot answers it from the FAQ (the bot
    picks up FAQ edits within about 2 s: each try before that is a new customer, handed over);
    returns how many customers asked."""
    deadline = time.monotonic() + within
    for n, customer in enumerate(range(NEXT_CUSTOMER, NEXT_CUSTOMER + 100), start=1):
        asked = stack.say(customer, QUESTION, first_name="Petro")
        answered = stack.wait_for_bot(customer, after=asked["message_id"])
        if answered["text"] == CANNED:
            return n
        assert time.monotonic() < deadline, (
            f"not answered from the saved FAQ entry within {within:g} s: {answered['text']!r}\n{stack.log_tail()}")
        time.sleep(0.5)
    raise AssertionError("unreachable")


def test_an_operator_answers_a_waiting_customer_from_the_queue_to_the_faq(operator_context, stack):
    chat = operator_context.new_page()  # tab 1: the customer
    chat.goto(f"{stack.web_url}/sandbox/")
    expect(chat.locator("#sb-customer")).to_contain_text("Olena")
    customer = _customer_id(chat)

    # -- the customer: an FAQ answer that does not help ---------------------------------------
    _say_in_chat(chat, "How can I track my parcel?")
    answer = chat.locator(".sb-msg.sb-bot").last
    answer.get_by_role("button", name=re.compile("Not helpful")).click()
    expect(chat.locator(".sb-msg.sb-bot").last).to_contain_text("passed your question to an operator")

    # Two more customers, so the queue looks like a morning's: one answered from the FAQ (in
    # Ukrainian), one waiting for a person (in Russian).
    asked = stack.say(7202, "Чи можна оплатити ноутбук частинами?", first_name="Bohdan", language="uk")
    stack.wait_for_bot(7202, after=asked["message_id"])
    stack.hand_over(7203, "Можно ли забрать заказ у курьера вечером, после девяти?", first_name="Svetlana",
                    language="ru")

    # -- the operator: the queue, the ticket, Take ---------------------------------------------
    desk = operator_context.new_page()  # tab 2: the desk
    desk.goto(f"{stack.web_url}/admin/support/ticket/")
    expect(desk.locator("#result_list")).to_contain_text("Bohdan")
    rows = queue(desk)
    names = [row.customer for row in rows]
    olena = rows[names.index("Olena")]
    assert olena.waiting and "How can I track my parcel?" in olena.text, olena.text
    assert names.index("Olena") < names.index("Bohdan"), f"waiting Olena is below answered Bohdan: {names}"
    assert_waiting_first(rows)
    screenshot(desk, "queue")
    desk.locator(f'#result_list a[href$="/ticket/{olena.ticket_id}/change/"]').first.click()
    expect(desk.locator("#desk")).to_be_visible()
    expect(desk.locator("#ticket-status")).to_have_attribute("data-status", "with_operator")
    desk.click("#take")
    expect(desk.locator("#ticket-assignee")).to_contain_text(re.compile("Olena|admin"))
    expect(desk.locator("#take")).to_be_hidden()

    # -- the customer writes again: it appears on the open page, no reload ------------------------
    desk.evaluate("window.__sameDocument = true")  # gone if the page were reloaded
    _say_in_chat(chat, QUESTION)
    expect(desk.locator("#thread .msg[data-side=customer]").last).to_contain_text(QUESTION)
    assert desk.evaluate("window.__sameDocument === true"), "the page was reloaded to show the message"

    # -- a canned reply: /shortcut, Tab, Ctrl+Enter --------------------------------------------
    desk.click("#reply-text")
    desk.keyboard.type("/shipped")
    expect(desk.locator("#canned-hint")).to_contain_text("/shipped")
    desk.keyboard.press("Tab")
    expect(desk.locator("#reply-text")).to_have_value(CANNED)
    desk.keyboard.press("Control+Enter")
    reply = desk.locator("#thread .msg[data-side=operator]").last
    expect(reply).to_contain_text(CANNED)
    expect(desk.locator("#reply-text")).to_have_value("")
    expect(reply.locator(".delivery")).to_have_attribute("data-state", "sent")
    expect(reply.locator(".delivery")).to_have_text("Sent")
    expect(chat.locator(".sb-msg.sb-bot").last).to_contain_text(CANNED)  # delivered to Telegram
    desk.evaluate("window.scrollTo(0, 0)")  # the header (customer, status, actions) and the thread
    screenshot(desk, "ticket-page")

    # -- an internal note: on the page, never in the customer's chat ----------------------------
    desk.fill("#note-text", "She also asked about engraving: check with the warehouse.")
    desk.press("#note-text", "Control+Enter")
    expect(desk.locator("#thread .note").last).to_contain_text("check with the warehouse")
    expect(desk.locator("#note-text")).to_have_value("")

    # -- resolve: the customer is asked to rate, with buttons ---------------------------------
    desk.click("#resolve")
    expect(desk.locator("#ticket-status")).to_have_attribute("data-status", "resolved")
    rating = chat.locator(".sb-msg.sb-bot").filter(has=chat.get_by_role("button")).last
    expect(rating.get_by_role("button")).to_have_count(5)
    rating.get_by_role("button").nth(4).click()  # the fifth: 5 of 5
    _reload_until(desk, "#thread .msg-csat", "Rated 5/5")  # the desk shows the rating (on a new render)

    assert not any("warehouse" in (m.get("text") or "") for m in stack.bot_messages(customer)), \
        "the internal note reached the customer"

    # -- Save to FAQ: the next customer who asks the same gets the answer from the FAQ ----------
    desk.locator("#thread .msg[data-side=operator]").last.get_by_role("link", name="Save to FAQ").click()
    desk.get_by_role("button", name="Save to FAQ").click()
    expect(desk.locator(".messagelist")).to_contain_text("Saved as FAQ entry")
    _asked_until_answered_from_the_faq(stack)
    chat.close()

    # -- analytics: the numbers of what the customers went through ------------------------------
    seen = _what_the_customers_saw(stack)
    assert seen["handovers"] >= 3 and customer in seen["chats"]  # Olena, Svetlana, Petro at least
    desk.goto(f"{stack.web_url}/admin/analytics/?preset=today")
    expect(desk.locator("#analytics svg.analytics-chart[data-chart=heatmap]")).to_be_visible()
    expect(desk.locator("#analytics svg.analytics-chart[data-chart=automation]")).to_be_visible()
    expect(desk.locator("#handovers")).to_contain_text(f"{seen['handovers']} hand-overs in the period")
    cells = desk.locator("svg[data-chart=heatmap] g.cell").evaluate_all(
        "cells => cells.reduce((sum, c) => sum + Number(c.dataset.count), 0)")
    assert cells == seen["customer_messages"], f"heat map: {cells} messages, the customers sent {seen}"
    csat = desk.locator(".analytics-card[data-metric=csat_average]")
    expect(csat).to_have_attribute("data-value", "5.00")
    expect(csat).to_contain_text("(1 rating)")
    screenshot(desk, "analytics")
    desk.close()


#: The bot's hand-over notices (one per hand-over), in each language it speaks.
HANDOVER_NOTICES = ("I have passed your question to an operator. A person will reply here soon.",
                    "Sorry it did not help. I have passed your question to an operator.")


def _what_the_customers_saw(stack) -> dict:
    """Counted in the sandbox, the customers' side: their messages, and the hand-over notices
    the bot sent them."""
    notices = {gettext_for(language)(notice) for language in SUPPORTED for notice in HANDOVER_NOTICES}
    chats = [c["user_id"] for c in stack.control("GET", "chats")["chats"]]
    handovers = customer_messages = 0
    for chat_id in chats:
        for message in stack.control("GET", f"chats/{chat_id}/messages")["messages"]:
            text = message.get("text") or ""
            if message["from"] == "bot" and any(notice in text for notice in notices):
                handovers += 1
            elif message["from"] != "bot":
                customer_messages += 1
    return {"chats": chats, "handovers": handovers, "customer_messages": customer_messages}
