"""A customer's event -> ticket rules + answer pipeline -> the messages that go out.

The one place that decides what happens when a customer writes, speaks, runs a
command or presses a feedback button: which ticket it lands on, whether the bot
answers (a person may own the ticket), what the answer pipeline says, when the
ticket goes to a person, and which messages are sent back. Those messages are
*recorded* here (pending, in the message log); the caller delivers them (the bot
through ``bot.delivery``; ``supportbot ask`` only prints them).

Plain async Python: no aiogram, no Django request. The bot's handlers parse an
update, call one method and deliver what it returns; the CLI, benchmarks and tests
call the same methods, so they all run the same ticket rules. Sync ORM work runs in
worker threads (never on the event loop, never on asgiref's single shared thread).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import Enum

from django.utils import timezone

from supportbot import smalltalk
from supportbot.background import in_worker_thread
from supportbot.hours import OperatorHours, describe_opening
from supportbot.i18n import gettext_for
from supportbot.logs import message_text
from supportbot.ops import metrics
from supportbot.pipeline import Answer, AnswerPipeline, Conversation, Source
from supportbot.support import aftercare, services
from supportbot.support.aftercare import BackToBotOutcome, RatingOutcome
from supportbot.support.choices import Actor
from supportbot.support.models import Message
from supportbot.support.services import CustomerInfo, FeedbackOutcome
from supportbot.support.voice import attach_transcript

log = logging.getLogger(__name__)


class Command(str, Enum):
    START = "start"
    HELP = "help"
    OPERATOR = "operator"
    UNKNOWN = "unknown"  # any other /command: never a question, answered with the help text


@dataclass
class Outcome:
    """What the service decided: the ticket, the logged incoming message and what goes out."""

    ticket_id: int | None
    incoming_id: int | None = None
    #: Who the messages go to (the customer's chat) and in which language the bot speaks.
    chat_id: int | None = None
    language: str = "en"
    #: The customer's Telegram message, for messages that quote it (voice notices).
    reply_to: int | None = None
    #: Recorded outgoing messages (ids), in the order they must reach the customer...
    outgoing: list[int] = field(default_factory=list)
    #: ...and the rows themselves, claimed for sending by this worker at ``claim``
    #: (``services.record_outgoing``), or pending behind an earlier message of the ticket.
    messages: list[Message] = field(default_factory=list)
    claim: datetime = field(default_factory=timezone.now)
    #: The answer pipeline's result, where a question was asked; for small talk the bot's own
    #: reply (source ``smalltalk``) or, for "I want a person", a hand-over that asked no pipeline.
    answer: Answer | None = None
    #: This event handed the ticket to a person.
    handed_over: bool = False
    #: A person owns the ticket, so the bot did not answer.
    with_operator: bool = False


@dataclass(frozen=True)
class Heard:
    """A voice message as the transcriber heard it."""

    text: str
    language: str = ""
    probability: float | None = None
    seconds: float | None = None
    transcription_ms: int | None = None
    audio_file: str = ""


class ConversationService:
    def __init__(self, pipeline: AnswerPipeline, *, deliver: bool = True,
                 reopen_window: timedelta = aftercare.DEFAULT_REOPEN_WINDOW, hours: OperatorHours | None = None,
                 clock: Callable[[], datetime] = timezone.now) -> None:
        """``reopen_window``: a customer who writes this long after a resolve reopens that ticket
        (``REOPEN_WINDOW_HOURS``); ``hours``: when operators work (``OPERATOR_HOURS``...; None:
        always), told to a customer handed over outside them; ``clock``: now (tests)."""
        self.pipeline = pipeline
        #: False: outgoing messages are logged but never queued for Telegram (``supportbot ask``).
        self.deliver = deliver
        self.reopen_window = reopen_window
        self.hours = hours or OperatorHours()
        self.clock = clock

    # -- recording ------------------------------------------------------------------------------
    async def _say(self, outcome: Outcome, text: str, *, source: str = Message.Source.SYSTEM,
                   quote: bool = False, **fields) -> int:
        assert outcome.ticket_id is not None
        row = await in_worker_thread(services.record_outgoing)(
            ticket_id=outcome.ticket_id, text=text, source=source, in_reply_to_id=outcome.incoming_id,
            quote_reply=quote, deliver=self.deliver, claim=outcome.claim if self.deliver else None, **fields)
        outcome.outgoing.append(row.pk)
        outcome.messages.append(row)
        return row.pk

    async def _log(self, customer: CustomerInfo, *, kind: str, text: str, language: str,
                   telegram_message_id: int | None) -> tuple[Outcome, services.Incoming]:
        incoming = await in_worker_thread(services.record_incoming)(
            customer=customer, kind=kind, text=text, telegram_message_id=telegram_message_id,
            reopen_window=self.reopen_window)
        log.debug("customer %s: %s message %s", customer.id, kind, message_text(text),
                  extra={"ticket_id": incoming.ticket_id, "message_id": incoming.message_id})
        outcome = Outcome(incoming.ticket_id, incoming.message_id, chat_id=customer.id, language=language,
                          reply_to=telegram_message_id, with_operator=incoming.with_operator)
        return outcome, incoming

    def _when_a_person_replies(self, text: str, _) -> str:
        """A notice that a person will reply, and outside operator hours when one is back (the
        delivery path adds "Ask the bot instead" under it while the ticket waits)."""
        now = self.clock()
        if self.hours.is_open(now):
            return text
        opening = self.hours.next_opening(now)
        if opening is None:
            away = _("Our operators are away now; a person will reply as soon as they are back.")
        else:
            away = _("Our operators are away now and back {when} ({zone} time).").format(
                when=describe_opening(opening, now, _), zone=self.hours.zone_label)
        return f"{text}\n\n{away}"

    async def _waiting(self, outcome: Outcome, incoming: services.Incoming, _, *, asked: bool = False) -> Outcome:
        """A person owns the ticket: the bot stays quiet and says so once per hand-over, or
        whenever the customer asks for a person again (``asked``: ``/operator`` always answers)."""
        if incoming.notify_waiting or asked:
            await self._say(outcome, self._when_a_person_replies(
                _("An operator is handling your request. A person will reply here soon."), _))
        return outcome

    async def _hand_over(self, outcome: Outcome, *, actor: str, reason: str, text: str,
                         draft_answer: str = "") -> Outcome:
        assert outcome.ticket_id is not None
        outcome.handed_over = await in_worker_thread(services.hand_over)(
            ticket_id=outcome.ticket_id, actor=actor, reason=reason, draft_answer=draft_answer)
        if outcome.handed_over:
            await self._say(outcome, self._when_a_person_replies(text, _=gettext_for(outcome.language)))
        return outcome

    async def _to_a_person(self, outcome: Outcome, incoming: services.Incoming, _, *, reason: str) -> Outcome:
        """The customer asked for a person (``/operator``, or in words): hand over, or say one is on it."""
        if incoming.with_operator:
            return await self._waiting(outcome, incoming, _, asked=True)
        return await self._hand_over(
            outcome, actor=Actor.CUSTOMER, reason=reason,
            text=_("I have passed your question to an operator. A person will reply here soon."))

    async def _small_talk(self, outcome: Outcome, incoming: services.Incoming, talk: smalltalk.SmallTalk, _,
                          started: float) -> Outcome:
        """Greetings, thanks, "who are you"...: the bot's own short text, never the FAQ or an LLM."""
        if talk is smalltalk.SmallTalk.WANTS_PERSON:
            reason = "customer asked for a person in words"
            outcome.answer = Answer(source=Source.HANDOVER, reason=reason)
            return await self._to_a_person(outcome, incoming, _, reason=reason)
        text = smalltalk.reply(talk, _)
        elapsed_ms = int((time.perf_counter() - started) * 1000)
        outcome.answer = Answer(source=Message.Source.SMALLTALK, text=text, reason=talk.value, elapsed_ms=elapsed_ms)
        await self._say(outcome, text, source=Message.Source.SMALLTALK, processing_ms=elapsed_ms)
        return outcome

    # -- questions ----------------------------------------------------------------------------------
    async def ask(
        self, customer: CustomerInfo, text: str, *, language: str, telegram_message_id: int | None = None,
        kind: str = Message.Kind.TEXT, stream=None, use_faq: bool = True,
        _logged: tuple[Outcome, services.Incoming] | None = None,
        flush: Callable[[Outcome], Awaitable[object]] | None = None,
    ) -> Outcome:
        """:meth:`_ask`, counted: the answer's source (``supportbot_answers``) and the seconds from
        the question to the recorded reply (stage ``answer``)."""
        started = time.perf_counter()
        outcome = await self._ask(customer, text, language=language, telegram_message_id=telegram_message_id,
                                  kind=kind, stream=stream, use_faq=use_faq, _logged=_logged, flush=flush)
        metrics.observe_stage("answer", time.perf_counter() - started)
        if outcome.answer is not None:
            metrics.ANSWERS.labels(outcome.answer.source).inc()
        elif outcome.with_operator:
            metrics.ANSWERS.labels("with_operator").inc()
        return outcome

    async def _ask(
        self, customer: CustomerInfo, text: str, *, language: str, telegram_message_id: int | None = None,
        kind: str = Message.Kind.TEXT, stream=None, use_faq: bool = True,
        _logged: tuple[Outcome, services.Incoming] | None = None,
        flush: Callable[[Outcome], Awaitable[object]] | None = None,
    ) -> Outcome:
        """A question in words (typed, or a voice transcript): answer it, or hand it over.

        ``flush``: called with the outcome when the customer should see what is recorded so
        far (the hand-over notice) before slow work that follows (the operator's LLM draft).

        Small talk ("hi", "thanks", "are you a bot?") gets the bot's own reply and "I want a
        person" a hand-over, before the pipeline (``supportbot.smalltalk``); not while a person
        owns the ticket: then the bot stays quiet as for any message.
        ``stream``: where an LLM answer is shown while it is written (the bot's draft).
        """
        _ = gettext_for(language)
        started = time.perf_counter()
        outcome, incoming = _logged or await self._log(
            customer, kind=kind, text=text, language=language, telegram_message_id=telegram_message_id)
        if incoming.with_operator:
            return await self._waiting(outcome, incoming, _)
        talk = smalltalk.classify(text)
        if talk is not None:
            return await self._small_talk(outcome, incoming, talk, _, started)
        conversation = Conversation(customer_id=customer.id, ticket_id=incoming.ticket_id,
                                    message_id=incoming.message_id)
        answer = await self.pipeline.answer(text, language=language, conversation=conversation,
                                            stream=stream, use_faq=use_faq, defer_draft=True)
        outcome.answer = answer
        if answer.answered and answer.text:
            by_llm = answer.source in Message.LLM_SOURCES
            await self._say(
                outcome, answer.text, source=answer.source, faq_entry_id=answer.faq_entry_id,
                score=answer.score, processing_ms=int((time.perf_counter() - started) * 1000),
                llm=answer.llm_fields() if by_llm else None)
            return outcome
        notice = _("I have passed your question to an operator. A person will reply here soon.")
        if answer.limited:
            notice = _("You have asked many questions in the last hour, so I have passed this one to an "
                       "operator. A person will reply here soon.")
        await self._hand_over(outcome, actor=Actor.BOT, reason=answer.reason or "no answer", text=notice,
                              draft_answer=answer.draft or "")
        if answer.draft_pending and outcome.handed_over:
            # LLM_ANSWER_MODE=draft: the customer is told at once; the model drafts for the operator after.
            if flush is not None:
                await flush(outcome)
            drafted = await self.pipeline.draft(text, language=language, conversation=conversation,
                                                matches=answer.draft_matches)
            await in_worker_thread(services.attach_draft)(
                ticket_id=incoming.ticket_id, draft_answer=drafted.draft or "", reason=drafted.reason)
            answer.draft, answer.steps, answer.context = drafted.draft, drafted.steps, drafted.context
            answer.reason = "; ".join(r for r in (answer.reason, drafted.reason) if r)
        return outcome

    # -- commands and other kinds ----------------------------------------------------------------------
    async def command(self, customer: CustomerInfo, command: Command, *, text: str, language: str,
                      telegram_message_id: int | None = None) -> Outcome:
        _ = gettext_for(language)
        outcome, incoming = await self._log(customer, kind=Message.Kind.TEXT, text=text, language=language,
                                            telegram_message_id=telegram_message_id)
        if command is Command.START:
            name = customer.first_name or _("there")
            await self._say(outcome, _(
                "Hello, {name}! I am the support assistant. Ask your question in your own words "
                "and I will answer from our knowledge base, or pass it to a person.").format(name=name))
        elif command is Command.OPERATOR:
            return await self._to_a_person(outcome, incoming, _, reason="customer asked for a person (/operator)")
        else:
            await self._say(outcome, _(
                "Write your question as a normal message, or send a voice message.\n"
                "/operator: talk to a person\n/help: this help"))
        return outcome

    async def unsupported(self, customer: CustomerInfo, *, kind: str, text: str, language: str,
                          telegram_message_id: int | None = None) -> Outcome:
        """Stickers, photos, documents, locations...: logged, answered politely."""
        _ = gettext_for(language)
        outcome, _incoming = await self._log(customer, kind=kind, text=text, language=language,
                                             telegram_message_id=telegram_message_id)
        await self._say(outcome, _("Thanks! I can only read text and voice messages. "
                                   "Please describe your question in words."))
        return outcome

    # -- feedback ---------------------------------------------------------------------------------------
    async def feedback(self, customer: CustomerInfo, *, message_id: int, helpful: bool,
                       language: str) -> tuple[FeedbackOutcome, Outcome | None]:
        """Helpful / Not helpful under an automatic answer; "Not helpful" hands the ticket over."""
        _ = gettext_for(language)
        result = await in_worker_thread(services.record_feedback)(
            message_id=message_id, customer_id=customer.id, helpful=helpful)
        if result is not FeedbackOutcome.STORED or helpful:
            return result, None
        ticket_id = await in_worker_thread(services.ticket_of)(message_id=message_id)
        outcome = Outcome(ticket_id, chat_id=customer.id, language=language, handed_over=True)
        await self._say(outcome, self._when_a_person_replies(
            _("Sorry it did not help. I have passed your question to an operator."), _))
        return result, outcome

    # -- after the operator ---------------------------------------------------------------------------
    async def rate(self, customer: CustomerInfo, *, message_id: int, score: int) -> RatingOutcome:
        """A click on the rating buttons under "Did we solve your problem?" (``aftercare``)."""
        return await in_worker_thread(aftercare.record_rating)(
            message_id=message_id, customer_id=customer.id, score=score)

    async def back_to_bot(self, customer: CustomerInfo, *, ticket_id: int,
                          language: str) -> tuple[BackToBotOutcome, Outcome | None]:
        """"Ask the bot instead" while waiting for a person: the ticket is open again and the bot
        answers the customer's next questions; they are told so (``/operator`` calls a person back)."""
        _ = gettext_for(language)
        result = await in_worker_thread(aftercare.back_to_bot)(ticket_id=ticket_id, customer_id=customer.id)
        if result is not BackToBotOutcome.DONE:
            return result, None
        outcome = Outcome(ticket_id, chat_id=customer.id, language=language)
        await self._say(outcome, _("Okay, I will answer your questions myself again. Ask away; "
                                   "/operator calls a person back."))
        return result, outcome

    # -- voice ------------------------------------------------------------------------------------------
    async def heard(self, customer: CustomerInfo, heard: Heard, *, language: str, telegram_message_id: int | None,
                    stream=None, flush: Callable[[Outcome], Awaitable[object]] | None = None) -> Outcome:
        """A transcribed voice message: echo what was heard, then answer it like text.

        ``flush``: called with the outcome once the echo is recorded, before the question is
        answered, so the customer sees "I heard: ..." at once, not after an LLM's answer.
        """
        _ = gettext_for(language)
        logged = await self._log(customer, kind=Message.Kind.VOICE, text=heard.text, language=language,
                                 telegram_message_id=telegram_message_id)
        outcome, incoming = logged
        await in_worker_thread(attach_transcript)(
            message_id=incoming.message_id, language=heard.language, probability=heard.probability,
            audio_seconds=heard.seconds, transcription_ms=heard.transcription_ms, audio_file=heard.audio_file)
        if not heard.text:
            await self._say(outcome, _("I could not hear anything in your voice message. "
                                       "Please try again or write your question."), quote=True)
            return outcome
        await self._say(outcome, _("I heard: {transcript}").format(transcript=heard.text), quote=True)
        if flush is not None:
            await flush(outcome)
        answered = await self.ask(customer, heard.text, language=language, stream=stream, _logged=logged,
                                  flush=flush)
        return answered

    async def not_heard(self, customer: CustomerInfo, *, notice: str, telegram_message_id: int | None,
                        language: str = "en", hand_over: bool = False, **details) -> Outcome:
        """A voice message the bot could not listen to (too big, too long, busy, damaged...).

        ``notice`` (already in the customer's language) says why; ``details``: what is known
        about the audio (``attach_transcript``). ``hand_over``: something broke on our side.
        """
        outcome, incoming = await self._log(customer, kind=Message.Kind.VOICE, text="", language=language,
                                            telegram_message_id=telegram_message_id)
        if details:
            await in_worker_thread(attach_transcript)(message_id=incoming.message_id, **details)
        await self._say(outcome, notice, quote=True)
        if hand_over:
            outcome.handed_over = await in_worker_thread(services.hand_over)(
                ticket_id=incoming.ticket_id, actor=Actor.BOT, reason="voice message could not be processed")
        return outcome

    # -- failures ----------------------------------------------------------------------------------------
    async def failed(self, customer: CustomerInfo, *, language: str, reason: str) -> Outcome:
        """Handling the customer's update broke: apologise and give the ticket to a person."""
        _ = gettext_for(language)
        ticket_id, changed = await in_worker_thread(services.hand_over_after_error)(
            customer=customer, reason=reason, reopen_window=self.reopen_window)
        outcome = Outcome(ticket_id, chat_id=customer.id, language=language, handed_over=changed)
        apology = _("Sorry, something went wrong on our side. Your message is saved and an operator will see it.")
        await self._say(outcome, self._when_a_person_replies(apology, _))
        return outcome
