"""An LLM answer growing in one Telegram message.

The first visible text is sent at once; after that the message is edited at most
once per ``interval`` (Telegram allows about one message per second per chat,
and edits count), always with the newest text, so a fast model never queues
edits behind itself. A 429 from Telegram waits out its ``retry_after``. The
finished answer replaces the draft with the buttons added; an answer the chain
rejected after showing part of it is deleted.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from aiogram import Bot
from aiogram.exceptions import TelegramAPIError, TelegramBadRequest, TelegramRetryAfter
from aiogram.types import InlineKeyboardMarkup

from supportbot.bot.render import TELEGRAM_LIMIT, escape, split_text

log = logging.getLogger(__name__)

_CURSOR = " ▍"  # shows the answer is still being written
_MAX_RETRY_WAIT = 10.0


def labelled(label: str, text: str) -> str:
    """An automatic answer as the customer sees it: marked on its first line."""
    return f"{label}\n{text}"


class TelegramDraft:
    """:class:`~supportbot.llm.chain.AnswerStream` for one chat (one draft message at a time)."""

    def __init__(self, bot: Bot, chat_id: int, *, label: str, interval: float = 1.0,
                 reply_to: int | None = None) -> None:
        self.bot = bot
        self.chat_id = chat_id
        self.label = label
        self.interval = interval
        self.reply_to = reply_to
        self.message_id: int | None = None
        #: ``time.monotonic()`` when the first text became visible (for measurements).
        self.first_visible_at: float | None = None
        self.edits = 0
        self._latest = ""
        self._shown = ""
        self._last_push = float("-inf")
        self._wake = asyncio.Event()
        self._stop = asyncio.Event()
        self._task: asyncio.Task | None = None

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
    async def finish(self, text: str, reply_markup: InlineKeyboardMarkup | None) -> int:
        """Put the whole answer in place (split past 4096 characters, buttons on the last part)."""
        await self._halt()
        chunks = split_text(labelled(self.label, text))
        last_id = 0
        for n, chunk in enumerate(chunks):
            markup = reply_markup if n == len(chunks) - 1 else None
            if n == 0 and self.message_id is not None:
                if await self._edit(chunk, markup, wait_on_429=True):
                    last_id = self.message_id
                    continue
                with contextlib.suppress(TelegramAPIError):  # a stale draft must not stay behind
                    await self.bot.delete_message(self.chat_id, self.message_id)
            sent = await self.bot.send_message(
                self.chat_id, escape(chunk), reply_markup=markup,
                reply_to_message_id=self.reply_to if n == 0 else None,
            )
            last_id = sent.message_id
        return last_id

    async def _halt(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            self._stop.set()
            self._wake.set()
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
                await self._push(self._latest)

    async def _push(self, text: str) -> None:
        body = labelled(self.label, text)
        if len(body) + len(_CURSOR) > TELEGRAM_LIMIT:  # the draft shows the start; finish() splits
            body = body[: TELEGRAM_LIMIT - len(_CURSOR) - 1] + "…"
        body += _CURSOR
        try:
            if self.message_id is None:
                sent = await self.bot.send_message(self.chat_id, escape(body), reply_to_message_id=self.reply_to)
                self.message_id = sent.message_id
                self.first_visible_at = time.monotonic()
            else:
                await self._edit(body, None, wait_on_429=False)
        except TelegramRetryAfter as exc:
            log.info("Telegram asked to slow down (%s s) while streaming to %s", exc.retry_after, self.chat_id)
            self._last_push = time.monotonic() + min(float(exc.retry_after), _MAX_RETRY_WAIT) - self.interval
            self._wake.set()  # try again with whatever is newest then
            return
        except TelegramAPIError as exc:
            log.warning("streaming an answer to %s failed: %s", self.chat_id, exc)
        self._shown = text
        self._last_push = time.monotonic()

    async def _edit(self, text: str, markup: InlineKeyboardMarkup | None, *, wait_on_429: bool) -> bool:
        try:
            await self.bot.edit_message_text(text=escape(text), chat_id=self.chat_id,
                                             message_id=self.message_id, reply_markup=markup)
            self.edits += 1
            return True
        except TelegramBadRequest as exc:
            if "not modified" in str(exc).lower():
                return True
            log.warning("editing the answer in %s failed: %s", self.chat_id, exc)
            return False
        except TelegramRetryAfter as exc:
            if not wait_on_429:
                raise
            await asyncio.sleep(min(float(exc.retry_after), _MAX_RETRY_WAIT))
            return await self._edit(text, markup, wait_on_429=False)
