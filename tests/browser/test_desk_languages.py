"""The desk in the operator's language: the browser's (Accept-Language), then the one chosen in
the switcher at the top of the page, kept for the session."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from .conftest import TIMEOUT_MS, VIEWPORT, log_in

# The first test also starts the stack (`supportbot run`, ~20-30 s on a busy 2-core machine).
pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]


def test_the_desk_speaks_the_browsers_language_and_the_one_chosen(browser, stack):
    stack.hand_over(7401, "Чи можна замовити гравіювання на подарунковій коробці?", first_name="Halyna", language="uk")
    context = browser.new_context(viewport=VIEWPORT, locale="uk-UA", timezone_id="UTC")
    context.set_default_timeout(TIMEOUT_MS)
    try:
        page = context.new_page()
        page.goto(f"{stack.web_url}/admin/login/")
        expect(page.locator("#language-select")).to_have_value("uk")  # from the browser, before login
        page.close()
        page = log_in(context, stack, stack.operator, logged_in="Вийти")
        page.goto(f"{stack.web_url}/admin/support/ticket/?q=Halyna")
        page.locator("#result_list tbody tr").filter(has_text="Halyna").locator("a").first.click()
        expect(page.locator("#take")).to_have_text("Взяти")
        expect(page.locator("label[for=reply-text]")).to_have_text("Відповідь клієнтові")
        expect(page.locator("#reply-send")).to_have_text("Надіслати")

        page.select_option("#language-select", "ru")  # the switcher posts and comes back here
        expect(page.locator("#take")).to_have_text("Взять")
        expect(page.locator("label[for=reply-text]")).to_have_text("Ответ клиенту")
        page.goto(f"{stack.web_url}/admin/analytics/")  # and stays chosen on the next page
        expect(page.locator("#content h1")).to_contain_text("Аналитика")
    finally:
        context.close()
