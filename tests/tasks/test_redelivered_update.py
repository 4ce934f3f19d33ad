"""A task delivered again after its worker died: answered once (``services.handled_before``)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from supportbot.support import services
from supportbot.support.models import Message

pytestmark = pytest.mark.django_db

BOT, CUSTOMER, TG_MESSAGE = 1000000001, 7201, 5


def _log_question(update_id: int = 900) -> services.Incoming:
    assert services.claim_update(bot_id=BOT, update_id=update_id)
    return services.record_incoming(customer=services.CustomerInfo(id=CUSTOMER), kind="text",
                                    text="Where is my parcel?", telegram_message_id=TG_MESSAGE)


def _handled(update_id: int = 900) -> bool:
    return services.handled_before(customer_id=CUSTOMER, telegram_message_id=TG_MESSAGE, bot_id=BOT,
                                   update_id=update_id, since=timezone.now() - timedelta(hours=1))


def test_a_first_run_finds_nothing():
    assert services.claim_update(bot_id=BOT, update_id=900)
    assert not _handled()


def test_a_reply_recorded_by_the_first_run_means_not_again():
    incoming = _log_question()
    services.record_outgoing(ticket_id=incoming.ticket_id, text="Track it here.", source="faq",
                             in_reply_to_id=incoming.message_id)
    assert _handled()
    assert Message.objects.filter(direction="in").count() == 1


def test_a_question_logged_but_not_answered_is_handled_again_and_logged_once():
    _log_question()
    assert not _handled()
    assert not Message.objects.filter(direction="in").exists()  # the new run logs it again, once


def test_an_older_message_with_the_same_id_is_not_this_update():
    """The sandbox numbers a chat's messages from 1 again after a restart."""
    old = _log_question(update_id=800)
    services.record_outgoing(ticket_id=old.ticket_id, text="Old answer.", source="faq",
                             in_reply_to_id=old.message_id)
    Message.objects.filter(pk=old.message_id).update(created_at=timezone.now() - timedelta(minutes=10))
    assert services.claim_update(bot_id=BOT, update_id=900)  # the new update, same message id
    assert not _handled(update_id=900)
    assert Message.objects.filter(pk=old.message_id).exists()  # the old log is left alone
