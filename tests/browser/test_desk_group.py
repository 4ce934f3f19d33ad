"""The operators' Telegram group as a second desk, in three tabs of one admin session: the
customer's chat, the sandbox's operators' group page, and the ticket on the web desk. A reply
written in the customer's topic reaches the customer once and shows on the desk as hers."""

from __future__ import annotations

import time

import pytest
from playwright.sync_api import expect

# The first test also starts the stack (`supportbot run`, ~20-30 s on a busy 2-core machine).
pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

CUSTOMER = 7501
QUESTION = "Can I pick up my order at the warehouse on Saturday instead of waiting for the courier?"
GROUP_PACE_MS = 65_000
REPLY = "Hi Roman, this is Olena from the shop: your parcel left the warehouse this morning."


def test_a_reply_written_in_the_customers_topic_is_delivered_once_and_shown_on_the_desk(operator_context, stack):
    stack.hand_over(CUSTOMER, QUESTION, first_name="Roman")

    group = operator_context.new_page()
    group.goto(f"{stack.web_url}/sandbox/group/")
    # The bot keeps to Telegram's 20 messages a minute per group: after the other tests' hand-overs
    # (each a topic and posts) Roman's topic may wait its turn for tens of seconds.
    topic = group.locator("#sg-topics button").filter(has_text="Roman")
    topic.click(timeout=GROUP_PACE_MS)  # the topic the hand-over opened, named after the customer
    expect(group.locator("#sg-log")).to_contain_text(QUESTION, timeout=GROUP_PACE_MS)  # the conversation so far
    group.fill("#sg-text", REPLY)
    group.click("#sg-send")
    expect(group.locator("#sg-log .sg-msg").filter(has_text=REPLY)).to_have_count(1)

    stack.wait_for_bot(CUSTOMER, contains=REPLY)
    time.sleep(1)  # a second delivery would come within the outbox's next rounds
    delivered = [m for m in stack.bot_messages(CUSTOMER) if m.get("text") == REPLY]
    assert len(delivered) == 1, f"the customer got the reply {len(delivered)} times"

    desk = operator_context.new_page()
    desk.goto(f"{stack.web_url}/admin/support/ticket/?q=Roman")
    desk.locator("#result_list tbody tr").filter(has_text="Roman").locator("a").first.click()
    reply = desk.locator("#thread .msg[data-side=operator]").filter(has_text=REPLY)
    expect(reply).to_have_count(1)
    expect(reply.locator(".msg-who")).to_have_text("Olena")  # the linked operator, not "the group"
    expect(reply.locator(".delivery")).to_have_attribute("data-state", "sent")
    group.close()
    desk.close()
