"""The operators' forum group (``OPERATOR_CHAT_ID``): operators answer customers from its topics.

Only messages in that group reach this router, and all of them stop here (none is a customer's
question). In a customer's topic:

- text: the operator's reply to the customer (``support.group_desk.reply_from_topic``: the
  outbox delivers it once; the web thread shows which operator answered);
- ``/close``: close the customer's ticket (the topic closes too); ``/resolve``: resolve it (the
  customer is asked to rate the help; the topic closes);
- anything else (a sticker, a photo): not sent; the operator is told.

A Telegram user not linked to a staff account (admin: Operator accounts) is told how to link
and nothing is sent. Messages outside customers' topics (the General topic, the team's own
topics) are left alone. Failures are logged and answered in the topic, never passed to the
customers' error handler (an operator is not a customer).
"""

from __future__ import annotations

import logging

from aiogram import F, Router
from aiogram.filters import Command
from aiogram.types import Message as TgMessage

from supportbot.background import in_worker_thread
from supportbot.bot.delivery import Delivery
from supportbot.bot.group_desk import GroupDesk
from supportbot.support import group_desk
from supportbot.support.group_desk import TopicOutcome, TopicResult

log = logging.getLogger(__name__)

UNMAPPED = ("Your Telegram account (id {user_id}) is not linked to an operator, so nothing was sent to "
            "the customer. An admin can link it in the admin: Support desk → Operator accounts "
            "(your Telegram id: {user_id}).")
NO_TICKET = "This customer has no open ticket, so nothing was sent. Their next message opens a new one."
EMPTY = "An empty message: nothing was sent."
NOT_TEXT = "Only text is sent to the customer from here; this message was not sent."
UNKNOWN_TOPIC = "This topic does not belong to a customer: commands work in customers' topics only."
FAILED = "Something went wrong; nothing was sent. Please try again or use the web admin."
UNCHANGED = {"close": "The ticket is closed already.", "resolve": "The ticket is resolved already."}


def _in_a_topic(message: TgMessage) -> int | None:
    """The topic a message was written in (None: the General topic, or not a forum)."""
    return message.message_thread_id if message.is_topic_message else None


async def _tell(desk: GroupDesk, message: TgMessage, result: TopicResult, *, command: str = "") -> None:
    thread = _in_a_topic(message)
    user_id = message.from_user.id if message.from_user else 0
    texts = {
        TopicOutcome.UNMAPPED: UNMAPPED.format(user_id=user_id),
        TopicOutcome.NO_TICKET: NO_TICKET,
        TopicOutcome.EMPTY: EMPTY,
        TopicOutcome.UNCHANGED: UNCHANGED.get(command, ""),
        TopicOutcome.UNKNOWN_TOPIC: UNKNOWN_TOPIC if command else "",
    }
    text = texts.get(result.outcome, "")
    if text:
        await desk.say(thread, text, reply_to=message.message_id)


async def on_text(message: TgMessage, operators_group: GroupDesk, delivery: Delivery) -> None:
    thread = _in_a_topic(message)
    if thread is None or message.from_user is None or message.from_user.is_bot:
        return  # the General topic: the team's own conversation
    try:
        result = await in_worker_thread(group_desk.reply_from_topic)(
            chat_id=message.chat.id, message_thread_id=thread, telegram_user_id=message.from_user.id,
            telegram_message_id=message.message_id, text=message.text or "")
    except Exception:
        log.exception("an operator's reply in topic %s could not be recorded", thread)
        await operators_group.say(thread, FAILED, reply_to=message.message_id)
        return
    if result.outcome is TopicOutcome.SENT:
        log.info("operator %s replied to ticket #%s from the group", message.from_user.id, result.ticket_id,
                 extra={"ticket_id": result.ticket_id})
        delivery.wake()
        return
    await _tell(operators_group, message, result)


async def on_command(message: TgMessage, operators_group: GroupDesk, delivery: Delivery,
                     default_language: str = "en") -> None:
    thread = _in_a_topic(message)
    if message.from_user is None or message.from_user.is_bot:
        return
    command = (message.text or "/")[1:].split(maxsplit=1)[0].split("@", 1)[0].lower()
    if thread is None:
        await operators_group.say(None, UNKNOWN_TOPIC, reply_to=message.message_id)
        return
    chat_id, user_id, text = message.chat.id, message.from_user.id, message.text or ""
    try:
        if command == "close":
            result = await in_worker_thread(group_desk.close_from_topic)(
                chat_id=chat_id, message_thread_id=thread, telegram_user_id=user_id,
                telegram_message_id=message.message_id, text=text)
        else:
            result = await in_worker_thread(group_desk.resolve_from_topic)(
                chat_id=chat_id, message_thread_id=thread, telegram_user_id=user_id,
                telegram_message_id=message.message_id, text=text, default_language=default_language)
    except Exception:
        log.exception("/%s in topic %s failed", command, thread)
        await operators_group.say(thread, FAILED, reply_to=message.message_id)
        return
    if result.outcome in (TopicOutcome.CLOSED, TopicOutcome.RESOLVED):
        delivery.wake()  # the notice (and the rating question) go out now; the topic closes after it
        return
    await _tell(operators_group, message, result, command=command)


async def on_other(message: TgMessage, operators_group: GroupDesk) -> None:
    """A sticker, photo, voice... in a customer's topic: not sent to the customer; the operator is told."""
    thread = _in_a_topic(message)
    if thread is None or message.from_user is None or message.from_user.is_bot:
        return
    if await in_worker_thread(group_desk.target_of_thread)(chat_id=message.chat.id, message_thread_id=thread):
        await operators_group.say(thread, NOT_TEXT, reply_to=message.message_id)


def build_router(operator_chat_id: int) -> Router:
    router = Router(name="operators-group")
    # Every message of the operators' group stops here; the customers' routers never see one.
    router.message.filter(F.chat.id == operator_chat_id)
    router.message.register(on_command, Command("close", "resolve"))
    router.message.register(on_text, F.text & ~F.text.startswith("/"))
    router.message.register(on_other, F.sticker | F.photo | F.document | F.voice | F.audio | F.video
                            | F.video_note | F.animation | F.location | F.contact)
    router.message.register(_ignore)  # other commands, service messages (topic closed, member joined...)
    return router


async def _ignore(message: TgMessage) -> None:
    return None
