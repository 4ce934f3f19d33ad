"""What goes wrong on the desk shows as a message on the page, never as a server error: an empty
reply, and a second operator who takes a ticket another took a moment before."""

from __future__ import annotations

import pytest
from playwright.sync_api import Page, expect

from .conftest import log_in, new_context

# The first test also starts the stack (`supportbot run`, ~20-30 s on a busy 2-core machine).
pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]


def _open_ticket_of(page: Page, stack, name: str) -> None:
    page.goto(f"{stack.web_url}/admin/support/ticket/?q={name}")
    page.locator("#result_list tbody tr").filter(has_text=name).locator("a").first.click()
    expect(page.locator("#desk")).to_be_visible()


def _waiting_customer(stack, user_id: int, name: str) -> None:
    asked = stack.say(user_id, "/operator", first_name=name)
    stack.wait_for_bot(user_id, after=asked["message_id"], contains="operator")


def test_an_empty_reply_shows_the_error_and_sends_nothing(page, stack):
    _waiting_customer(stack, 7301, "Maksym")
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
    _waiting_customer(stack, 7302, "Yulia")
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
