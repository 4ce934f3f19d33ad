"""The ticket page is a conversation: every kind of row rendered the way an operator reads it,
live updates through the poll, and the reply box queueing exactly one outgoing message."""

from __future__ import annotations

import json
import re

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from django.urls import reverse

from supportbot.support import services
from supportbot.support.models import (
    CsatRating,
    FaqEntry,
    Feedback,
    InternalNote,
    Message,
    TelegramUser,
    Ticket,
    TicketStatusChange,
)

from ..browser import form_fields

pytestmark = pytest.mark.django_db(transaction=True)

JSON = {"Accept": "application/json"}


@pytest.fixture
def operator():
    return get_user_model().objects.create_superuser("olga", password="pw-123456-long", first_name="Olga",
                                                     last_name="Petrenko")


@pytest.fixture
def client(operator):
    client = Client()
    client.force_login(operator)
    return client


@pytest.fixture
def ticket():
    user = TelegramUser.objects.create(id=4401, first_name="Taras", username="taras", language_code="uk")
    return Ticket.objects.create(user=user)


def _page(client, ticket) -> str:
    response = client.get(reverse("admin:support_ticket_change", args=[ticket.pk]))
    assert response.status_code == 200
    return response.content.decode()


def _bubble(html: str, message: Message) -> str:
    """The HTML of one message's bubble (up to the next row)."""
    start = html.rindex('<div class="msg', 0, html.index(f'data-key="message-{message.pk}"'))
    nxt = re.search(r'<div class="(msg|event|note)[ "]', html[start + 1:])
    return html[start:start + 1 + nxt.start()] if nxt else html[start:]


def test_every_kind_of_row_is_rendered_as_the_operator_reads_it(client, ticket, operator):
    entry = FaqEntry.objects.create(key="delivery-time", question="How long is delivery?", answer="2-3 days.")
    asked = Message.objects.create(ticket=ticket, direction="in", source="user", text="Де моя посилка?")
    faq = Message.objects.create(ticket=ticket, direction="out", source="faq", text="2-3 days.", faq_entry=entry,
                                 score=0.9536367058753967, in_reply_to=asked, delivery_status="sent")
    Feedback.objects.create(message=faq, helpful=False)
    voice = Message.objects.create(ticket=ticket, direction="in", source="user", kind="voice",
                                   text="I still have no parcel", transcript_language="en",
                                   transcript_probability=0.97, audio_seconds=3.2)
    llm = Message.objects.create(ticket=ticket, direction="out", source="local_llm", text="It is on its way.",
                                 llm_model="qwen-tiny.gguf", context_entries=[{"id": 1, "key": "delivery-time",
                                                                                "score": 0.8}],
                                 delivery_status="sent")
    services.hand_over(ticket_id=ticket.pk, actor=TicketStatusChange.Actor.CUSTOMER,
                       reason="answer marked not helpful", draft_answer="Your parcel <b>ships</b> tomorrow.")
    notice = Message.objects.create(ticket=ticket, direction="out", source="system",
                                    text="A person will reply soon.", delivery_status="sent")
    desk_copy = Message.objects.create(ticket=ticket, direction="desk", source="user", text="COPY FOR THE GROUP",
                                       chat_id=-100123, message_thread_id=7, delivery_status="sent")
    reply = services.do_operator_reply(ticket=ticket, operator=operator, text="Sorry! <script>x</script> Tomorrow.")
    InternalNote.objects.create(ticket=ticket, author=operator, text="Customer called twice <b>today</b>.")
    question = Message.objects.create(ticket=ticket, direction="out", source="csat", text="Was it solved?",
                                      delivery_status="sent")
    CsatRating.objects.create(question=question, ticket=ticket, operator=operator, score=4)

    html = _page(client, ticket)
    # Customer messages, a voice transcript, the answer with its source, entry, score and feedback.
    assert "Де моя посилка?" in _bubble(html, asked) and "msg-customer" in _bubble(html, asked)
    assert "I still have no parcel" in _bubble(html, voice) and "3.2 s of audio" in _bubble(html, voice)
    faq_html = _bubble(html, faq)
    assert "0.95" in faq_html and "0.9536" not in html  # two decimals, never sixteen
    assert reverse("admin:support_faqentry_change", args=[entry.pk]) in faq_html and "delivery-time" in faq_html
    assert "Not helpful" in faq_html
    assert "qwen-tiny.gguf" in _bubble(html, llm) and "delivery-time (0.80)" in _bubble(html, llm)
    # The operator's reply: who sent it, its delivery state, escaped, with Save to FAQ.
    reply_html = _bubble(html, reply)
    assert "Olga Petrenko" in reply_html and 'class="delivery" data-state="pending">Pending<' in reply_html
    assert "&lt;script&gt;x&lt;/script&gt;" in reply_html and "<script>x" not in html
    assert reverse("admin:support_message_save_to_faq", args=[reply.pk]) in reply_html
    # A notice is small; status changes and the hand-over reason and draft are thin timeline rows.
    assert "msg-system" in _bubble(html, notice)
    assert "answer marked not helpful" in html and "Open → With operator" in html
    assert "Your parcel &lt;b&gt;ships&lt;/b&gt; tomorrow." in html and "LLM draft (not sent)" in html
    assert "TicketStatusChange object" not in html
    # Internal notes are marked as such; copies posted to the operators' group are not bubbles.
    assert 'class="note"' in html and "not sent to the customer" in html and "&lt;b&gt;today" in html
    assert "COPY FOR THE GROUP" not in html and f'data-key="message-{desk_copy.pk}"' not in html
    assert "Rated 4/5" in _bubble(html, question)
    # Oldest first, newest at the bottom.
    assert html.index("Де моя посилка?") < html.index("I still have no parcel") < html.index("Customer called")
    # The stable selectors browser tests use.
    for selector in ('id="thread"', 'id="reply-text"', 'id="reply-send"', 'id="take"', 'id="resolve"',
                     'id="close"', 'id="reopen"', 'id="note-text"', 'id="note-add"', 'id="canned"'):
        assert selector in html, selector
    assert "support/desk.js" in html


def test_the_poll_returns_new_rows_deliveries_and_the_ticket_state(client, ticket, operator):
    first = Message.objects.create(ticket=ticket, direction="in", source="user", text="Hello?")
    html = _page(client, ticket)
    found = re.search(r'data-after="(\d+)"', html)
    assert found
    after = int(found.group(1))
    assert after == first.pk
    poll = reverse("admin:support_ticket_poll", args=[ticket.pk])

    data = client.get(poll, {"after": after, "after_change": 0, "after_note": 0}).json()
    assert [i["key"] for i in data["items"] if i["kind"] == "message"] == [f"message-{first.pk}"]  # recent: resent
    reply = services.do_operator_reply(ticket=ticket, operator=operator, text="Hi, how can I help?")
    later = Message.objects.create(ticket=ticket, direction="in", source="user", text="My order is late")
    data = client.get(poll, {"after": after}).json()
    keys = [i["key"] for i in data["items"]]
    assert f"message-{reply.pk}" in keys and f"message-{later.pk}" in keys
    assert all(i["kind"] == "message" for i in data["items"])  # no cursor for changes/notes: not asked for
    assert "My order is late" in next(i["html"] for i in data["items"] if i["id"] == later.pk)
    assert {"id": reply.pk, "state": "pending", "label": "Pending", "notes": []} in data["deliveries"]
    # Who replied owns the ticket (services.do_operator_reply): the page learns it from the poll.
    assert data["ticket"]["status"] == "answered" and data["ticket"]["assignee"] == "Olga Petrenko"

    services.mark_sent(message_id=reply.pk, telegram_message_id=99)
    services.take_ticket(ticket_id=ticket.pk, operator=operator)
    data = client.get(poll, {"after": later.pk}).json()
    assert {"id": reply.pk, "state": "sent", "label": "Sent", "notes": []} in data["deliveries"]
    assert data["ticket"]["assignee"] == "Olga Petrenko" and "take" not in data["ticket"]["actions"]


def test_a_reply_queues_one_outgoing_message_and_the_page_shows_it(client, ticket, operator):
    Message.objects.create(ticket=ticket, direction="in", source="user", text="Can I pay by card?")
    services.hand_over(ticket_id=ticket.pk, actor="customer", reason="/operator")
    url = reverse("admin:support_ticket_change", args=[ticket.pk])
    fields = form_fields(_page(client, ticket), "ticket_form")
    assert set(fields) == {"csrfmiddlewaretoken", "reply_token", "reply"}
    fields["reply"] = "Yes, any card."
    response = client.post(url, fields, headers=JSON)
    assert response.status_code == 200, response.content
    data = response.json()
    reply = Message.objects.get(source="operator")
    assert data["id"] == reply.pk and not data["duplicate"] and "Yes, any card." in data["html"]
    assert data["next_token"] != fields["reply_token"]
    assert (reply.text, reply.direction, reply.delivery_status, reply.operator) == (
        "Yes, any card.", "out", "pending", operator)
    ticket.refresh_from_db()
    assert ticket.status == Ticket.Status.ANSWERED and ticket.assignee == operator  # who answers, owns it

    # The plain form (no script) gets the admin's message and a redirect back to the page.
    fields = form_fields(_page(client, ticket), "ticket_form")
    fields["reply"] = "Anything else?"
    response = client.post(url, fields, follow=True)
    assert response.redirect_chain[-1][0] == url
    assert any("Reply queued" in str(m) for m in response.context["messages"])
    assert Message.objects.filter(source="operator").count() == 2


def test_the_page_script_and_style_are_served_without_a_build_step_or_cdn(client, ticket):
    for name in ("desk.js", "desk.css"):
        response = client.get(f"/static/support/{name}")
        assert response.status_code == 200
        body = b"".join(response.streaming_content) if response.streaming else response.content
        assert len(body) > 500 and b"http" not in body  # nothing fetched from elsewhere
    html = _page(client, ticket)
    assert not re.search(r'<(script|link)[^>]+(src|href)="(https?:)?//', html)


def test_canned_data_in_the_page_is_json(client, ticket):
    from supportbot.support.models import CannedReply

    CannedReply.objects.create(shortcut="hello", language="uk", title="Вітання", text="Вітаю! </script><b>")
    html = _page(client, ticket)
    found = re.search(r'<script id="canned-data" type="application/json">(.*?)</script>', html, re.S)
    assert found
    raw = found.group(1)
    assert json.loads(raw) == [{"shortcut": "hello", "title": "Вітання", "text": "Вітаю! </script><b>",
                                "language": "uk"}]


def test_the_header_links_the_customers_other_tickets(client, ticket):
    services.close_ticket(ticket=ticket)
    newer = Ticket.objects.create(user=ticket.user)
    html = _page(client, newer)
    assert f'href="{reverse("admin:support_ticket_change", args=[ticket.pk])}"' in html and f">#{ticket.pk}<" in html
    assert "Other tickets" not in _page(client, Ticket.objects.create(user=TelegramUser.objects.create(id=4402)))
