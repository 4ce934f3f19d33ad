"""The operators' Telegram group as a second desk (``OPERATOR_CHAT_ID``): the Telegram side.

The database side (``support.group_desk``) records what goes into a customer's topic as
``direction=DESK`` messages; the delivery path (``bot.delivery``) claims them like every
other outgoing message and hands each to :meth:`GroupDesk.send`, which

- finds the customer's topic, creating it on the first post (``createForumTopic``, named
  after the customer and the ticket) and renaming it when a later ticket reuses it;
- posts the text into it through the caller's ``send_parts`` (the delivery path's own sending:
  the send limits' slot for the group, 20 messages a minute, parts under 4,096 characters);
- re-creates a topic someone deleted by hand (Telegram answers ``Bad Request: message thread
  not found``) and posts there;
- after a status notice, opens or closes the topic to match the customer's tickets (a person
  owns one: open; else closed), so a close in the web admin closes the topic without the
  admin calling Telegram.

What the delivery path does with errors (429, 5xx, a 403 because the bot left the group) is
the same as for customers' messages: the row is retried or failed visibly.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from aiogram import Bot
from aiogram.exceptions import TelegramBadRequest

from supportbot.background import in_worker_thread
from supportbot.bot.limits import SendLimiter
from supportbot.bot.render import escape
from supportbot.support import group_desk
from supportbot.support.group_desk import TopicTarget
from supportbot.support.models import Message

if TYPE_CHECKING:
    from supportbot.bot.delivery import Delivery
    from supportbot.support.aftercare import OverdueTicket

log = logging.getLogger(__name__)

#: Telegram's answer for a topic that is gone (deleted by hand, or never existed).
THREAD_NOT_FOUND = "message thread not found"
#: Telegram's answer for closing a closed topic, renaming to the same name...
NOT_MODIFIED = "TOPIC_NOT_MODIFIED"

SendParts = Callable[[int], Awaitable[int]]


class DeskUnavailable(Exception):
    """A DESK message reached a bot process without that operators' group (failed for good)."""


def thread_gone(exc: TelegramBadRequest) -> bool:
    return THREAD_NOT_FOUND in exc.message.lower()


class GroupDesk:
    """The bot's side of the operators' forum group ``chat_id``."""

    def __init__(self, bot: Bot, chat_id: int, *, limiter: SendLimiter | None = None) -> None:
        self.bot = bot
        self.chat_id = chat_id
        self.limiter = limiter or SendLimiter()
        self._locks: dict[int, asyncio.Lock] = {}  # per customer: one topic created at a time
        #: Whether each topic is closed, as far as this process knows (None: unknown).
        self._closed: dict[int, bool] = {}

    # -- posting (the delivery path) ---------------------------------------------------------
    async def send(self, message: Message, send_parts: SendParts) -> int:
        """Post the claimed DESK ``message`` into its customer's topic; returns the Telegram id of
        the (last) message sent. ``send_parts(thread_id)`` sends the text into that topic."""
        target = await in_worker_thread(group_desk.target_of)(message_id=message.pk)
        thread = await self._topic(target)
        # A status notice opens the topic before it is posted (a hand-over), or closes it after.
        notice = message.source == Message.Source.SYSTEM
        should_be_open = notice and await in_worker_thread(group_desk.topic_should_be_open)(
            customer_id=target.customer_id)
        if should_be_open:
            await self._set_open(thread, True)
        try:
            sent = await send_parts(thread)
        except TelegramBadRequest as exc:
            if not thread_gone(exc):
                raise
            log.warning("topic %s of customer %s is gone (deleted by hand?): creating it again", thread,
                        target.customer_id)
            thread = await self._recreate(target, thread)
            sent = await send_parts(thread)
        # The post is out: nothing after it may fail the row (it would be posted again).
        try:
            if message.message_thread_id != thread:
                await in_worker_thread(group_desk.posted_to)(message_id=message.pk, message_thread_id=thread)
            if notice and not should_be_open:
                await self._set_open(thread, False)
        except Exception as exc:  # noqa: BLE001 (a topic left open, a thread id not noted: logged)
            log.warning("after posting message %s into topic %s: %s", message.pk, thread, exc)
        return sent

    async def _topic(self, target: TopicTarget) -> int:
        if target.message_thread_id is None:
            return await self._create(target)
        if target.topic_name != target.name:  # a later ticket of the customer: named after it
            try:
                await self.bot.edit_forum_topic(self.chat_id, target.message_thread_id, name=target.name)
            except TelegramBadRequest as exc:
                if thread_gone(exc):
                    return await self._recreate(target, target.message_thread_id)
                if NOT_MODIFIED not in exc.message:
                    raise
            await in_worker_thread(group_desk.renamed)(customer_id=target.customer_id, name=target.name)
        return target.message_thread_id

    def _lock(self, customer_id: int) -> asyncio.Lock:
        lock = self._locks.get(customer_id)
        if lock is None:
            lock = self._locks[customer_id] = asyncio.Lock()
        return lock

    async def _create(self, target: TopicTarget, replaces: int | None = None) -> int:
        async with self._lock(target.customer_id):
            # Another post of this customer may have created (or re-created) it while we waited.
            now = await in_worker_thread(group_desk.target_of_customer)(customer_id=target.customer_id)
            if now is not None and now != replaces:
                return now
            created = await self.bot.create_forum_topic(self.chat_id, target.name)
            thread = created.message_thread_id
            kept = await in_worker_thread(group_desk.save_topic)(
                customer_id=target.customer_id, chat_id=self.chat_id, message_thread_id=thread,
                name=target.name, replaces=replaces)
            if kept != thread:  # another bot process was first: keep one topic per customer
                log.info("topic %s of customer %s duplicated another process's %s: deleted", thread,
                         target.customer_id, kept)
                await self.bot.delete_forum_topic(self.chat_id, thread)
            self._closed[kept] = False
            log.info("created topic %s %r for customer %s in the operators' group", kept, target.name,
                     target.customer_id)
            return kept

    async def _recreate(self, target: TopicTarget, gone: int) -> int:
        self._closed.pop(gone, None)
        return await self._create(target, replaces=gone)

    async def _set_open(self, thread: int, should_be_open: bool) -> None:
        """Open the topic while a person owns one of the customer's tickets, close it otherwise
        (``TOPIC_NOT_MODIFIED``: it was already; this process remembers what it knows)."""
        if self._closed.get(thread) is (not should_be_open):
            return
        try:
            if should_be_open:
                await self.bot.reopen_forum_topic(self.chat_id, thread)
            else:
                await self.bot.close_forum_topic(self.chat_id, thread)
        except TelegramBadRequest as exc:
            if NOT_MODIFIED not in exc.message:
                # A topic left open or closed is not worth failing the post for (a deleted one is
                # re-created by the post itself).
                log.warning("could not %s topic %s: %s", "reopen" if should_be_open else "close", thread,
                            exc.message)
                return
        self._closed[thread] = not should_be_open

    # -- answering operators in the group ------------------------------------------------------
    async def say(self, thread_id: int | None, text: str, *, reply_to: int | None = None) -> None:
        """A short answer of the bot in a topic (an operator not linked, a command that did
        nothing), within the group's send limit; never fails the handler."""
        try:
            async with self.limiter.slot(self.chat_id):
                await self.bot.send_message(self.chat_id, escape(text), message_thread_id=thread_id,
                                            reply_to_message_id=reply_to, allow_sending_without_reply=True)
        except Exception as exc:  # noqa: BLE001 (a hint lost is logged, never raised into the update)
            log.warning("could not answer in the operators' group (topic %s): %s", thread_id, exc)


def overdue_notifier(delivery: Delivery) -> Callable[[OverdueTicket], Awaitable[object]]:
    """``aftercare.OverdueWatch``'s notifier for the group: "⏰ waiting N min" in the ticket's topic
    (recorded, then sent by the delivery path like every post)."""

    async def notify(ticket: OverdueTicket) -> None:
        posted = await in_worker_thread(group_desk.post_overdue)(
            ticket_id=ticket.ticket_id, waited_minutes=ticket.waited_minutes, last_question=ticket.last_question)
        if posted is not None:
            delivery.wake()

    return notify
