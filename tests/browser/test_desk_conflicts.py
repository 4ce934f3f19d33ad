"""What goes wrong on the desk shows as a message on the page, never as a server error: an empty
reply, a second operator who takes a ticket another took a moment before, a reply whose answer was
lost on the way back (sent again: delivered once), and a reply to a customer who blocked the bot
(Failed, saying why)."""

from __future__ import annotations

import time

import pytest
from playwright.sync_api import Page, expect

from .conftest import log_in, new_context

# The first test also starts the stack (`supportbot run`, ~20-30 s on a busy 2-core machine).
pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]


def _open_ticket_of(page: Page, stack, name: str) -> None:
    page.goto(f"{stack.web_url}/admin/support/ticket/?q={name}")
    page.locator("#result_list tbody tr").filter(has_text=name).locator("a").first.click()
    expect(page.locator("#desk")).to_be_visible()




def test_an_empty_reply_shows_the_error_and_sends_nothing(page, stack):
    stack.hand_over(7301, "Can I bring my old fridge to your store for recycling?", first_name="Maksym")
    _open_ticket_of(page, stack, "Maksym")
    replies = page.locator("#thread .msg[data-side=operator]")
    for typed in ("", "   \n  "):
        page.fill("#reply-text", typed)
        with page.expect_response(lambda r: r.request.method == "POST") as answer:
            page.press("#reply-text", "Control+Enter")
        assert answer.value.status == 400, f"an empty reply answered {answer.value.status}"
        expect(page.locator("#reply-error")).to_contain_text("empty")
        expect(replies).to_have_count(0)
    bot_said = [m["text"] for m in stack.bot_messages(7301)]
    assert len(bot_said) == 1, f"the customer got more than the hand-over notice: {bot_said}"


def test_the_second_operator_to_take_a_ticket_is_told_who_has_it(browser, page, stack):
    stack.hand_over(7302, "Do you wrap presents? It is a birthday gift for my mother.", first_name="Yulia")
    _open_ticket_of(page, stack, "Yulia")  # Olena's tab
    second = new_context(browser)
    try:
        taras = log_in(second, stack, stack.operator)
        _open_ticket_of(taras, stack, "Yulia")  # Taras has the same ticket open, Take showing
        expect(taras.locator("#take")).to_be_visible()

        page.click("#take")
        expect(page.locator("#ticket-assignee")).to_contain_text("Olena")
        # Taras clicks Take before his page has polled: his form still posts.
        taras.locator("#take").evaluate("button => button.form.requestSubmit(button)")
        expect(taras.locator(".messagelist")).to_contain_text("already taken by Olena")
        expect(taras.locator("#ticket-assignee")).to_contain_text("Olena")
    finally:
        second.close()


def test_a_reply_whose_answer_was_lost_is_sent_again_and_delivered_once(page, stack):
    stack.hand_over(7303, "I was charged twice for order 5531, can you check?", first_name="Oksana")
    _open_ticket_of(page, stack, "Oksana")
    text = "Your refund went back to your card today; banks take up to 3 days."

    def lose_the_answer(route):
        if route.request.method != "POST":
            route.continue_()
            return
        route.fetch()  # the desk gets the reply and queues it...
        route.abort("connectionreset")  # ...but its answer never reaches the browser

    page.route("**/change/", lose_the_answer, times=1)
    page.fill("#reply-text", text)
    page.press("#reply-text", "Control+Enter")
    expect(page.locator("#reply-error")).to_contain_text("Network error")
    expect(page.locator("#reply-text")).to_have_value(text)  # kept, to send again
    page.click("#reply-send")  # the operator does what the page says: sends again
    expect(page.locator("#reply-text")).to_have_value("")
    replies = page.locator("#thread .msg[data-side=operator]")
    expect(replies).to_have_count(1)
    expect(replies.locator(".delivery")).to_have_attribute("data-state", "sent")

    stack.wait_for_bot(7303, contains=text)
    time.sleep(1)  # a second delivery would come within the outbox's next rounds
    delivered = [m for m in stack.bot_messages(7303) if m.get("text") == text]
    assert len(delivered) == 1, f"the customer got the reply {len(delivered)} times"
    page.reload()
    expect(page.locator("#thread .msg[data-side=operator]")).to_have_count(1)


def test_a_reply_to_a_customer_who_blocked_the_bot_turns_failed_and_says_why(page, stack):
    stack.hand_over(7304, "The courier left my parcel with a neighbour who is away for a week.", first_name="Vlad")
    stack.control("POST", "chats/7304/block", {"blocked": True})  # Vlad blocks the bot in Telegram
    _open_ticket_of(page, stack, "Vlad")
    page.fill("#reply-text", "Hello Vlad, we have found your order.")
    page.press("#reply-text", "Control+Enter")
    reply = page.locator("#thread .msg[data-side=operator]")
    expect(reply).to_have_count(1)
    expect(reply.locator(".delivery")).to_have_attribute("data-state", "failed")  # live, no reload
    expect(reply.locator(".delivery")).to_have_text("Failed")
    expect(reply.locator(".delivery-notes")).to_contain_text("blocked")
