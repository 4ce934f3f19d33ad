"""An LLM answer growing in one Telegram message.

The first visible text is sent at once; after that the message is edited at most
once per ``interval`` (Telegram allows about one message per second per chat,
and edits count), always with the newest text, so a fast model never queues
edits behind itself. A 429 from Telegram waits out its ``retry_after``. The
finished answer is recorded and sent by the delivery path, which puts it in place
of the draft with the buttons added (:meth:`TelegramDraft.replace`); an answer the
chain rejected after showing part of it is deleted.

Each send and edit takes a slot from the delivery path's limiter (``bot.limits``) first:
edits count towards Telegram's one message a second per chat. A draft waiting for its
slot is simply stopped when the answer is finished (nothing was sent, nothing is lost).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from aiogram import Bot
from aiogram.exceptions import TelegramAPIError, TelegramBadRequest, TelegramRetryAfter
from aiogram.types import InlineKeyboardMarkup

from supportbot.bot.limits import SendDeferred, SendLimiter
from supportbot.bot.render import TELEGRAM_LIMIT, escape

log = logging.getLogger(__name__)

_CURSOR = " ▍"  # shows the answer is still being written
_MAX_RETRY_WAIT = 10.0


def labelled(label: str, text: str) -> str:
    """An automatic answer as the customer sees it: marked on its first line."""
    return f"{label}\n{text}"


class TelegramDraft:
    """:class:`~supportbot.llm.chain.AnswerStream` for one chat (one draft message at a time)."""

    def __init__(self, bot: Bot, chat_id: int, *, label: str, interval: float = 1.0,
                 reply_to: int | None = None, limiter: SendLimiter | None = None) -> None:
        """``limiter``: the delivery path's (Telegram's send limits); None: no limits (tests)."""
        self.bot = bot
        self.limiter = limiter
        self.chat_id = chat_id
        self.label = label
        self.interval = interval
        self.reply_to = reply_to
        self.message_id: int | None = None
        #: ``time.monotonic()`` when the first text became visible (for measurements).
        self.first_visible_at: float | None = None
        self.edits = 0
        #: The answer replaced the draft (``replace``); nothing is left to take back.
        self.finished = False
        self._latest = ""
        self._shown = ""
        self._last_push = float("-inf")
        self._wake = asyncio.Event()
        self._stop = asyncio.Event()
        self._task: asyncio.Task | None = None
        self._in_flight = False  # a request to Telegram is on its way: let it finish

    # -- AnswerStream -----------------------------------------------------------------------
    async def show(self, text: str) -> None:
        self._latest = text
        if self._task is None:
            self._stop.clear()
            self._task = asyncio.create_task(self._run(), name=f"draft-{self.chat_id}")
        self._wake.set()

    async def discard(self) -> None:
        await self._halt()
        if self.message_id is not None:
            with contextlib.suppress(TelegramAPIError):
                await self.bot.delete_message(self.chat_id, self.message_id)
        self.message_id = None
        self._latest = self._shown = ""

    # -- the end ----------------------------------------------------------------------------
    async def replace(self, text: str, reply_markup: InlineKeyboardMarkup | None) -> int:
        """Put the finished answer's first part (labelled) in place of the draft; return its id.

        Called by the delivery path (``bot.delivery``) when it sends the recorded LLM answer,
        so the answer is confirmed like every other message. A draft that cannot be edited
        is deleted and the part sent anew; Telegram's errors (429, 5xx...) reach the delivery
        path, which retries the message and discards the draft.
        """
        await self._halt()
        assert self.message_id is not None
        try:
            async with self._slot():
                await self.bot.edit_message_text(text=escape(text), chat_id=self.chat_id,
                                                 message_id=self.message_id, reply_markup=reply_markup)
            self.edits += 1
            self.finished = True
            return self.message_id
        except TelegramBadRequest as exc:
            if "not modified" in str(exc).lower():
                self.finished = True
                return self.message_id
            log.warning("editing the answer in %s failed: %s", self.chat_id, exc)
        with contextlib.suppress(TelegramAPIError):  # a stale draft must not stay behind
            await self.bot.delete_message(self.chat_id, self.message_id)
        self.message_id = None
        async with self._slot():
            sent = await self.bot.send_message(self.chat_id, escape(text), reply_markup=reply_markup,
                                               reply_to_message_id=self.reply_to)
        self.finished = True
        return sent.message_id

    async def _halt(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            self._stop.set()
            self._wake.set()
            if not self._in_flight:  # waiting (for new text, the throttle or a send slot): stop now
                task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    # -- the updater task ---------------------------------------------------------------------
    async def _run(self) -> None:
        while not self._stop.is_set():
            await self._wake.wait()
            self._wake.clear()
            wait = self._last_push + self.interval - time.monotonic()
            if wait > 0:  # throttle: sleep, unless the answer is finished meanwhile
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), wait)
            if self._stop.is_set():
                return
            if self._latest != self._shown:
                await self._push()

    def _slot(self) -> contextlib.AbstractAsyncContextManager[object]:
        return self.limiter.slot(self.chat_id) if self.limiter is not None else contextlib.nullcontext()

    async def _push(self) -> None:
        text = self._latest
        try:
            async with self._slot():
                text = self._latest  # the newest text when the slot came
                body = labelled(self.label, text)
                if len(body) + len(_CURSOR) > TELEGRAM_LIMIT:  # the draft shows the start; finish() splits
                    body = body[: TELEGRAM_LIMIT - len(_CURSOR) - 1] + "…"
                body += _CURSOR
                self._in_flight = True
                try:
                    if self.message_id is None:
                        sent = await self.bot.send_message(self.chat_id, escape(body),
                                                           reply_to_message_id=self.reply_to)
                        self.message_id = sent.message_id
                        self.first_visible_at = time.monotonic()
                    else:
                        await self._edit(body)
                finally:
                    self._in_flight = False
        except (TelegramRetryAfter, SendDeferred) as exc:
            log.info("Telegram's limits: waiting %s s while streaming to %s", exc.retry_after, self.chat_id)
            self._last_push = time.monotonic() + min(float(exc.retry_after), _MAX_RETRY_WAIT) - self.interval
            self._wake.set()  # try again with whatever is newest then
            return
        except TelegramAPIError as exc:
            log.warning("streaming an answer to %s failed: %s", self.chat_id, exc)
        self._shown = text
        self._last_push = time.monotonic()

    async def _edit(self, text: str) -> None:
        try:
            await self.bot.edit_message_text(text=escape(text), chat_id=self.chat_id, message_id=self.message_id)
            self.edits += 1
        except TelegramBadRequest as exc:
            if "not modified" not in str(exc).lower():
                log.warning("editing the answer in %s failed: %s", self.chat_id, exc)
