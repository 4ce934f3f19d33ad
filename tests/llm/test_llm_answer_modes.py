"""What an LLM step may send (``LLM_ANSWER_MODE``) and the fact check on the way.

``answer``: a written answer reaches the customer only when one FAQ entry backs its
facts; otherwise the step refuses, its draft is taken back and the chain moves on.
``choose``: the model only names an entry; the entry's stored answer goes out word
for word. ``draft``: nothing goes out; the checked answer waits for the operator on
the hand-over. The models are scripted (the check is under test, not a model), the
FAQ, the database and the conversation service are the real ones; one test runs the
choice through real llama.cpp and its entry gate.
"""

from __future__ import annotations

import re

import pytest
from asgiref.sync import sync_to_async

from supportbot.conversation import ConversationService
from supportbot.llm.chain import AnswerChain, ChainStep
from supportbot.llm.factcheck import FactChecker
from supportbot.llm.prompt import ContextEntry, build_choice_messages, build_messages
from supportbot.llm.setup import LlmFallback
from supportbot.support import services
from supportbot.support.models import FaqEntry, Message, Ticket

from ..llm_helpers import ScriptedAnswerer, smollm2_path
from .test_llm_chain import RecordingStream

DELIVERY = ContextEntry(1, "delivery-cost-en", "How much does shipping cost?",
                        "Shipping within Ukraine is free for orders from 1500 UAH. Orders < 1500 UAH: 80 UAH to a "
                        "Nova Poshta branch or 120 UAH by courier.", "en")
RETURNS = ContextEntry(2, "returns-en", "How do I return an item?",
                       "You can return an unused item in its original packaging within 14 days of receipt.", "en")
ENTRIES = [RETURNS, DELIVERY]
QUESTION = "How much is delivery to a Nova Poshta branch?"
SUPPORTED = "Delivery to a Nova Poshta branch costs 80 UAH, and is free for orders from 1500 UAH."
INVENTED = "Delivery to a Nova Poshta branch costs 300 UAH."


# -- the chain ---------------------------------------------------------------------------------------
async def test_an_unsupported_answer_is_refused_its_draft_discarded_and_the_next_step_answers():
    local = ScriptedAnswerer(INVENTED, delay=0.001)
    api = ScriptedAnswerer(SUPPORTED, source="api_llm")
    stream = RecordingStream()
    result = await AnswerChain([ChainStep(local, 5), ChainStep(api, 5)]).run(
        build_messages(QUESTION, entries=ENTRIES), stream=stream, check=FactChecker(ENTRIES, QUESTION))
    refused, answered = result.steps
    assert refused.outcome == "refused" and refused.detail == "unsupported claim '300 UAH' (price)"
    assert refused.summary() == "local_llm: refused (unsupported claim '300 UAH' (price))"
    assert refused.check is not None and not refused.check.ok and refused.check.entry_key == "delivery-cost-en"
    assert refused.as_dict()["check"]["unsupported"] == [{"kind": "price", "text": "300 UAH"}]
    # The invented price was on screen while it was written, then taken back.
    assert any("300" in shown for shown in stream.shown) and stream.discarded == 1
    assert answered.outcome == "answered" and answered.check is not None and answered.check.ok
    assert result.source == "api_llm" and result.text == SUPPORTED
    assert result.check is not None and result.check.entry_id == DELIVERY.entry_id
    assert stream.shown[-1] == SUPPORTED


async def test_a_finished_sentence_no_entry_supports_stops_the_step_at_once():
    rambling = ScriptedAnswerer(INVENTED + " " + "And there is much more to say about it. " * 30, delay=0.001)
    stream = RecordingStream()
    result = await AnswerChain([ChainStep(rambling, 5)]).run(
        build_messages(QUESTION, entries=ENTRIES), stream=stream, check=FactChecker(ENTRIES, QUESTION))
    [step] = result.steps
    assert step.outcome == "refused" and "300 UAH" in step.detail and not result.answered
    assert max(len(s) for s in stream.shown) < len(INVENTED) + 20  # stopped after the first sentence
    assert stream.discarded == 1 and rambling.closed == 1


async def test_a_wrong_language_answer_is_a_refusal():
    question = "skilky koshtuye dostavka do viddilennya?"
    result = await AnswerChain([ChainStep(ScriptedAnswerer(SUPPORTED), 5)]).run(
        build_messages(question, entries=ENTRIES), check=FactChecker(ENTRIES, question))
    assert result.steps[0].detail == "wrong language: English for a Ukrainian question" and not result.answered


@pytest.mark.parametrize(("reply", "choice", "outcome"), [
    ("2", 2, "answered"), ("[2]", 2, "answered"), ("Entry 1.", 1, "answered"),
    ("The answer is in entry 2", 2, "answered"), ("0", None, "refused"), ("NO_ANSWER", None, "refused"),
    ("none of them", None, "refused"), ("7", None, "chose entry 7 of 2"), ("shipping", None, "not a choice"),
])
async def test_choose_reads_an_entry_number_robustly_and_shows_nothing(reply, choice, outcome):
    stream = RecordingStream()
    result = await AnswerChain([ChainStep(ScriptedAnswerer(reply), 5)]).run(
        build_choice_messages(QUESTION, entries=ENTRIES), stream=stream, choices=len(ENTRIES))
    assert result.steps[0].outcome == outcome and result.choice == choice
    assert stream.shown == [] and stream.discarded == 0


@pytest.mark.slow
async def test_llama_cpp_chooses_through_its_entry_gate():
    """The real engine: a choice request is answered by the gate's probabilities, one number, no writing."""
    from supportbot.llm.engines import LlamaCppEngine
    from supportbot.llm.local import LocalAnswerer

    def answerer(gate):
        return LocalAnswerer(lambda: LlamaCppEngine(smollm2_path(), threads=2, context_size=1024, entry_gate=gate),
                             model_name="smollm2-135m")

    messages = build_choice_messages(QUESTION, entries=ENTRIES)
    chooses, refuses = answerer(1.0 - 1e-9), answerer(0.0)
    try:
        chosen = await AnswerChain([ChainStep(chooses, 60)]).run(messages, choices=len(ENTRIES))
        assert chosen.steps[0].outcome == "answered" and chosen.choice in (1, 2)
        assert chosen.completion_tokens == 1 and chosen.text == str(chosen.choice)
        none = await AnswerChain([ChainStep(refuses, 60)]).run(messages, choices=len(ENTRIES))
        assert none.steps[0].outcome == "refused" and none.choice is None
    finally:
        chooses.close()
        refuses.close()


# -- the modes through the conversation service ---------------------------------------------------------
ALICE = services.CustomerInfo(id=8301, first_name="Alice", language_code="en")
ASKED = "How much is shipping to a Nova Poshta branch for a 1000 UAH order?"
SAMPLE_ANSWER = "Orders < 1500 UAH: 80 UAH to a Nova Poshta branch or 120 UAH by courier."


class Chooser(ScriptedAnswerer):
    """Names the entry whose question is ``wanted``, by its number in the prompt (like a good model)."""

    def __init__(self, wanted: str) -> None:
        super().__init__("0")
        self.wanted = wanted

    async def stream(self, messages, *, max_tokens: int, deadline: float):
        found = re.search(rf"^\[(\d+)\] Q: {re.escape(self.wanted)}$", messages[-1].content, re.MULTILINE)
        self.text = found.group(1) if found else "0"
        async for chunk in super().stream(messages, max_tokens=max_tokens, deadline=deadline):
            yield chunk


@sync_to_async
def _service(fake, answerer, mode: str) -> ConversationService:
    from supportbot.assembly import build_pipeline, prepare_index

    pipeline = build_pipeline(fake, llm=LlmFallback(AnswerChain([ChainStep(answerer, 10)]), answer_mode=mode))
    prepare_index(pipeline)
    return ConversationService(pipeline)


@sync_to_async
def _log(customer: services.CustomerInfo):
    ticket = Ticket.objects.get(user_id=customer.id)
    out = list(ticket.messages.filter(direction=Message.Direction.OUT).order_by("id"))
    return ticket, out, ticket.status_changes.filter(new_status=Ticket.Status.WITH_OPERATOR).last()


@pytest.mark.django_db(transaction=True)
async def test_answer_mode_sends_a_supported_answer_marked_with_its_entry(fake, sample_faq):
    answer = "For a 1000 UAH order, shipping to a Nova Poshta branch costs 80 UAH (free from 1500 UAH)."
    service = await _service(fake, ScriptedAnswerer(answer), "answer")
    outcome = await service.ask(ALICE, ASKED, language="en", use_faq=False)
    ticket, [sent], _ = await _log(ALICE)
    assert sent.source == Message.Source.LOCAL_LLM and sent.text == answer and ticket.status == Ticket.Status.OPEN
    grounds = [c["key"] for c in sent.context_entries if c.get("grounds")]
    assert grounds == ["delivery-cost-en"]
    assert outcome.answer is not None and outcome.answer.steps[-1].check.entry_key == "delivery-cost-en"


@pytest.mark.django_db(transaction=True)
async def test_answer_mode_hands_over_an_unsupported_answer_and_says_why(fake, sample_faq):
    service = await _service(fake, ScriptedAnswerer("Shipping to a Nova Poshta branch costs 300 UAH."), "answer")
    stream = RecordingStream()
    await service.ask(ALICE, ASKED, language="en", use_faq=False, stream=stream)
    ticket, [notice], change = await _log(ALICE)
    assert notice.source == Message.Source.SYSTEM and "operator" in notice.text
    assert ticket.status == Ticket.Status.WITH_OPERATOR
    assert "local_llm: refused (unsupported claim '300 UAH' (price))" in change.reason
    assert change.draft_answer == ""
    assert stream.discarded == 1  # what the customer saw of it was taken back


@pytest.mark.django_db(transaction=True)
async def test_choose_mode_sends_the_chosen_entrys_own_answer_verbatim(fake, sample_faq):
    entry = await FaqEntry.objects.aget(key="delivery-cost-en")
    stream = RecordingStream()
    service = await _service(fake, Chooser(entry.question), "choose")
    outcome = await service.ask(ALICE, ASKED, language="en", use_faq=False, stream=stream)
    _ticket, [sent], _ = await _log(ALICE)
    assert sent.text == entry.answer  # word for word, as the FAQ keeps it
    assert sent.source == Message.Source.LOCAL_LLM and sent.faq_entry_id == entry.pk
    assert sent.llm_model == "scripted" and stream.shown == []
    assert outcome.answer is not None and outcome.answer.steps[-1].detail == "chose delivery-cost-en"


@pytest.mark.django_db(transaction=True)
async def test_choose_mode_hands_over_when_no_entry_is_chosen(fake, sample_faq):
    service = await _service(fake, Chooser("Do you sell gift cards?"), "choose")
    await service.ask(ALICE, "Do you sell gift cards?", language="en", use_faq=False)
    ticket, [notice], change = await _log(ALICE)
    assert ticket.status == Ticket.Status.WITH_OPERATOR and notice.source == Message.Source.SYSTEM
    assert "local_llm: refused" in change.reason


@pytest.mark.django_db(transaction=True)
async def test_draft_mode_hands_over_and_keeps_the_checked_answer_for_the_operator(fake, sample_faq):
    stream = RecordingStream()
    service = await _service(fake, ScriptedAnswerer(SAMPLE_ANSWER), "draft")
    outcome = await service.ask(ALICE, ASKED, language="en", use_faq=False, stream=stream)
    ticket, [notice], change = await _log(ALICE)
    assert outcome.handed_over and ticket.status == Ticket.Status.WITH_OPERATOR
    assert notice.source == Message.Source.SYSTEM and "operator" in notice.text  # no LLM answer went out
    assert change.draft_answer == SAMPLE_ANSWER and "draft kept for the operator" in change.reason
    assert stream.shown == []  # never shown while it was written either
    assert not await Message.objects.filter(source__in=Message.LLM_SOURCES).aexists()


@pytest.mark.django_db(transaction=True)
async def test_draft_mode_tells_the_customer_before_the_model_writes(fake, sample_faq):
    """The draft is for the operator: the customer's hand-over notice goes out first (``flush``),
    not after the model's seconds of writing."""
    answerer = ScriptedAnswerer(SAMPLE_ANSWER, delay=0.05)
    service = await _service(fake, answerer, "draft")
    flushed = []

    async def flush(outcome):
        flushed.append(([m.text for m in outcome.messages], len(answerer.calls)))

    searches = []
    search = service.pipeline.index.search
    service.pipeline.index.search = lambda question, k: searches.append(question) or search(question, k=k)
    outcome = await service.ask(ALICE, ASKED, language="en", use_faq=False, flush=flush)
    [(texts, calls_before)] = flushed
    assert calls_before == 0 and len(texts) == 1 and "operator" in texts[0]
    assert len(answerer.calls) == 1 and outcome.answer is not None and outcome.answer.draft == SAMPLE_ANSWER
    assert searches == [ASKED]  # the draft is grounded in the search the answer step made, not a second one
    _ticket, _out, change = await _log(ALICE)
    assert change.draft_answer == SAMPLE_ANSWER and "draft kept for the operator" in change.reason
    assert change.reason.startswith("FAQ skipped; ")


@pytest.mark.django_db(transaction=True)
async def test_draft_mode_keeps_no_draft_that_fails_the_check(fake, sample_faq):
    service = await _service(fake, ScriptedAnswerer("Shipping to a Nova Poshta branch costs 300 UAH."), "draft")
    await service.ask(ALICE, ASKED, language="en", use_faq=False)
    _ticket, _out, change = await _log(ALICE)
    assert change.draft_answer == "" and "unsupported claim '300 UAH'" in change.reason


def test_the_mode_comes_from_the_environment(tmp_path, monkeypatch):
    from supportbot.assembly import Process
    from supportbot.config import ConfigError, Settings, load_settings

    monkeypatch.setenv("LLM_ANSWER_MODE", "choose")
    cfg = Settings(_env_file=None, supportbot_data_dir=tmp_path, local_llm_enabled=True)
    assert cfg.llm.answer_mode == "choose"
    fallback = Process(cfg).llm_fallback()
    assert fallback is not None and fallback.answer_mode == "choose" and fallback.check_facts
    monkeypatch.delenv("LLM_ANSWER_MODE")
    # the safe default: the local model's answers failed the whole-chain measurement
    assert Settings(_env_file=None, supportbot_data_dir=tmp_path).llm.answer_mode == "draft"
    monkeypatch.setenv("LLM_ANSWER_MODE", "guess")
    with pytest.raises(ConfigError, match="LLM_ANSWER_MODE"):
        load_settings()
