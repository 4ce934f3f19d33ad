"""A responsive start: FAQ answers from the first seconds while the local LLM and Whisper load.

The slow loader is the real one: an empty model cache, so the bundled 1.1 GB GGUF is joined
from its 22 pip parts and loaded by llama.cpp, and Whisper base is joined and loaded, all
in the same bot process that is already polling. Customers must not wait for any of it.
"""

from __future__ import annotations

import time

import pytest

from supportbot.assembly import Process
from supportbot.config import SANDBOX_BOT_TOKEN, Settings
from supportbot.support.models import Message

from ..conftest import wait_until

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

FAQ_USER = 7101
LLM_USER = 7102


@pytest.fixture
async def starting_bot(sandbox, sample_faq, tmp_path, monkeypatch):
    """The bot as `supportbot run` starts it (LLM and Whisper warmed up at start), cold cache."""
    from supportbot.bot.runner import BotApp

    cfg = Settings(_env_file=None, supportbot_data_dir=tmp_path / "data", supportbot_model_dir=tmp_path / "models",
                   local_llm_enabled=True, api_llm_enabled=False, local_llm_timeout=3,
                   llm_answer_mode="answer")  # the LLM step in the customer's path (draft mode hands over first)
    app = BotApp(token=SANDBOX_BOT_TOKEN, api_url=sandbox.url, default_language="en", polling_timeout=1,
                 outbox_interval=0.2, warm_up_speech=True, warm_up_llm=True, parts=Process(cfg))
    started = time.monotonic()
    await app.start()
    try:
        yield app, started
    finally:
        await app.stop()


async def test_faq_answers_come_at_once_while_the_models_load(starting_bot, customer_api):
    app, _ = starting_bot
    local = app.pipeline.llm.local
    assert local is not None and local.engine is None  # nothing loaded yet: the warm-up just began

    asked = time.monotonic()
    sent = await customer_api.send_text(FAQ_USER, "How much does shipping cost?", language_code="en")
    answer = await customer_api.wait_for_bot_message(FAQ_USER, after=sent["message"]["message_id"], timeout=10)
    answered = time.monotonic()

    assert "1500 UAH" in answer["text"]
    assert answered - asked < 2.0, f"the FAQ answer took {answered - asked:.2f} s"
    # ...and the models were still loading meanwhile: the start really overlapped them.
    assert local.engine is None or not app.speech.transcriber.loaded, "models loaded before the question"


async def test_a_question_for_the_llm_while_it_loads_waits_its_timeout_then_goes_on(starting_bot, customer_api):
    asked = time.monotonic()
    llm_q = await customer_api.send_text(LLM_USER, "Can you recommend a good pizza recipe?", language_code="en")
    faq_q = await customer_api.send_text(FAQ_USER, "How much does shipping cost?", language_code="en")

    faq = await customer_api.wait_for_bot_message(FAQ_USER, after=faq_q["message"]["message_id"], timeout=10)
    assert "1500 UAH" in faq["text"] and time.monotonic() - asked < 2.0  # not queued behind the LLM

    # LOCAL_LLM_TIMEOUT=3: the LLM question waits at most that long for the loading model,
    # then goes on down the chain (no API step here): a person.
    handed = await customer_api.wait_for_bot_message(LLM_USER, after=llm_q["message"]["message_id"], timeout=15)
    assert "operator" in handed["text"]
    waited = time.monotonic() - asked
    assert 2.5 < waited < 10, f"handed over after {waited:.1f} s"
    row = await wait_until(lambda: Message.objects.filter(
        ticket__user_id=LLM_USER, direction=Message.Direction.OUT).last())
    assert row.source == Message.Source.SYSTEM
