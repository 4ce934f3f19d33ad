"""Logging in, and the queue: the customer who waits for a person is the first row."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from .conftest import assert_waiting_first, log_in, new_context, queue

# The first test also starts the stack (`supportbot run`, ~20-30 s on a busy 2-core machine).
pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]


def test_a_wrong_password_is_refused_with_the_admins_message(browser, stack):
    context = new_context(browser)
    try:
        page = context.new_page()
        page.goto(f"{stack.web_url}/admin/login/")
        page.fill("#id_username", stack.admin[0])
        page.fill("#id_password", "not-the-password")
        page.click("input[type=submit]")
        expect(page.locator(".errornote")).to_contain_text("correct username and password")
        expect(page.locator("#user-tools")).to_have_count(0)
        log_in(context, stack, stack.admin)  # and the right one lets them in
    finally:
        context.close()


def test_the_waiting_customer_is_at_the_top_of_the_queue(page, stack):
    # Dmytro asks what the FAQ does not cover (no LLM in this stack): handed over to a person.
    asked = stack.say(7101, "Can you engrave my name on the laptop lid?", first_name="Dmytro")
    stack.wait_for_bot(7101, after=asked["message_id"])
    # Then Iryna asks a FAQ question: answered, her ticket is newer but nobody waits on it.
    asked = stack.say(7102, "How can I track my parcel?", first_name="Iryna")
    stack.wait_for_bot(7102, after=asked["message_id"])

    page.goto(f"{stack.web_url}/admin/support/ticket/")
    expect(page.locator("#result_list")).to_contain_text("Iryna")
    rows = queue(page)
    names = [row.customer for row in rows]
    dmytro = rows[names.index("Dmytro")]
    assert dmytro.waiting and "engrave my name" in dmytro.text, dmytro.text  # his last message, his wait
    assert names.index("Dmytro") < names.index("Iryna"), names
    assert_waiting_first(rows)  # and at the top when he waited longest (other tests' customers may wait too)
