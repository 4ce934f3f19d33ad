"""Telegram's send limits, kept before every call that puts something into a chat.

Telegram lets a bot send about 30 messages a second in all, one a second to one private
chat and 20 a minute to one group (edits count too); over that it answers 429 with
``retry_after``. The delivery path and the LLM draft take a *slot* before each such call
(:meth:`SendLimiter.slot`), so the bot stays under the limits instead of collecting 429s:

- **pacing, not one queue**: each limit is a "next free time" (GCRA with no burst: one send
  per ``1/rate`` seconds) for the bot and for each chat. A send first waits for its own chat
  (a FIFO lock per chat keeps a customer's messages in order), then books the bot's next free
  time and sleeps until then: it never waits behind another chat's messages, so one busy chat
  does not hold up the others, and waiting sends do not poll (one booking each);
- **429**: Telegram's ``retry_after`` pauses that chat (:meth:`SendLimiter.pause`), so the
  chat's other messages wait instead of hammering it; 429s on :data:`FLOOD_CHATS` chats
  within :data:`FLOOD_WINDOW` seconds mean a bot-wide flood wait: the whole bot pauses;
- **long waits are not held in memory**: a slot further away than ``max_wait`` raises
  :class:`SendDeferred`; the delivery path puts the message back to pending with that
  ``retry_at`` (like a 429, not a failed attempt), so a claimed row never outlives its lease;
- **several processes, one budget**: with a Redis URL the budgets live in Redis and are
  taken atomically by a Lua script with Redis's own clock (webhook workers and Celery
  workers of one bot share them). If Redis cannot be reached the limiter falls back to
  in-process budgets with a warning and tries Redis again after :data:`REDIS_RETRY_SECONDS`:
  delivery never stops for it.
"""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

from aiogram.exceptions import TelegramRetryAfter

from supportbot.config import SendLimitSettings
from supportbot.ops.metrics import SEND_LIMIT_WAIT_SECONDS, TELEGRAM_RATE_LIMITED

if TYPE_CHECKING:
    from redis.asyncio import Redis

log = logging.getLogger(__name__)

#: 429s on this many different chats ...
FLOOD_CHATS = 3
#: ... within this many seconds are a bot-wide flood wait: the whole bot pauses.
FLOOD_WINDOW = 1.0
#: After Redis failed, budgets are kept in-process for this long before Redis is tried again.
REDIS_RETRY_SECONDS = 5.0
#: Redis calls give up after this long (then: in-process budgets), so a send never hangs on it.
REDIS_TIMEOUT = 0.5

_BOT = "bot"  # the key of the bot-wide budget (chat keys are the chat ids)


class SendDeferred(Exception):
    """The next free slot for this chat is further away than the caller may wait."""

    def __init__(self, retry_after: float) -> None:
        super().__init__(f"send limit: next slot in {retry_after:.1f} s")
        self.retry_after = retry_after


def chat_interval(settings: SendLimitSettings, chat_id: int) -> float:
    """Seconds between two sends to one chat: groups and channels have negative ids."""
    return 60.0 / settings.group_per_minute if chat_id < 0 else 1.0 / settings.chat_per_second


class Turn(NamedTuple):
    """What the budgets answered: ``booked``: a send is booked ``wait`` seconds from now (go
    then); not booked: the chat (or a pause) allows none for ``wait`` seconds, ask again then."""

    booked: bool
    wait: float


class Budgets(Protocol):
    """Where the "next free time" of the bot and of each chat is kept (this process or Redis)."""

    async def take(self, chat_id: int, chat_every: float, bot_every: float) -> Turn:
        """When the chat may send now (not paused, its interval passed): book the bot's next
        free time for it. Otherwise book nothing and say how long the chat must wait."""

    async def pause(self, chat_id: int, seconds: float) -> bool:
        """Nothing to this chat for ``seconds`` (a 429); True when it made the whole bot pause."""


class LocalBudgets:
    """The budgets of one process (``make run``: one bot process)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._next: dict[int | str, float] = {}  # key -> the earliest time of its next send
        self._paused: dict[int | str, float] = {}  # key -> paused until (429)
        self._recent_429: dict[int, float] = {}  # chat -> when its last 429 came
        self._takes = 0

    async def take(self, chat_id: int, chat_every: float, bot_every: float) -> Turn:
        return self.take_now(chat_id, chat_every, bot_every)

    def take_now(self, chat_id: int, chat_every: float, bot_every: float) -> Turn:
        now = self.clock()
        wait = max(self._next.get(chat_id, now), self._paused.get(chat_id, now), self._paused.get(_BOT, now)) - now
        if wait > 0:
            return Turn(False, wait)
        at = max(now, self._next.get(_BOT, now))
        self._next[_BOT] = at + bot_every
        self._next[chat_id] = at + chat_every
        self._takes += 1
        if self._takes % 1000 == 0:  # forget chats that could send again anyway
            self._forget_before(now)
        return Turn(True, at - now)

    async def pause(self, chat_id: int, seconds: float) -> bool:
        return self.pause_now(chat_id, seconds)

    def pause_now(self, chat_id: int, seconds: float) -> bool:
        now = self.clock()
        until = now + seconds
        self._paused[chat_id] = max(self._paused.get(chat_id, until), until)
        self._recent_429[chat_id] = now
        for chat, at in list(self._recent_429.items()):
            if at < now - FLOOD_WINDOW:
                del self._recent_429[chat]
        if len(self._recent_429) < FLOOD_CHATS:
            return False
        self._paused[_BOT] = max(self._paused.get(_BOT, until), until)
        return True

    def _forget_before(self, now: float) -> None:
        for table in (self._next, self._paused):
            for key in [k for k, t in table.items() if t <= now]:
                del table[key]


# KEYS: the bot's next free time, the chat's, the bot's pause, the chat's pause (ms, Redis clock).
# ARGV: ms between two sends to the chat, ms between two sends of the bot.
# Returns {1, ms}: booked, go in ms; {0, ms}: the chat must wait ms (ms as a string: Lua numbers
# would be truncated to integers).
_TAKE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
local wait = 0
for i = 2, 4 do
  local v = tonumber(redis.call('GET', KEYS[i]) or '0')
  if v - now > wait then wait = v - now end
end
if wait > 0 then return {0, tostring(wait)} end
local chat_every, bot_every = tonumber(ARGV[1]), tonumber(ARGV[2])
local at = math.max(now, tonumber(redis.call('GET', KEYS[1]) or '0'))
redis.call('SET', KEYS[1], tostring(at + bot_every), 'PX', math.ceil(at + bot_every - now) + 1000)
redis.call('SET', KEYS[2], tostring(at + chat_every), 'PX', math.ceil(at + chat_every - now) + 1000)
return {1, tostring(at - now)}
"""

# KEYS: the chat's pause, the bot's pause, the recent 429s (a sorted set of chat ids by time).
# ARGV: the pause in ms, the chat id, FLOOD_WINDOW in ms, FLOOD_CHATS.
# Returns 1 when the whole bot was paused.
_PAUSE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
local ms = tonumber(ARGV[1])
local untl = now + ms
local function extend(key)
  local cur = tonumber(redis.call('GET', key) or '0')
  if untl > cur then redis.call('SET', key, tostring(untl), 'PX', math.ceil(ms) + 1000) end
end
extend(KEYS[1])
redis.call('ZADD', KEYS[3], now, ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now - tonumber(ARGV[3]))
redis.call('PEXPIRE', KEYS[3], math.ceil(tonumber(ARGV[3])) + 1000)
if redis.call('ZCARD', KEYS[3]) >= tonumber(ARGV[4]) then
  extend(KEYS[2])
  return 1
end
return 0
"""


class RedisBudgets:
    """Budgets shared by every process of one bot through Redis; in-process while Redis is down.

    Keys: ``supportbot:limits:{<bot id>}:...`` (the braces keep one bot's keys in one
    Redis Cluster slot, as a script needs), each expiring soon after it stops mattering.
    """

    def __init__(self, url: str, *, bot_id: int | str, clock: Callable[[], float] = time.monotonic) -> None:
        self.url = url
        self.prefix = f"supportbot:limits:{{{bot_id}}}:"
        self.clock = clock
        self.local = LocalBudgets(clock)
        self._down_until = float("-inf")
        # redis.asyncio connections belong to the event loop that opened them.
        self._clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Redis] = weakref.WeakKeyDictionary()

    def _client(self) -> Redis:
        from redis.asyncio import Redis

        loop = asyncio.get_running_loop()
        client = self._clients.get(loop)
        if client is None:
            client = Redis.from_url(self.url, socket_timeout=REDIS_TIMEOUT, socket_connect_timeout=REDIS_TIMEOUT,
                                    retry_on_timeout=False)
            self._clients[loop] = client
        return client

    def _keys(self, chat_id: int) -> tuple[str, str, str, str]:
        p = self.prefix
        return f"{p}next:bot", f"{p}next:{chat_id}", f"{p}pause:bot", f"{p}pause:{chat_id}"

    async def take(self, chat_id: int, chat_every: float, bot_every: float) -> Turn:
        keys = self._keys(chat_id)
        result = await self._call(_TAKE, list(keys), [repr(chat_every * 1000), repr(bot_every * 1000)])
        if result is None:
            return self.local.take_now(chat_id, chat_every, bot_every)
        booked, wait_ms = result
        return Turn(int(booked) == 1, max(0.0, float(wait_ms) / 1000))

    async def pause(self, chat_id: int, seconds: float) -> bool:
        flood_here = self.local.pause_now(chat_id, seconds)  # kept here too, in case Redis goes away
        _, _, bot_pause, chat_pause = self._keys(chat_id)
        result = await self._call(_PAUSE, [chat_pause, bot_pause, f"{self.prefix}recent429"],
                                  [repr(seconds * 1000), str(chat_id), repr(FLOOD_WINDOW * 1000), str(FLOOD_CHATS)])
        return flood_here if result is None else int(result) == 1

    async def close(self) -> None:
        for client in list(self._clients.values()):
            await client.aclose()
        self._clients.clear()

    async def _call(self, script: str, keys: list[str], args: list[str]) -> Any:
        """The script's answer, or None while Redis is unreachable (the caller uses its own budgets)."""
        from redis.exceptions import NoScriptError, RedisError

        if self.clock() < self._down_until:
            return None
        client = self._client()
        try:
            try:
                return await client.evalsha(_sha(script), len(keys), *keys, *args)
            except NoScriptError:
                return await client.eval(script, len(keys), *keys, *args)
        except (RedisError, OSError) as exc:
            self._down_until = self.clock() + REDIS_RETRY_SECONDS
            log.warning("send limits: Redis unreachable (%s); keeping this process's own limits for %g s",
                        type(exc).__name__, REDIS_RETRY_SECONDS)
            return None


def _sha(script: str) -> str:
    import hashlib

    return hashlib.sha1(script.encode()).hexdigest()  # Redis names scripts by their SHA-1


class SendLimiter:
    """Slots for sends to Telegram under its limits (see the module's docstring).

    ``budgets``: where the budgets are kept (default: this process); ``clock`` and ``sleep``
    are replaceable so that tests control time.
    """

    def __init__(self, settings: SendLimitSettings | None = None, *, budgets: Budgets | None = None,
                 clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep) -> None:
        self.settings = settings or SendLimitSettings()
        self.clock = clock
        self.sleep = sleep
        self.budgets: Budgets = budgets if budgets is not None else LocalBudgets(clock)
        self._locks: dict[int, asyncio.Lock] = {}
        self._bot_paused_until = float("-inf")  # a flood wait this process saw (for sends already booked)
        self._users: dict[int, int] = {}
        #: Seconds waited for slots and 429s seen, for the metrics and the benchmarks.
        self.waited = 0.0
        self.rate_limited = 0

    @asynccontextmanager
    async def slot(self, chat_id: int, *, max_wait: float | None = None) -> AsyncIterator[float]:
        """Wait for a send to ``chat_id``, in order with the chat's other sends; yields the
        seconds waited. A 429 raised inside pauses the chat (or the bot) and is re-raised;
        :class:`SendDeferred` when the slot is further away than ``max_wait`` (default: the
        settings' ``max_wait``)."""
        started = self.clock()
        lock = self._locks.get(chat_id)
        if lock is None:
            lock = self._locks[chat_id] = asyncio.Lock()
        self._users[chat_id] = self._users.get(chat_id, 0) + 1
        try:
            async with lock:
                waited = await self._acquire(chat_id, self.settings.max_wait if max_wait is None else max_wait,
                                             started)
                try:
                    yield waited
                except TelegramRetryAfter as exc:
                    await self.pause(chat_id, float(exc.retry_after))
                    raise
        finally:
            self._users[chat_id] -= 1
            if not self._users[chat_id]:
                del self._users[chat_id]
                del self._locks[chat_id]

    async def close(self) -> None:
        """Close the connections to Redis, if any."""
        if isinstance(self.budgets, RedisBudgets):
            await self.budgets.close()

    async def pause(self, chat_id: int, seconds: float) -> None:
        """Telegram answered 429 ``retry_after`` = ``seconds`` for this chat."""
        self.rate_limited += 1
        bot_wide = await self.budgets.pause(chat_id, seconds)
        TELEGRAM_RATE_LIMITED.labels("bot" if bot_wide else "chat").inc()
        if bot_wide:
            self._bot_paused_until = max(self._bot_paused_until, self.clock() + seconds)
            log.warning("Telegram answered 429 for %d chats within %g s: the whole bot waits %g s",
                        FLOOD_CHATS, FLOOD_WINDOW, seconds)

    async def _acquire(self, chat_id: int, max_wait: float, started: float) -> float:
        """Wait until the budgets give this chat a send; ``started``: when the caller asked
        (its wait in the chat's queue counts towards ``max_wait`` too)."""
        chat_every = chat_interval(self.settings, chat_id)
        bot_every = 1.0 / self.settings.bot_per_second
        while True:
            booked, wait = await self.budgets.take(chat_id, chat_every, bot_every)
            if wait > 0 and self.clock() - started + wait > max_wait:
                raise SendDeferred(wait)  # (a booked time is left unused: the bot's budget loses one send)
            if wait > 0:
                await self.sleep(wait)
            if booked:
                # Booked before a flood wait began (429s on several chats meanwhile): wait it out too.
                if (pause := self._bot_paused_until - self.clock()) > 0:
                    await self.sleep(pause)
                waited = max(0.0, self.clock() - started)
                self.waited += waited
                SEND_LIMIT_WAIT_SECONDS.observe(waited)
                return waited


def build_limiter(settings: SendLimitSettings, *, bot_id: int | str) -> SendLimiter:
    """The limiter the settings ask for: shared through Redis when a URL is set, else in-process."""
    if settings.redis_url:
        try:
            import redis.asyncio  # noqa: F401 - the production extra
        except ImportError:
            log.warning("send limits: a Redis URL is set but the redis package is missing "
                        "(pip install 'supportbot[production]'); keeping this process's own limits")
        else:
            return SendLimiter(settings, budgets=RedisBudgets(settings.redis_url, bot_id=bot_id))
    return SendLimiter(settings)


def bot_id_of(token: str) -> str:
    """The bot's numeric id (before the colon of its token): not secret, it names the budgets."""
    return token.partition(":")[0]
