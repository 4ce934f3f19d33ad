"""A customer's Telegram profile is kept current without an UPDATE per message."""

import pytest

pytestmark = pytest.mark.django_db(transaction=True)


def test_customer_profile_updates_and_last_seen():
    from datetime import timedelta

    from django.utils import timezone

    from supportbot.support.models import TelegramUser
    from supportbot.support.services import CustomerInfo, upsert_customer

    user = upsert_customer(CustomerInfo(id=42, username="olena", language_code="uk"))
    seen = user.last_seen
    assert upsert_customer(CustomerInfo(id=42, username="olena", language_code="uk")).last_seen == seen
    TelegramUser.objects.filter(id=42).update(is_blocked=True, last_seen=timezone.now() - timedelta(hours=1))
    user = upsert_customer(CustomerInfo(id=42, username="olena_new", language_code="uk"))
    user.refresh_from_db()
    assert user.username == "olena_new" and user.is_blocked is False and user.last_seen > seen
