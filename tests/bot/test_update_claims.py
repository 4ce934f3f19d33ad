"""Each Telegram update is claimed once, by an INSERT under a unique constraint.

Runs on SQLite here and on PostgreSQL and MariaDB through ``tests/databases.py``: two
threads claiming the same update at the same moment, exactly one wins; out of order is
fine (no "highest id seen"); two bots on one database never collide; claims older than
Telegram's 24 h are pruned in bounded batches. Polling claims through the same table:
an update someone else claimed is not handled again.
"""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from supportbot.bot.intake import ClaimPruner
from supportbot.support import services
from supportbot.support.models import Message, UpdateClaim

from ..conftest import wait_until
from .claims import claim_table_missing

BOT, OTHER_BOT = 1000000001, 2000000002


@pytest.mark.django_db
def test_an_update_is_claimed_once():
    assert services.claim_update(bot_id=BOT, update_id=7) is True
    assert services.claim_update(bot_id=BOT, update_id=7) is False
    assert services.claim_update(bot_id=BOT, update_id=7) is False
    assert UpdateClaim.objects.filter(bot_id=BOT, update_id=7).count() == 1


@pytest.mark.django_db
def test_out_of_order_updates_are_each_claimed():
    """Not "the highest id seen": update 5 arriving after update 10 is still new."""
    assert services.claim_update(bot_id=BOT, update_id=10) is True
    assert services.claim_update(bot_id=BOT, update_id=5) is True
    assert services.claim_update(bot_id=BOT, update_id=11) is True
    assert services.claim_update(bot_id=BOT, update_id=5) is False


@pytest.mark.django_db
def test_two_bots_on_one_database_do_not_collide():
    assert services.claim_update(bot_id=BOT, update_id=1) is True
    assert services.claim_update(bot_id=OTHER_BOT, update_id=1) is True
    assert services.claim_update(bot_id=OTHER_BOT, update_id=1) is False


@pytest.mark.django_db(transaction=True)
def test_a_lost_claim_leaves_the_callers_transaction_usable():
    """The losing INSERT is in its own savepoint: PostgreSQL would otherwise abort the caller's transaction."""
    from django.db import transaction

    services.claim_update(bot_id=BOT, update_id=3)
    with transaction.atomic():
        assert services.claim_update(bot_id=BOT, update_id=3) is False
        assert services.claim_update(bot_id=BOT, update_id=4) is True
    assert set(UpdateClaim.objects.values_list("update_id", flat=True)) == {3, 4}


@pytest.mark.django_db(transaction=True)
def test_concurrent_claimers_of_one_update_exactly_one_wins():
    """Real threads, each with its own database connection, released at the same moment."""
    claimers, rounds = 4, 15
    results: dict[int, list[bool]] = {update_id: [] for update_id in range(rounds)}
    errors: list[BaseException] = []
    barriers = [threading.Barrier(claimers) for _ in range(rounds)]
    lock = threading.Lock()

    def claimer() -> None:
        try:
            for update_id in range(rounds):
                barriers[update_id].wait(timeout=30)
                won = services.claim_update(bot_id=BOT, update_id=update_id)
                with lock:
                    results[update_id].append(won)
        except BaseException as exc:  # noqa: BLE001 - reported by the test below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=claimer) for _ in range(claimers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors, errors
    assert all(won.count(True) == 1 and len(won) == claimers for won in results.values()), results
    assert UpdateClaim.objects.count() == rounds


@pytest.mark.django_db
def test_claims_older_than_a_day_are_pruned_in_bounded_batches():
    now = timezone.now()
    for update_id in range(5):
        UpdateClaim.objects.create(bot_id=BOT, update_id=update_id, claimed_at=now - timedelta(hours=25))
    UpdateClaim.objects.create(bot_id=BOT, update_id=100, claimed_at=now - timedelta(hours=23))

    assert services.prune_update_claims(now=now, batch=2) == 2
    assert UpdateClaim.objects.count() == 4
    assert services.prune_update_claims(now=now, batch=2) == 2
    assert services.prune_update_claims(now=now, batch=2) == 1
    assert services.prune_update_claims(now=now, batch=2) == 0
    assert list(UpdateClaim.objects.values_list("update_id", flat=True)) == [100]


@pytest.mark.django_db(transaction=True)
async def test_the_pruner_job_empties_a_backlog_batch_by_batch():
    old = timezone.now() - timedelta(hours=30)
    await UpdateClaim.objects.abulk_create(
        [UpdateClaim(bot_id=BOT, update_id=i, claimed_at=old) for i in range(7)]
        + [UpdateClaim(bot_id=BOT, update_id=1000)])
    assert await ClaimPruner(batch=3, pause=0).prune_once() == 7
    assert [c.update_id async for c in UpdateClaim.objects.all()] == [1000]


# -- polling claims through the same table ---------------------------------------------------
@pytest.fixture
async def polling_bot(fake, sample_faq, sandbox):
    """The real bot polling the sandbox; the FAQ by the bag-of-words fake (fast)."""
    from supportbot.assembly import build_pipeline
    from supportbot.bot.runner import BotApp
    from supportbot.config import SANDBOX_BOT_TOKEN

    app = BotApp(token=SANDBOX_BOT_TOKEN, api_url=sandbox.url, default_language="en", polling_timeout=1,
                 outbox_interval=0.2, pipeline=build_pipeline(fake))
    await app.start()
    try:
        yield app
    finally:
        await app.stop()


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
async def test_polling_claims_each_update_and_skips_one_claimed_elsewhere(polling_bot, sandbox, customer_api):
    user = 7301
    bot_id = polling_bot.bot.id
    first = await customer_api.send_text(user, "/help")
    await customer_api.wait_for_bot_message(user, after=first["message"]["message_id"])
    assert await UpdateClaim.objects.filter(bot_id=bot_id, update_id=first["update_id"]).aexists()

    # Another process took the next update (say a webhook worker before a switch to polling).
    taken = sandbox.state._next_update_id
    await UpdateClaim.objects.acreate(bot_id=bot_id, update_id=taken)
    skipped = await customer_api.send_text(user, "How much does shipping cost?")
    assert skipped["update_id"] == taken
    third = await customer_api.send_text(user, "How can I track my order?")
    await customer_api.wait_for_bot_message(user, after=third["message"]["message_id"])
    await wait_until(lambda: Message.objects.filter(direction="in", text="How can I track my order?").exists())
    assert not await Message.objects.filter(text="How much does shipping cost?").aexists()
    bot_texts = [m["plain_text"] for m in await customer_api.messages(user) if m["from"] == "bot"]
    assert len(bot_texts) == 2  # /help's answer and the tracking answer; nothing for the skipped one


@pytest.mark.django_db(transaction=True)
async def test_polling_middleware_retries_a_failing_claim_store_then_gives_up_or_goes_on():
    """The claim middleware on a real dispatcher: the claim table gone, it tries again and then
    raises (the update is not handled); once the table is back, the update is handled once."""
    from aiogram import Bot, Dispatcher
    from aiogram.types import Update
    from django.db import DatabaseError

    from supportbot.bot.intake import ClaimMiddleware
    from supportbot.config import SANDBOX_BOT_TOKEN

    handled: list[int] = []
    dp = Dispatcher()
    dp.update.outer_middleware(ClaimMiddleware(retries=(0.05, 0.05)))

    @dp.message()
    async def record(message) -> None:
        handled.append(message.message_id)

    bot = Bot(SANDBOX_BOT_TOKEN)
    update = Update.model_validate({"update_id": 77, "message": {
        "message_id": 5, "date": 0, "text": "hi", "chat": {"id": 1, "type": "private"}}}, context={"bot": bot})
    async with claim_table_missing():
        with pytest.raises(DatabaseError):
            await dp.feed_update(bot, update)
    assert handled == []
    await dp.feed_update(bot, update)
    await dp.feed_update(bot, update)  # the same update again: skipped
    assert handled == [5]
    await bot.session.close()
