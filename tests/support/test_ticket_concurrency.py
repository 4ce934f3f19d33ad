"""One active ticket per customer, even when a new customer's first messages arrive at once.

Runs on SQLite here and on PostgreSQL and MariaDB in ``tests/databases.py``:
the database enforces it with a partial unique index where it has them (SQLite,
PostgreSQL); MariaDB has none, and these tests check that it holds there as well.
"""

from __future__ import annotations

import threading

import pytest
from django.db import close_old_connections, connections

from supportbot.support import services
from supportbot.support.models import Message, Ticket


def _race(workers: int, customer_id: int) -> list[BaseException]:
    """``workers`` threads log a message of the same customer at the same moment."""
    barrier = threading.Barrier(workers)
    errors: list[BaseException] = []

    def first_message(n: int) -> None:
        try:
            barrier.wait(timeout=10)
            services.record_incoming(customer=services.CustomerInfo(id=customer_id, first_name="Olena"),
                                     kind=Message.Kind.TEXT, text=f"message {n}", telegram_message_id=n)
        except BaseException as exc:  # noqa: BLE001 (reported by the assertion below)
            errors.append(exc)
        finally:
            close_old_connections()
            connections.close_all()

    threads = [threading.Thread(target=first_message, args=(n,)) for n in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    return errors


def _one_ticket_with(customer_id: int, messages: int) -> None:
    active = Ticket.objects.filter(user_id=customer_id, status__in=Ticket.ACTIVE)
    assert active.count() == 1
    assert active.get().messages.filter(direction=Message.Direction.IN).count() == messages


@pytest.mark.django_db(transaction=True)
def test_simultaneous_first_messages_of_a_new_customer_share_one_ticket():
    assert not _race(6, 424242)
    _one_ticket_with(424242, 6)


@pytest.mark.django_db(transaction=True)
def test_a_returning_customer_writing_twice_at_once_gets_one_new_ticket():
    services.record_incoming(customer=services.CustomerInfo(id=515151, first_name="Olena"), kind=Message.Kind.TEXT,
                             text="hello", telegram_message_id=1)
    old = Ticket.objects.get(user_id=515151)
    services.close_ticket(ticket=old, reason="done")
    old.refresh_from_db()
    assert old.status == Ticket.Status.CLOSED
    for _ in range(5):  # a race is a matter of timing: try it a few times
        assert not _race(6, 515151)
        _one_ticket_with(515151, 6)
        Ticket.objects.filter(user_id=515151, status__in=Ticket.ACTIVE).update(status=Ticket.Status.CLOSED)
