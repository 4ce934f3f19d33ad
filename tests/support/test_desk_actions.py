"""The ticket page's actions: a double submit of one reply is delivered once, two operators
taking one ticket at once (one wins, the other is told), resolve / close / reopen, internal
notes that never reach the customer, canned replies in the customer's language, and who may
do what."""

from __future__ import annotations

import json
import re
import threading

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.db import connection
from django.test import Client
from django.urls import reverse

from supportbot.support import services
from supportbot.support.desk import canned_replies_for, reply_once
from supportbot.support.errors import CustomerHasOpenTicket
from supportbot.support.models import CannedReply, InternalNote, Message, TelegramUser, Ticket

from ..browser import form_fields

pytestmark = pytest.mark.django_db(transaction=True)

JSON = {"Accept": "application/json"}


def _operator(name: str, *, superuser: bool = True):
    users = get_user_model().objects
    if superuser:
        return users.create_superuser(name, password="pw-123456-long", first_name=name.title())
    return users.create_user(name, password="pw-123456-long", is_staff=True, first_name=name.title())


def _client(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def ticket():
    user = TelegramUser.objects.create(id=5501, first_name="Iryna", language_code="ru")
    ticket = Ticket.objects.create(user=user)
    Message.objects.create(ticket=ticket, direction="in", source="user", text="Где мой заказ?")
    services.hand_over(ticket_id=ticket.pk, actor="customer", reason="/operator")
    return Ticket.objects.get(pk=ticket.pk)


def _url(name: str, ticket: Ticket) -> str:
    return reverse(f"admin:support_ticket_{name}", args=[ticket.pk])


def _operator_replies() -> list[Message]:
    return list(Message.objects.filter(source="operator"))


# -- a double submit -------------------------------------------------------------------------
def test_a_double_submit_of_one_reply_is_delivered_once(ticket):
    client = _client(_operator("olga"))
    page = client.get(_url("change", ticket)).content.decode()
    fields = form_fields(page, "ticket_form")
    fields["reply"] = "Your order ships today."
    first = client.post(_url("change", ticket), fields, headers=JSON)
    again = client.post(_url("change", ticket), fields, headers=JSON)  # the same form, submitted twice
    assert first.status_code == again.status_code == 200
    assert again.json()["duplicate"] and again.json()["id"] == first.json()["id"]
    assert "already sent once" in again.json()["message"]
    assert [m.text for m in _operator_replies()] == ["Your order ships today."]
    # Only one reply to deliver: the outbox claims one row.
    assert [m.text for m in services.claim_outbox(limit=10)] == ["Your order ships today."]
    # The plain form's second submit is told too, and nothing new is queued.
    response = client.post(_url("change", ticket), fields, follow=True)
    assert any("already sent once" in str(m) for m in response.context["messages"])
    assert len(_operator_replies()) == 1
    # A new form (a new token) sends a new reply.
    fields = form_fields(client.get(_url("change", ticket)).content.decode(), "ticket_form")
    fields["reply"] = "Anything else?"
    client.post(_url("change", ticket), fields, headers=JSON)
    assert len(_operator_replies()) == 2


def test_two_concurrent_submits_of_one_form_queue_one_reply(ticket):
    """Two requests with one token at the same moment (a double click racing itself)."""
    operator = _operator("olga")
    barrier, results, errors = threading.Barrier(2), [], []

    def submit():
        try:
            barrier.wait(timeout=10)
            results.append(reply_once(ticket=ticket, operator=operator, text="Once only.",
                                      token="same-token-0123456789abcdef"))
        except Exception as exc:  # noqa: BLE001  (reported below)
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=submit) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors
    assert sorted(duplicate for _, duplicate in results) == [False, True]
    assert results[0][0].pk == results[1][0].pk
    assert len(_operator_replies()) == 1


def test_a_token_of_another_tickets_form_is_refused(ticket):
    client = _client(_operator("olga"))
    fields = form_fields(client.get(_url("change", ticket)).content.decode(), "ticket_form")
    fields["reply"] = "First."
    client.post(_url("change", ticket), fields, headers=JSON)
    other = Ticket.objects.create(user=TelegramUser.objects.create(id=5502))
    response = client.post(_url("change", other), fields, headers=JSON)
    assert response.status_code == 400 and "another ticket" in response.json()["error"]
    assert len(_operator_replies()) == 1


# -- take ----------------------------------------------------------------------------------------
def test_two_operators_taking_one_ticket_at_once_one_wins_the_other_is_told(ticket):
    olga, petro = _operator("olga"), _operator("petro")
    clients = {"olga": _client(olga), "petro": _client(petro)}
    barrier, answers = threading.Barrier(2), {}

    def take(name):
        try:
            barrier.wait(timeout=10)
            answers[name] = clients[name].post(_url("take", ticket), headers=JSON)
        finally:
            connection.close()

    threads = [threading.Thread(target=take, args=(name,)) for name in clients]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    ticket.refresh_from_db()
    winner = "olga" if ticket.assignee == olga else "petro"
    loser = "petro" if winner == "olga" else "olga"
    assert ticket.assignee in (olga, petro)
    assert answers[winner].status_code == 200 and answers[winner].json()["outcome"] == "taken"
    assert answers[loser].status_code == 409
    assert answers[loser].json()["error"] == f"Ticket #{ticket.pk} was already taken by {winner.title()}."
    # The customer sees nothing of this: no message was written.
    assert not Message.objects.filter(direction="out").exists()

    # With the plain form (the page's button), the loser reads it on the page; the winner too.
    response = clients[loser].post(_url("take", ticket), follow=True)
    assert any(f"already taken by {winner.title()}" in str(m) for m in response.context["messages"])
    response = clients[winner].post(_url("take", ticket), follow=True)
    assert any("already yours" in str(m) for m in response.context["messages"])
    page = clients[loser].get(_url("change", ticket)).content.decode()
    assert f'id="ticket-assignee">{winner.title()}<' in page and 'id="take" class="button default"\n' \
           '              hidden' in page


# -- resolve, close, reopen ----------------------------------------------------------------------
def test_resolve_close_and_reopen_from_the_page(ticket):
    client = _client(_operator("olga"))
    response = client.post(_url("resolve", ticket), follow=True)
    assert any("resolved" in str(m) for m in response.context["messages"])
    ticket.refresh_from_db()
    assert ticket.status == Ticket.Status.RESOLVED
    again = client.post(_url("resolve", ticket), headers=JSON)
    assert again.status_code == 409 and "already resolved" in again.json()["error"]

    response = client.post(_url("reopen", ticket), headers=JSON)
    assert response.status_code == 200
    ticket.refresh_from_db()
    assert ticket.status == Ticket.Status.WITH_OPERATOR

    assert client.post(_url("close", ticket), headers=JSON).status_code == 200
    ticket.refresh_from_db()
    assert ticket.status == Ticket.Status.CLOSED
    assert client.post(_url("close", ticket), headers=JSON).status_code == 409
    response = client.post(_url("take", ticket), headers=JSON)  # nobody takes a closed ticket
    assert response.status_code == 409 and "closed: reopen it first" in response.json()["error"]
    # A closed ticket does not reopen beside the customer's newer open ticket: the service's message.
    Ticket.objects.create(user=ticket.user)
    response = client.post(_url("reopen", ticket), follow=True)
    assert CustomerHasOpenTicket.message in [str(m) for m in response.context["messages"]]
    ticket.refresh_from_db()
    assert ticket.status == Ticket.Status.CLOSED
    # Replying to a closed ticket: the service's refusal, as JSON for the page.
    fields = form_fields(client.get(_url("change", ticket)).content.decode(), "ticket_form")
    fields["reply"] = "Hello?"
    response = client.post(_url("change", ticket), fields, headers=JSON)
    assert response.status_code == 400 and "closed" in response.json()["error"]


def test_actions_need_a_post(ticket):
    client = _client(_operator("olga"))
    for name in ("take", "resolve", "close", "reopen", "note"):
        response = client.get(_url(name, ticket), headers=JSON)
        assert response.status_code == 405 and "POST" in response.json()["error"], name
    ticket.refresh_from_db()
    assert ticket.status == Ticket.Status.WITH_OPERATOR and ticket.assignee is None


# -- internal notes ---------------------------------------------------------------------------------
def test_notes_are_kept_for_the_team_and_never_become_outgoing_messages(ticket):
    client = _client(_operator("olga"))
    response = client.post(_url("note", ticket), {"note": "VIP customer, be quick <3"}, headers=JSON)
    assert response.status_code == 200 and "VIP customer, be quick &lt;3" in response.json()["html"]
    client.post(_url("note", ticket), {"note": "Called back."}, follow=True)
    assert [n.text for n in InternalNote.objects.order_by("id")] == ["VIP customer, be quick <3", "Called back."]
    assert not Message.objects.filter(direction="out").exists()
    assert services.claim_outbox(limit=10) == []
    page = client.get(_url("change", ticket)).content.decode()
    assert "VIP customer, be quick &lt;3" in page and "not sent to the customer" in page
    poll = client.get(_url("poll", ticket), {"after": 0, "after_note": 0}).json()
    assert [i["kind"] for i in poll["items"] if i["kind"] == "note"] == ["note", "note"]


def test_an_empty_or_huge_note_is_refused_with_a_clear_message(ticket):
    client = _client(_operator("olga"))
    response = client.post(_url("note", ticket), {"note": "   "}, headers=JSON)
    assert response.status_code == 400 and response.json()["error"].startswith("The note is empty")
    response = client.post(_url("note", ticket), {"note": "x" * (services.MAX_TEXT + 1)}, headers=JSON)
    assert response.status_code == 400 and "too long" in response.json()["error"]
    assert not InternalNote.objects.exists()


# -- canned replies -------------------------------------------------------------------------------------
def test_canned_replies_are_offered_in_the_customers_language_with_english_as_fallback(ticket):
    CannedReply.objects.create(shortcut="hello", language="en", title="Greeting", text="Hello! How can I help?")
    CannedReply.objects.create(shortcut="hello", language="ru", title="Приветствие", text="Здравствуйте!")
    CannedReply.objects.create(shortcut="refund", language="en", title="Refund", text="Refunds take 5 days.")
    CannedReply.objects.create(shortcut="old", language="ru", title="Old", text="Unused.", is_active=False)
    CannedReply.objects.create(shortcut="bye", language="uk", title="Бувай", text="До побачення!")

    assert [(c["shortcut"], c["text"]) for c in canned_replies_for("ru")] == [
        ("hello", "Здравствуйте!"), ("refund", "Refunds take 5 days.")]
    assert [(c["shortcut"], c["language"]) for c in canned_replies_for("uk-UA")] == [
        ("bye", "uk"), ("hello", "en"), ("refund", "en")]
    assert [c["shortcut"] for c in canned_replies_for("")] == ["hello", "refund"]  # unknown: English

    page = _client(_operator("olga")).get(_url("change", ticket)).content.decode()  # customer speaks ru
    found = re.search(r'<script id="canned-data" type="application/json">(.*?)</script>', page)
    assert found
    data = json.loads(found.group(1))
    assert [c["text"] for c in data] == ["Здравствуйте!", "Refunds take 5 days."]
    assert "/hello — Приветствие<" in page and "/refund — Refund [en]" in page


def test_canned_replies_are_managed_in_the_admin_and_checked(ticket):
    client = _client(_operator("olga"))
    add = reverse("admin:support_cannedreply_add")
    data = {"shortcut": "thanks", "language": "uk", "title": "Дякую", "text": "Дякуємо за звернення!",
            "is_active": "on"}
    assert client.post(add, data).status_code == 302
    response = client.post(add, data)  # the same shortcut and language again
    assert response.status_code == 200 and "already exists" in response.content.decode()
    response = client.post(add, {**data, "shortcut": "not a slug!", "language": "en"})
    assert response.status_code == 200 and "shortcut" in str(response.context["adminform"].form.errors)
    assert CannedReply.objects.count() == 1
    listing = client.get(reverse("admin:support_cannedreply_changelist")).content.decode()
    assert "thanks" in listing and "Дякуємо за звернення!" in listing


# -- permissions and broken input ---------------------------------------------------------------------
def test_a_staff_member_who_may_only_view_tickets_cannot_reply_take_or_note(ticket):
    viewer = _operator("vika", superuser=False)
    viewer.user_permissions.add(Permission.objects.get(codename="view_ticket"))
    client = _client(viewer)
    page = client.get(_url("change", ticket))
    assert page.status_code == 200 and "Где мой заказ?" in page.content.decode()
    html = page.content.decode()
    assert 'id="reply-text"' not in html and 'id="take"' not in html and "need the permission" in html
    assert client.get(_url("poll", ticket), {"after": 0}).json()["ticket"]["actions"] == []

    response = client.post(_url("change", ticket), {"reply": "Hi", "reply_token": "x" * 32})
    assert response.status_code == 403
    for name in ("take", "resolve", "close", "reopen", "note"):
        response = client.post(_url(name, ticket), {"note": "hi"}, headers=JSON)
        assert response.status_code == 403 and "permission to change tickets" in response.json()["error"], name
    ticket.refresh_from_db()
    assert ticket.assignee is None and ticket.status == Ticket.Status.WITH_OPERATOR
    assert not _operator_replies() and not InternalNote.objects.exists()

    nobody = _client(_operator("nina", superuser=False))  # staff, no ticket permission at all
    assert nobody.get(_url("change", ticket)).status_code == 403
    assert nobody.get(_url("poll", ticket), {"after": 0}).status_code == 403


def test_broken_input_gets_a_clear_error(ticket):
    client = _client(_operator("olga"))
    fields = form_fields(client.get(_url("change", ticket)).content.decode(), "ticket_form")
    # An empty reply.
    response = client.post(_url("change", ticket), {**fields, "reply": "  \n "}, headers=JSON)
    assert response.status_code == 400 and "empty" in response.json()["error"].lower()
    # No token, or a forged one.
    for token in ("", "short", "<script>alert(1)</script>-long-enough"):
        response = client.post(_url("change", ticket), {**fields, "reply": "Hi", "reply_token": token}, headers=JSON)
        assert response.status_code == 400 and "reload the page" in response.json()["error"], token
    assert not _operator_replies()
    # An unknown ticket.
    for name in ("poll", "take", "note"):
        url = reverse(f"admin:support_ticket_{name}", args=[999999])
        response = (client.get(url, {"after": 0}, headers=JSON) if name == "poll" else client.post(url, headers=JSON))
        assert response.status_code == 404 and response.json()["error"] == \
            "No ticket #999999: it does not exist (or was deleted).", name
    page = client.get(reverse("admin:support_ticket_change", args=[999999]), follow=True)
    assert any("999999" in str(m) for m in page.context["messages"])
    page = client.get("/admin/support/ticket/abc/change/", follow=True)
    assert page.status_code == 200 and any("abc" in str(m) for m in page.context["messages"])
    # A bad cursor in the poll.
    poll = _url("poll", ticket)
    for params, expected in ((({}), "'after' is missing"), ({"after": "abc"}, "not 'abc'"),
                             ({"after": "-1"}, "not '-1'"), ({"after": "1", "after_note": "1.5"}, "'after_note'")):
        response = client.get(poll, params)
        assert response.status_code == 400 and expected in response.json()["error"], params


def test_an_operator_releases_a_taken_ticket_back_to_the_queue(ticket):
    olga = _operator("olga", superuser=False)
    petro = _operator("petro", superuser=False)
    for user in (olga, petro):
        user.user_permissions.add(*Permission.objects.filter(codename__in=["view_ticket", "change_ticket"]))
    boss = _operator("boss")
    olga_client, petro_client = _client(olga), _client(petro)
    assert olga_client.post(_url("take", ticket), headers=JSON).status_code == 200
    # Only Olga sees Release; Petro cannot release her ticket.
    assert "release" in olga_client.get(_url("poll", ticket), {"after": 0}).json()["ticket"]["actions"]
    assert "release" not in petro_client.get(_url("poll", ticket), {"after": 0}).json()["ticket"]["actions"]
    response = petro_client.post(_url("release", ticket), headers=JSON)
    assert response.status_code == 409 and "assigned to Olga: only they" in response.json()["error"]
    # Olga gives it back; Petro takes it; a superuser may unassign anyone.
    response = olga_client.post(_url("release", ticket), follow=True)
    assert any("back in the queue" in str(m) for m in response.context["messages"])
    ticket.refresh_from_db()
    assert ticket.assignee is None
    assert olga_client.post(_url("release", ticket), headers=JSON).status_code == 409  # not assigned
    assert petro_client.post(_url("take", ticket), headers=JSON).status_code == 200
    assert _client(boss).post(_url("release", ticket), headers=JSON).status_code == 200
    ticket.refresh_from_db()
    assert ticket.assignee is None
    reasons = list(ticket.status_changes.values_list("reason", flat=True))
    assert "released by operator (was olga)" in reasons and "released by operator (was petro)" in reasons
    assert not Message.objects.filter(direction="out").exists()  # the customer sees nothing


@pytest.mark.django_db
def test_who_replies_to_an_unassigned_ticket_owns_it_wherever_they_replied(ticket):
    """services.do_operator_reply (the web desk and the operators' group both call it) assigns an
    unassigned ticket to the operator who answered, and never takes a ticket from its assignee."""
    olena, taras = _operator("olena"), _operator("taras")
    services.do_operator_reply(ticket=ticket, operator=olena, text="Ваш заказ в пути.")
    ticket.refresh_from_db()
    assert ticket.assignee == olena and ticket.assigned_at is not None
    assert ticket.status_changes.filter(reason="taken by operator (replied)", changed_by=olena).count() == 1
    services.do_operator_reply(ticket=ticket, operator=taras, text="Трек-номер пришлём по SMS.")
    ticket.refresh_from_db()
    assert ticket.assignee == olena
    assert ticket.status_changes.filter(reason__startswith="taken by operator").count() == 1
