"""An LLM answer in the admin ticket thread shows how it was made: model, FAQ context,
tokens and timings, escaped like everything else in the thread."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from django.urls import reverse

from supportbot.support import services
from supportbot.support.models import Message, TelegramUser, Ticket

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def operator_client():
    client = Client()
    client.force_login(get_user_model().objects.create_superuser("op", password="pw-123456-long"))
    return client


def test_thread_shows_the_llm_answer_details(operator_client):
    ticket = Ticket.objects.create(user=TelegramUser.objects.create(id=7201, first_name="Olena"))
    asked = Message.objects.create(ticket=ticket, direction="in", text="Is delivery free over 2000?", source="user")
    # Logged the way the bot logs it (record_outgoing with pipeline.Answer.llm_fields()).
    answer = services.record_outgoing(
        ticket_id=ticket.pk, text="Yes, delivery is free over 1500 UAH.", source=Message.Source.LOCAL_LLM,
        in_reply_to_id=asked.pk, processing_ms=4321, telegram_message_id=555,
        llm={"llm_model": "qwen2.5-<coder>-1.5b.gguf",
             "context_entries": [{"id": 3, "key": "free-delivery", "score": 0.8123},
                                 {"id": 9, "key": "delivery-cost<b>", "score": 0.61}],
             "prompt_tokens": 612, "completion_tokens": 37, "first_token_ms": 2345, "llm_ms": 4100},
    )
    Message.objects.create(ticket=ticket, direction="out", source="api_llm", text="An API answer.",
                           llm_model="gpt-4o-mini", delivery_status="sent")
    faq = Message.objects.create(ticket=ticket, direction="out", source="faq", text="An FAQ answer.",
                                 score=0.9, delivery_status="sent")

    page = operator_client.get(reverse("admin:support_ticket_change", args=[ticket.pk]))
    assert page.status_code == 200
    html = page.content.decode()
    assert "qwen2.5-&lt;coder&gt;-1.5b.gguf" in html and "<coder>" not in html  # escaped
    assert "free-delivery (0.81)" in html and "delivery-cost&lt;b&gt; (0.61)" in html
    assert "612 prompt, 37 completion" in html
    assert "first token 2345 ms" in html and "LLM 4100 ms" in html
    # The API answer gets its line too, with what is known; FAQ answers get none.
    assert "gpt-4o-mini · context: none" in html
    assert html.count("🤖") == 2
    assert answer.pk and faq.pk
