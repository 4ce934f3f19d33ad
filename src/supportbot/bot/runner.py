"""Assembles and runs the bot process: index, pipeline, conversation service, delivery, and the
intake of updates (polling here; webhook mode in ``bot/webhook.py`` reuses the same parts)."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from aiogram import Bot, Dispatcher
from aiogram.client.default import DefaultBotProperties
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from aiogram.enums import ParseMode
from aiogram.types import BotCommand

from supportbot.assembly import Process, prepare_index, process
from supportbot.background import in_worker_thread
from supportbot.bot.delivery import Delivery
from supportbot.bot.group_desk import GroupDesk, overdue_notifier
from supportbot.bot.handlers import errors, get_routers, group
from supportbot.bot.intake import ClaimMiddleware, ClaimPruner, UpdateIntake
from supportbot.bot.limits import SendLimiter, bot_id_of, build_limiter
from supportbot.bot.middlewares import CustomerContextMiddleware
from supportbot.conversation import ConversationService
from supportbot.ops.updates import UpdateTimer
from supportbot.pipeline import AnswerPipeline, IndexRefresher
from supportbot.speech.queue import TranscriptionQueue
from supportbot.support.aftercare import OverdueWatch
from supportbot.support.voice import AudioRetentionJob, AudioStore

log = logging.getLogger(__name__)


#: ``Response[T]`` for every Bot API method, kept alive for the process (see :func:`pin_response_types`).
_RESPONSE_TYPES: list[type] = []


def pin_response_types() -> int:
    """Build aiogram's ``Response[T]`` models once and keep them.

    aiogram parses every API reply with ``Response[method.__returning__]``;
    pydantic keeps parametrised generics only weakly, so after a garbage
    collection each call built the model again (~1.8 ms of CPU per Telegram call,
    8 % of the bot's time under load in ``bench/e2e_throughput.py``). Holding
    them makes that a dictionary lookup.
    """
    if not _RESPONSE_TYPES:
        import aiogram.methods as methods
        from aiogram.client.session.base import Response
        from aiogram.methods.base import TelegramMethod

        for name in methods.__all__:
            method = getattr(methods, name)
            if isinstance(method, type) and issubclass(method, TelegramMethod) and method is not TelegramMethod:
                _RESPONSE_TYPES.append(Response[method.__returning__])  # type: ignore[name-defined]  # built at run time
    return len(_RESPONSE_TYPES)


def build_bot(token: str, api_url: str) -> Bot:
    pin_response_types()
    session = AiohttpSession(api=TelegramAPIServer.from_base(api_url))
    return Bot(token=token, session=session, default=DefaultBotProperties(parse_mode=ParseMode.HTML))


def build_dispatcher(conversation: ConversationService, delivery: Delivery, *, default_language: str,
                     speech: TranscriptionQueue, audio_store: AudioStore,
                     operators_group: GroupDesk | None = None) -> Dispatcher:
    """Handlers receive the long-lived services by name (aiogram's workflow data).
    ``operators_group``: the operators' forum group (``OPERATOR_CHAT_ID``), whose messages its own
    router takes before the customers' routers see them."""
    dp = Dispatcher(conversation=conversation, delivery=delivery, speech=speech, audio_store=audio_store,
                    default_language=default_language, operators_group=operators_group)
    # Polling claims each update here; the webhook claims before it answers Telegram (intake.py).
    dp.update.outer_middleware(ClaimMiddleware())
    dp.update.outer_middleware(UpdateTimer())  # stage "total" of the metrics, for claimed updates
    context = CustomerContextMiddleware(default_language)
    dp.message.outer_middleware(context)
    dp.callback_query.outer_middleware(context)
    if operators_group is not None:
        dp.include_router(group.build_router(operators_group.chat_id))
    dp.include_routers(*get_routers())
    dp.include_router(errors.build_router())
    return dp


def handled_update_types() -> list[str]:
    """The update kinds the bot's routers handle (``allowed_updates`` for setWebhook/getUpdates)."""
    dp = Dispatcher()
    dp.include_routers(*get_routers())
    dp.include_router(errors.build_router())
    return dp.resolve_used_update_types()


class BotApp:
    """The bot process's long-lived parts, startable in a task (tests) or run forever."""

    def __init__(self, *, token: str, api_url: str, default_language: str = "en",
                 refresh_seconds: float = 1.0, pipeline: AnswerPipeline | None = None,
                 polling_timeout: int = 10, outbox_interval: float = 0.5,
                 speech: TranscriptionQueue | None = None, audio_store: AudioStore | None = None,
                 warm_up_speech: bool = False, warm_up_llm: bool = False,
                 delivery_backoff: tuple[float, ...] | None = None, parts: Process | None = None,
                 limiter: SendLimiter | None = None, operator_chat_id: int | None = None) -> None:
        """``parts``: the process's models and settings (default: ``assembly.process()``);
        the other arguments replace single parts (tests). ``limiter``: Telegram's send limits
        (default: ``TELEGRAM_*_PER_*`` settings, shared through Redis when configured).
        ``operator_chat_id``: the operators' forum group (default: ``OPERATOR_CHAT_ID``)."""
        parts = parts or process()
        self.pipeline = pipeline or parts.pipeline()
        self.bot = build_bot(token, api_url)
        # Voice: a worker pool per bot process; the model itself is shared process-wide.
        self.speech = speech or parts.speech_queue()
        self.audio_store = audio_store or parts.audio_store()
        self.warm_up_speech = warm_up_speech
        self.warm_up_llm = warm_up_llm
        desk = parts.cfg.desk
        self.conversation = ConversationService(self.pipeline, reopen_window=desk.reopen_window, hours=desk.hours())
        #: Reminds about tickets waiting too long for a person; the group desk adds its notifier.
        self.overdue = OverdueWatch(overdue_after=desk.overdue_after)
        self.limiter = limiter or build_limiter(parts.cfg.limits, bot_id=bot_id_of(token))
        group_chat = operator_chat_id if operator_chat_id is not None else parts.cfg.desk.operator_chat_id
        #: The operators' forum group desk (bot.group_desk), or None without OPERATOR_CHAT_ID.
        self.operators_group = GroupDesk(self.bot, group_chat, limiter=self.limiter) if group_chat else None
        self.delivery = Delivery(self.bot, default_language=default_language, interval=outbox_interval,
                                 backoff=delivery_backoff or parts.cfg.outbox.retry_seconds, limiter=self.limiter,
                                 desk=self.operators_group)
        if self.operators_group is not None:  # overdue reminders go into the ticket's topic too
            self.overdue.notifiers.append(overdue_notifier(self.delivery))
        self.dp = build_dispatcher(self.conversation, self.delivery, default_language=default_language,
                                   speech=self.speech, audio_store=self.audio_store,
                                   operators_group=self.operators_group)
        self.intake = UpdateIntake(self.dp, self.bot)
        self.refresh_seconds = refresh_seconds
        self.polling_timeout = polling_timeout
        self._tasks: list[asyncio.Task] = []

    async def start(self, *, polling: bool = True) -> None:
        """Start the process's parts; ``polling=False``: updates come from a webhook instead
        (``bot/webhook.py``), which hands them to :attr:`intake`."""
        await in_worker_thread(prepare_index)(self.pipeline)
        me = await self.bot.get_me()
        if polling:  # Telegram refuses getUpdates while a webhook is set
            await self.bot.delete_webhook(drop_pending_updates=False)
        with contextlib.suppress(Exception):  # cosmetic; a self-hosted API may lack it
            await self.bot.set_my_commands([
                BotCommand(command="help", description="How to use this bot"),
                BotCommand(command="operator", description="Talk to a person"),
            ])
        log.info("bot @%s started (%s); FAQ index: %d texts for %d entries", me.username,
                 "polling" if polling else "webhook", self.pipeline.index.size, self.pipeline.index.entry_count)
        self._tasks = [
            asyncio.create_task(IndexRefresher(self.pipeline.index, self.refresh_seconds).run(), name="faq-refresh"),
            asyncio.create_task(self.delivery.run(), name="delivery"),
            asyncio.create_task(AudioRetentionJob(self.audio_store).run(), name="audio-retention"),
            asyncio.create_task(ClaimPruner().run(), name="update-claim-pruner"),
            asyncio.create_task(self.overdue.run(), name="overdue-tickets"),
        ]
        if polling:
            self._tasks.append(asyncio.create_task(
                self.dp.start_polling(self.bot, handle_signals=False, close_bot_session=False,
                                      polling_timeout=self.polling_timeout),
                name="polling",
            ))
        if self.warm_up_speech:  # load the speech model now rather than on the first voice message
            self._tasks.append(asyncio.create_task(self.speech.warm_up(), name="speech-warm-up"))
        if self.warm_up_llm and self.pipeline.llm is not None and self.pipeline.llm.local is not None:
            # Assemble (first run) and load the local model now, not on the first question.
            self._tasks.append(asyncio.create_task(_warm_up_local_llm(self.pipeline.llm.local), name="llm-warm-up"))

    async def stop(self, *, drain_seconds: float = 30.0) -> None:
        """Stop taking updates, let those in flight finish (up to ``drain_seconds``), then stop."""
        with contextlib.suppress(RuntimeError):
            await self.dp.stop_polling()
        if await self.intake.drain(drain_seconds):
            log.warning("%d update(s) still running after %g s: cancelled", self.intake.in_flight, drain_seconds)
        await self.intake.cancel()
        for task in self._tasks:
            task.cancel()
        self.speech.close()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await self.bot.session.close()
        await self.limiter.close()

    async def run_forever(self) -> None:
        await self.start()
        try:
            await asyncio.gather(*self._tasks)
        finally:
            await self.stop()


async def _warm_up_local_llm(local) -> None:
    try:
        await local.warm_up()
    except Exception:
        log.exception("the local LLM failed to load; questions go on to the next step")
