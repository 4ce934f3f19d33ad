"""Small talk is the bot's own job: greetings, thanks, "are you a bot?" get its own short
texts; "I want a person" a hand-over; a greeting with a question is a question.

First the classifier on its own (many phrasings, negatives, broken input), then the
conversation service with a real SQLite database and a pipeline that records every
question it is asked, then one customer through the sandbox Bot API.
"""

from __future__ import annotations

import pytest
from asgiref.sync import sync_to_async
from django.contrib.auth import get_user_model

from supportbot.conversation import Command, ConversationService, Heard
from supportbot.i18n import gettext_for
from supportbot.smalltalk import MAX_WORDS, SmallTalk, classify, reply
from supportbot.support import services
from supportbot.support.models import Message, Ticket, TicketStatusChange

G, T, B = SmallTalk.GREETING, SmallTalk.THANKS, SmallTalk.GOODBYE
WHO, WHAT, BOT, PERSON = SmallTalk.WHO_ARE_YOU, SmallTalk.WHAT_CAN_YOU_DO, SmallTalk.ARE_YOU_BOT, SmallTalk.WANTS_PERSON

PHRASINGS: dict[SmallTalk, list[str]] = {
    G: ["привіт", "Привіт!", "привiт", "Привіііт 👋", "Добрий день!", "доброго ранку", "вітаю", "Агов, є хтось?",
        "привет", "Привееет!!!", "Здравствуйте.", "добрый вечер", "Доброе утро :)", "ау?", "как дела?",
        "hi", "Hello!", "hey there", "Good morning!", "hiii", "how are you?", "hello?", "is anyone there?",
        "pryvit", "privet)", "dobryi den", "zdravstvuyte", "HELLO BOT", "Привіт, бот!", "yo"],
    T: ["дякую", "Дякую!", "дуже дякую 🙏", "спасибі", "щиро дякую вам", "спасибо", "Спасибо большое!",
        "большое спасибо)", "спс", "благодарю", "thanks", "Thank you!", "thank you so much!!", "thx", "ty",
        "thanks a lot", "cheers", "spasibo", "dyakuyu", "diakuiu", "ok", "Ок, зрозуміло", "понятно, спасибо",
        "got it, thanks", "ok 👍"],
    B: ["бувай", "До побачення!", "на все добре", "пока", "пока-пока", "До свидания.", "всего доброго",
        "bye", "Goodbye!", "see you", "have a nice day", "poka", "do pobachennya", "thanks, bye",
        "дякую, до побачення", "спасибо, до свидания"],
    WHO: ["хто ти?", "Ти хто?", "з ким я розмовляю?", "кто ты?", "Вы кто?", "с кем я говорю?",
          "как тебя зовут?", "who are you?", "Who am I talking to?", "what's your name?", "whats your name",
          "kto ty", "khto ty?", "привіт, хто ти?", "hi, who are you?"],
    WHAT: ["що ти вмієш?", "Чим можете допомогти?", "допоможіть", "що ти можеш?", "что ты умеешь?",
           "чем вы можете помочь?", "помогите!", "what can you do?", "How can you help me?", "help", "HELP!!!",
           "can you help me?", "i need help", "chto ty umeesh", "привет, что ты умеешь?"],
    BOT: ["ти бот?", "Ви бот?", "це бот?", "чи це жива людина?", "ти людина?", "ты бот?", "Вы живой человек?",
          "это бот?", "я говорю с ботом?", "are you a bot?", "Are you human?", "r u a bot", "is this a bot?",
          "am I talking to a real person?", "bot or human?", "ty bot?", "Привет! Ты бот?"],
    PERSON: ["оператор", "Оператора!", "жива людина", "хочу з оператором", "покличте оператора",
             "з'єднайте з оператором", "з’єднайте з оператором", "зʼєднайте з живою людиною будь ласка",
             "хочу поговорити з людиною", "позовите оператора", "Позовите оператора, пожалуйста",
             "живой человек", "хочу поговорить с человеком", "соедините с оператором", "мне нужен менеджер",
             "operator", "operator pls", "I want a person", "I want to talk to a human", "human please",
             "Can I speak to a real person?", "connect me with an agent", "talk to a human", "real person pls",
             "Hello, I would like to talk to a real person please", "are you a bot? I want a human",
             "operatora", "zhyva lyudyna", "Доброго дня! Хочу поговорити з живою людиною"],
}


@pytest.mark.parametrize(("text", "kind"), [(t, k) for k, texts in PHRASINGS.items() for t in texts])
def test_small_talk_is_recognised_in_every_language(text, kind):
    assert classify(text) is kind


@pytest.mark.parametrize("text", [
    # a greeting (or thanks) in front must not swallow the question
    "hi, how much is delivery to Lviv?", "Hello! Can you help me with my order?",
    "Привіт! Скільки коштує доставка до Львова?", "Добрий день, де моє замовлення?",
    "Здравствуйте, как вернуть товар?", "спасибо, а когда привезут заказ?", "thanks, and what about returns?",
    "pryvit, skilky koshtuye dostavka", "Hi, where is my parcel?",
    # 'bot', 'person', 'operator', 'help' in another sense
    "who is the person responsible for returns", "is there a bot for orders", "what is the operator's phone number",
    "can I talk to a person about my order", "Is the manager available today?", "when will the operator answer",
    "I don't want an operator", "no operator", "оператор не відповідає", "хто відповідає за повернення?",
    "кто ваш оператор доставки?", "help me choose a laptop", "що ти вмієш робити з поверненнями?",
    "How are you shipping my order?", "Thank you for the refund, but it was only half",
    # plain questions and other words
    "How much does shipping cost?", "Скільки коштує доставка?", "да", "no", "42", "ok google, order pizza",
])
def test_anything_more_than_small_talk_is_not_small_talk(text):
    assert classify(text) is None


@pytest.mark.parametrize("text", [
    "", " ", "\n\t", "👋", "🙏🙏🙏", "?!...", "\x00\x07\x1b", "\u200b\u200b", "hi " * 100, "a" * 10_000,
    "привіт " * (MAX_WORDS + 1), "\ufeff", "💩" * 500,
])
def test_broken_or_odd_input_is_never_small_talk(text):
    assert classify(text) is None


def test_control_characters_and_invisible_marks_are_only_separators():
    assert classify("\x00привіт\x07") is G
    assert classify("thanks\u200b!") is T
    assert classify("ПРИВІТ\r\n") is G


def test_replies_are_in_the_customers_language_and_point_to_a_person():
    for kind in SmallTalk:
        if kind is PERSON:
            with pytest.raises(ValueError):
                reply(kind, gettext_for("en"))
            continue
        english = reply(kind, gettext_for("en"))
        for language in ("uk", "ru"):
            translated = reply(kind, gettext_for(language))
            assert translated != english and not any(c.isascii() and c.isalpha() for c in
                                                     translated.replace("/operator", "")), translated
        if kind not in (T, B):
            assert english.endswith("send /operator.")
    assert reply(G, gettext_for("uk")).startswith("Вітаю! Я бот служби підтримки.")
    assert reply(BOT, gettext_for("ru")).startswith("Да, я бот")


# -- the conversation service -------------------------------------------------------------------
ALICE = services.CustomerInfo(id=8201, first_name="Alice", language_code="en")
OLENA = services.CustomerInfo(id=8202, first_name="Olena", language_code="uk")


class RecordingPipeline:
    """The real pipeline (sample FAQ, fake embedder, no LLM), recording every question it gets."""

    def __init__(self, inner) -> None:
        self.inner, self.llm, self.questions = inner, None, []

    async def answer(self, question: str, **kwargs):
        self.questions.append(question)
        return await self.inner.answer(question, **kwargs)


@pytest.fixture
def pipeline(fake, sample_faq) -> RecordingPipeline:
    from supportbot.assembly import build_pipeline, prepare_index

    inner = build_pipeline(fake, llm=None)
    prepare_index(inner)
    return RecordingPipeline(inner)


@pytest.fixture
def service(pipeline) -> ConversationService:
    return ConversationService(pipeline)  # type: ignore[arg-type]


def _rows(ids: list[int]) -> list[Message]:
    return services.messages_by_id(ids)


@sync_to_async
def _ticket(customer: services.CustomerInfo) -> Ticket:
    return Ticket.objects.filter(user_id=customer.id).order_by("-id").first()


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(("text", "language", "kind"), [
    ("привіт", "uk", G), ("Спасибо большое!", "ru", T), ("are you a bot?", "en", BOT), ("хто ти?", "uk", WHO),
    ("what can you do?", "en", WHAT), ("bye!", "ru", B),
])
async def test_small_talk_is_answered_by_the_bot_itself(service, pipeline, text, language, kind):
    outcome = await service.ask(OLENA, text, language=language, telegram_message_id=51)
    [said] = await sync_to_async(_rows)(outcome.outgoing)
    assert said.text == reply(kind, gettext_for(language)) and said.source == Message.Source.SMALLTALK
    assert said.in_reply_to_id == outcome.incoming_id and said.processing_ms is not None
    assert said.delivery_status == Message.Delivery.SENDING  # goes out like any answer...
    assert not said.is_automatic_answer  # ...but with no Helpful / Not helpful buttons
    assert pipeline.questions == []  # no FAQ search, no LLM
    assert not outcome.handed_over and (await _ticket(OLENA)).status == Ticket.Status.OPEN
    assert outcome.answer is not None and outcome.answer.source == "smalltalk" and outcome.answer.reason == kind.value
    incoming = await Message.objects.aget(pk=outcome.incoming_id)
    assert incoming.text == text and incoming.source == Message.Source.USER


@pytest.mark.django_db(transaction=True)
async def test_a_small_talk_reply_cannot_be_rated(service):
    outcome = await service.ask(ALICE, "thanks!", language="en")
    [said] = outcome.outgoing
    result, nothing = await service.feedback(ALICE, message_id=said, helpful=False, language="en")
    assert result is services.FeedbackOutcome.UNKNOWN and nothing is None
    assert (await _ticket(ALICE)).status == Ticket.Status.OPEN


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("text", ["I want a person", "позовите оператора", "жива людина", "operator pls"])
async def test_asking_for_a_person_in_words_hands_over_like_the_command(service, pipeline, text):
    outcome = await service.ask(ALICE, text, language="en")
    [notice] = await sync_to_async(_rows)(outcome.outgoing)
    assert outcome.handed_over and notice.source == Message.Source.SYSTEM
    assert notice.text == "I have passed your question to an operator. A person will reply here soon."
    assert pipeline.questions == []
    ticket = await _ticket(ALICE)
    assert ticket.status == Ticket.Status.WITH_OPERATOR
    change = await sync_to_async(lambda: ticket.status_changes.last())()
    assert change.actor == TicketStatusChange.Actor.CUSTOMER
    assert change.reason == "customer asked for a person in words"

    # Asked again while a person owns the ticket: nothing new, as after /operator.
    again = await service.ask(ALICE, text, language="en")
    assert again.with_operator and not again.handed_over and again.ticket_id == outcome.ticket_id


@pytest.mark.django_db(transaction=True)
async def test_a_greeting_with_a_question_goes_through_the_answer_pipeline(service, pipeline):
    question = "Hi! How much does shipping cost?"
    outcome = await service.ask(ALICE, question, language="en")
    assert pipeline.questions == [question]
    [said] = await sync_to_async(_rows)(outcome.outgoing)
    assert said.source in (Message.Source.FAQ, Message.Source.SYSTEM)  # answered, or handed over
    assert outcome.answer is not None and outcome.answer.source != "smalltalk"


@pytest.mark.django_db(transaction=True)
async def test_while_a_person_owns_the_ticket_small_talk_gets_no_reply_of_its_own(service, pipeline):
    await service.command(ALICE, Command.OPERATOR, text="/operator", language="en")
    quiet = await service.ask(ALICE, "hello?", language="en")
    assert quiet.with_operator and quiet.outgoing == [] and quiet.answer is None  # told once already
    ticket = await _ticket(ALICE)
    operator = await sync_to_async(get_user_model().objects.create_user)("olha")
    await sync_to_async(services.do_operator_reply)(ticket=ticket, operator=operator, text="How can I help?")
    waiting = await service.ask(ALICE, "thanks", language="en")
    [notice] = await sync_to_async(_rows)(waiting.outgoing)
    assert "An operator is handling your request" in notice.text and notice.source == Message.Source.SYSTEM
    assert pipeline.questions == []


@pytest.mark.django_db(transaction=True)
async def test_a_spoken_greeting_is_small_talk_too(service, pipeline):
    outcome = await service.heard(OLENA, Heard(text="Привіт!", language="uk"), language="uk", telegram_message_id=61)
    echo, said = await sync_to_async(_rows)(outcome.outgoing)
    assert echo.text == "Я почув: Привіт!" and echo.quote_reply
    assert said.source == Message.Source.SMALLTALK and said.text == reply(G, gettext_for("uk"))
    assert pipeline.questions == []


@pytest.mark.django_db(transaction=True)
async def test_small_talk_replies_are_not_given_to_the_llm_as_history(service):
    from supportbot.llm.context import ticket_history

    await service.ask(ALICE, "hi", language="en")
    later = await service.ask(ALICE, "How much does shipping cost?", language="en")
    history = await sync_to_async(ticket_history)(later.ticket_id, later.incoming_id, 10)
    assert [(t.speaker, t.text) for t in history] == [("customer", "hi")]


# -- through the Bot API ----------------------------------------------------------------------------
@pytest.mark.slow
async def test_a_customer_greeting_the_bot_gets_its_greeting_without_buttons(fake, bot_app, customer_api):
    sent = await customer_api.send_text(8203, "привіт", language_code="uk", first_name="Olena")
    answer = await customer_api.wait_for_bot_message(8203, after=sent["message"]["message_id"])
    assert answer["plain_text"] == reply(G, gettext_for("uk"))
    assert not (answer.get("reply_markup") or {}).get("inline_keyboard")
    logged = await Message.objects.aget(direction="out", ticket__user_id=8203)
    assert logged.source == Message.Source.SMALLTALK and logged.telegram_message_id == answer["message_id"]
    assert (await Ticket.objects.aget(user_id=8203)).status == Ticket.Status.OPEN
