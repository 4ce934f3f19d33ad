"""What the operators' group desk records for the topic (``support.group_desk``), without a bot:
off without ``OPERATOR_CHAT_ID``; the hand-over's digest (voice transcripts, other kinds); the
topic's name; status notices only for tickets the group has seen; the overdue reminder; an
operator's message in a topic mapped, refused or done once; the admin of operator accounts."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.utils import timezone

from supportbot.support import aftercare, group_desk, services
from supportbot.support.group_desk import TopicOutcome
from supportbot.support.models import ForumTopic, Message, OperatorAccount, TelegramUser, Ticket

from .test_group_desk import GROUP, use_group_desk

pytestmark = pytest.mark.django_db

CUSTOMER = 6201


def _desk_rows(ticket: Ticket) -> list[str]:
    return list(Message.objects.filter(ticket=ticket, direction=Message.Direction.DESK)
                .order_by("id").values_list("text", flat=True))


def _customer(**fields) -> TelegramUser:
    defaults = {"first_name": "Olena", "last_name": "Petrenko", "username": "olena_p", "language_code": "uk"}
    return TelegramUser.objects.create(id=CUSTOMER, **{**defaults, **fields})


def _incoming(ticket: Ticket, text: str, kind: str = Message.Kind.TEXT) -> Message:
    return Message.objects.create(ticket=ticket, direction=Message.Direction.IN, kind=kind, text=text,
                                  source=Message.Source.USER)


def _staff(username: str = "anna", **fields):
    return get_user_model().objects.create_user(username, password="x-123456-long", first_name="Anna",
                                                **{"is_staff": True, **fields})


def test_nothing_is_recorded_without_an_operator_chat():
    ticket = Ticket.objects.create(user=_customer())
    _incoming(ticket, "Where is my parcel?")
    services.hand_over(ticket_id=ticket.pk, actor="bot", reason="no answer")
    _incoming(ticket, "Hello?")
    services.close_ticket(ticket=ticket)
    assert not Message.objects.filter(direction=Message.Direction.DESK).exists()


def test_the_hand_over_posts_the_conversation_with_transcripts_and_later_messages(settings):
    use_group_desk(settings)
    ticket = Ticket.objects.create(user=_customer())
    _incoming(ticket, "Where is my parcel?")
    services.record_outgoing(ticket_id=ticket.pk, text="Track it on the site.", source=Message.Source.FAQ)
    services.record_outgoing(ticket_id=ticket.pk, text="(a notice)", source=Message.Source.SYSTEM)
    _incoming(ticket, "it says delivered but nothing came", kind=Message.Kind.VOICE)
    services.hand_over(ticket_id=ticket.pk, actor="customer", reason="answer marked not helpful")
    _incoming(ticket, "👍", kind=Message.Kind.STICKER)
    _incoming(ticket, "", kind=Message.Kind.VOICE)  # a voice message that could not be transcribed

    handed, sticker, voice = _desk_rows(ticket)
    assert handed.startswith(f"🙋 Ticket #{ticket.pk} handed over (answer marked not helpful). "
                             "Olena Petrenko @olena_p, language uk.")
    assert handed.endswith("\n\n👤 Where is my parcel?\n🤖 FAQ: Track it on the site.\n"
                           "👤 🎤 it says delivered but nothing came")
    assert "(a notice)" not in handed  # notices to the customer are left out
    assert sticker == "👤 [sticker] 👍"
    assert voice == "👤 🎤 (a voice message that could not be transcribed)"
    row = Message.objects.filter(direction=Message.Direction.DESK).first()
    assert row is not None and row.chat_id == GROUP and row.message_thread_id is None  # no topic yet
    assert row.delivery_status == Message.Delivery.PENDING


def test_posts_go_to_the_known_topic_and_status_notices_only_for_tickets_the_group_saw(settings):
    use_group_desk(settings)
    anna = _staff()
    customer = _customer()
    ForumTopic.objects.create(customer=customer, chat_id=GROUP, message_thread_id=77, name="Olena")
    # A ticket the bot answered and closed: the group never hears of it.
    quiet = Ticket.objects.create(user=customer)
    services.close_ticket(ticket=quiet, operator=anna)
    assert _desk_rows(quiet) == []

    ticket = Ticket.objects.create(user=customer)
    services.hand_over(ticket_id=ticket.pk, actor="bot", reason="no answer")
    services.take_ticket(ticket_id=ticket.pk, operator=anna)
    services.release_ticket(ticket_id=ticket.pk, operator=anna)
    services.take_ticket(ticket_id=ticket.pk, operator=anna)
    services.do_operator_reply(ticket=ticket, operator=anna, text="Hello from the web")
    services.resolve_ticket(ticket=ticket, operator=anna)
    rows = _desk_rows(ticket)
    assert rows[1:] == [f"👤 Ticket #{ticket.pk} taken by Anna.",
                        f"👐 Ticket #{ticket.pk} released by Anna: back in the queue.",
                        f"👤 Ticket #{ticket.pk} taken by Anna.", "💬 Anna (web): Hello from the web",
                        f"✅ Ticket #{ticket.pk} resolved by Anna. The customer is asked to rate the help."]
    assert set(Message.objects.filter(direction=Message.Direction.DESK).values_list("message_thread_id", flat=True)) \
        == {77}


def test_topic_names_fit_telegrams_128_characters_and_keep_the_ticket_id():
    customer = _customer(first_name="A" * 100, last_name="B" * 100, username="long_name")
    ticket = Ticket.objects.create(user=customer)
    name = group_desk.topic_name(ticket)
    assert len(name) == 128 and name.endswith(f"… · #{ticket.pk}")
    nameless = TelegramUser.objects.create(id=CUSTOMER + 1, first_name="", username="")
    assert group_desk.topic_name(Ticket.objects.create(user=nameless)).startswith(f"Customer {CUSTOMER + 1} · #")


def test_the_overdue_reminder_goes_into_the_topic(settings):
    use_group_desk(settings)
    ticket = Ticket.objects.create(user=_customer())
    _incoming(ticket, "Anyone?")
    services.hand_over(ticket_id=ticket.pk, actor="bot", reason="no answer")
    Ticket.objects.filter(pk=ticket.pk).update(waiting_since=timezone.now() - timedelta(minutes=45))
    [overdue] = aftercare.claim_overdue(overdue_after=timedelta(minutes=30))
    posted = group_desk.post_overdue(ticket_id=overdue.ticket_id, waited_minutes=overdue.waited_minutes,
                                     last_question=overdue.last_question)
    assert posted is not None
    assert posted.text == (f"⏰ Ticket #{ticket.pk}: Olena Petrenko @olena_p has been waiting 45 min for a reply."
                           "\n👤 Anyone?")
    never_in_group = Ticket.objects.create(user=TelegramUser.objects.create(id=CUSTOMER + 2, first_name="X"))
    assert group_desk.post_overdue(ticket_id=never_in_group.pk, waited_minutes=50) is None


def test_an_operators_message_in_a_topic(settings):
    use_group_desk(settings)
    anna = _staff()
    OperatorAccount.objects.create(user=anna, telegram_user_id=701)
    gone = _staff("gone", is_active=False)
    OperatorAccount.objects.create(user=gone, telegram_user_id=703)
    customer = _customer()
    ForumTopic.objects.create(customer=customer, chat_id=GROUP, message_thread_id=77, name="Olena")
    ticket = Ticket.objects.create(user=customer)
    services.hand_over(ticket_id=ticket.pk, actor="bot", reason="no answer")

    def reply(text="On it", *, user=701, thread=77, message_id=500):
        return group_desk.reply_from_topic(chat_id=GROUP, message_thread_id=thread, telegram_user_id=user,
                                           telegram_message_id=message_id, text=text)

    assert reply(thread=78).outcome is TopicOutcome.UNKNOWN_TOPIC
    assert reply(user=702).outcome is TopicOutcome.UNMAPPED
    assert reply(user=703).outcome is TopicOutcome.UNMAPPED  # a deactivated account answers no one
    assert reply("   ").outcome is TopicOutcome.EMPTY
    done = reply()
    assert done.outcome is TopicOutcome.SENT and done.ticket_id == ticket.pk
    again = reply()  # the same Telegram message handled twice
    assert again.outcome is TopicOutcome.DUPLICATE
    out = Message.objects.get(direction=Message.Direction.OUT, source=Message.Source.OPERATOR)
    assert out.pk == done.message_id and out.operator == anna and out.text == "On it"
    # Not copied back into the topic; logged there as Anna's, with its Telegram id.
    logged = Message.objects.get(direction=Message.Direction.DESK, source=Message.Source.OPERATOR)
    assert (logged.telegram_message_id, logged.operator, logged.delivery_status) == (500, anna, "sent")

    closed = group_desk.close_from_topic(chat_id=GROUP, message_thread_id=77, telegram_user_id=701,
                                         telegram_message_id=501)
    assert closed.outcome is TopicOutcome.CLOSED
    assert Ticket.objects.get(pk=ticket.pk).status == Ticket.Status.CLOSED
    assert reply(message_id=502).outcome is TopicOutcome.NO_TICKET
    assert group_desk.close_from_topic(chat_id=GROUP, message_thread_id=77, telegram_user_id=701,
                                       telegram_message_id=503).outcome is TopicOutcome.NO_TICKET


def test_operator_accounts_in_the_admin(admin_client):
    anna = _staff()
    url = "/admin/support/operatoraccount/add/"
    response = admin_client.post(url, {"user": anna.pk, "telegram_user_id": "-5", "telegram_username": "@anna"})
    assert response.status_code == 200
    assert "A Telegram user id is a positive number" in response.content.decode()
    customer_user = get_user_model().objects.create_user("notstaff", password="x-123456-long")
    response = admin_client.post(url, {"user": customer_user.pk, "telegram_user_id": "701"})
    assert "Only an active staff user can answer customers" in response.content.decode()
    response = admin_client.post(url, {"user": anna.pk, "telegram_user_id": "701", "telegram_username": "@anna"})
    assert response.status_code == 302
    account = OperatorAccount.objects.get()
    assert (account.user, account.telegram_user_id, account.telegram_username) == (anna, 701, "anna")
    assert admin_client.get("/admin/support/operatoraccount/").status_code == 200
    assert admin_client.get("/admin/support/forumtopic/").status_code == 200


def test_a_reply_to_a_resolved_ticket_reopens_it_in_the_group(settings):
    """Answering a resolved ticket gives it back to a person: the group is told (and the bot opens
    the topic again before posting it), so the customer's next messages land in an open topic."""
    use_group_desk(settings)
    anna = _staff()
    ticket = Ticket.objects.create(user=_customer())
    services.hand_over(ticket_id=ticket.pk, actor="bot", reason="no answer")
    services.resolve_ticket(ticket=ticket, operator=anna)
    services.do_operator_reply(ticket=ticket, operator=anna, text="One more thing: your refund is on its way.")
    copy, taken, notice = _desk_rows(ticket)[-3:]
    assert copy == "💬 Anna (web): One more thing: your refund is on its way."
    assert taken == f"👤 Ticket #{ticket.pk} taken by Anna."  # who answers an unassigned ticket owns it
    assert notice == f"🙋 Ticket #{ticket.pk} reopened (operator replied). Olena Petrenko @olena_p, language uk."
    assert group_desk.topic_should_be_open(customer_id=CUSTOMER)
