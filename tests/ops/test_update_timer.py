"""Stage ``total``: an update's time from the dispatcher to the end of its handlers."""

from __future__ import annotations

import asyncio
import contextlib
from datetime import UTC, datetime

from aiogram import Bot, Dispatcher
from aiogram.types import Chat, Message, Update, User
from prometheus_client.parser import text_string_to_metric_families

from supportbot.config import SANDBOX_BOT_TOKEN
from supportbot.ops import metrics
from supportbot.ops.updates import UpdateTimer


def _total() -> tuple[float, float]:
    body = metrics.render(database=False)[0].decode()
    samples = {(s.name, s.labels.get("stage")): s.value
               for family in text_string_to_metric_families(body) for s in family.samples}
    return samples.get(("supportbot_stage_seconds_count", "total"), 0.0), \
        samples.get(("supportbot_stage_seconds_sum", "total"), 0.0)


async def test_a_handled_update_is_timed_even_when_its_handler_fails():
    dp = Dispatcher()
    dp.update.outer_middleware(UpdateTimer())

    @dp.message()
    async def slow(message: Message) -> None:
        await asyncio.sleep(0.05)
        if message.text == "boom":
            raise RuntimeError("the handler broke")

    bot = Bot(SANDBOX_BOT_TOKEN)
    user = User(id=1, is_bot=False, first_name="Olena")

    def update(n: int, text: str) -> Update:
        return Update(update_id=n, message=Message(message_id=n, date=datetime.now(UTC), text=text,
                                                   chat=Chat(id=1, type="private"), from_user=user))

    count, seconds = _total()
    await dp.feed_update(bot, update(1, "hello"))
    with contextlib.suppress(RuntimeError):
        await dp.feed_update(bot, update(2, "boom"))
    after_count, after_seconds = _total()
    assert after_count - count == 2
    assert after_seconds - seconds >= 0.1
    await bot.session.close()
