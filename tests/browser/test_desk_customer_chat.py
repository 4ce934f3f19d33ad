"""The customer's side in the sandbox chat page: a new customer, in Ukrainian, handed over to a
person, goes back to the bot with the notice's button and gets the next answer from the FAQ."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from supportbot.i18n import gettext_for

from .conftest import log_in, new_context

# The first test also starts the stack (`supportbot run`, ~20-30 s on a busy 2-core machine).
pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]


def test_a_waiting_customer_asks_the_bot_instead_and_gets_the_faq_answer(browser, stack):
    _ = gettext_for("uk")
    context = new_context(browser)  # Taras plays a customer; his own browser storage
    try:
        chat = log_in(context, stack, stack.operator)
        chat.goto(f"{stack.web_url}/sandbox/")
        chat.select_option("#sb-lang", "uk")
        chat.click("#sb-new")
        expect(chat.locator("#sb-customer")).to_contain_text("(test 1)")
        bot = chat.locator(".sb-msg.sb-bot")

        chat.fill("#sb-text", "Чи можна вигравіювати моє ім'я на кришці ноутбука?")
        chat.press("#sb-text", "Enter")
        notice = bot.filter(has_text=_("I have passed your question to an operator. A person will reply here soon."))
        notice.get_by_role("button", name=_("Ask the bot instead")).click()
        expect(bot.last).to_contain_text(_("Okay, I will answer your questions myself again. Ask away; "
                                           "/operator calls a person back.")[:30])

        chat.fill("#sb-text", "Скільки коштує доставка додому?")
        chat.press("#sb-text", "Enter")
        answer = bot.last
        # An FAQ answer: 👍 Helpful, 👎 Not helpful under it.
        expect(answer.get_by_role("button", name=re.compile(_("Helpful")))).to_have_count(1)
        expect(answer.get_by_role("button", name=re.compile(_("Not helpful")))).to_have_count(1)
        expect(answer).not_to_contain_text(_("An operator is handling your request. A person will reply here soon."))
    finally:
        context.close()
