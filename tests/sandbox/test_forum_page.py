"""The staff sandbox page of the operators' forum group (``/sandbox/group/``) and its proxy routes:
a person plays an operator in customers' topics beside the customer's chat page."""

from __future__ import annotations

import json
import re

import pytest
from django.test import Client

from supportbot.support.models import OperatorAccount

from .test_forum import ANNA
from .test_sandbox_chat_page import API, sandbox_server  # noqa: F401 (a fixture)

PAGE = "/sandbox/group/"
GROUP = -1001000000777


@pytest.fixture
def staff(django_user_model):
    return django_user_model.objects.create_user("anna", password="pw-not-used", is_staff=True)


@pytest.fixture
def staff_client(staff) -> Client:
    client = Client()
    client.force_login(staff)
    return client


def _config(html: str) -> dict:
    return json.loads(html.split('<script id="sg-config" type="application/json">')[1].split("</script>")[0])


@pytest.mark.django_db
def test_without_an_operators_group_the_page_says_how_to_set_one(staff_client):
    html = staff_client.get(PAGE).content.decode()
    assert "No operators&#x27; group is set" in html or "No operators' group is set" in html
    assert "OPERATOR_CHAT_ID" in html
    assert _config(html)["groupId"] is None
    assert not re.findall(r"""(?:src|href)=["']?(?:https?:)?//""", html)  # no external assets


@pytest.mark.django_db
def test_the_page_plays_the_linked_operator_or_says_the_account_is_not_linked(staff_client, staff, settings):
    from tests.bot.test_group_desk import use_group_desk

    use_group_desk(settings, GROUP)
    html = staff_client.get(PAGE).content.decode()
    config = _config(html)
    assert config["groupId"] == GROUP and config["apiBase"] == API
    assert config["userId"] == 910_000_000 + staff.pk and "is not linked to your" in html
    OperatorAccount.objects.create(user=staff, telegram_user_id=ANNA["id"])
    html = staff_client.get(PAGE).content.decode()
    assert _config(html)["userId"] == ANNA["id"] and "is not linked to your" not in html


@pytest.mark.django_db
def test_anonymous_visitor_is_sent_to_the_login(client):
    response = client.get(PAGE)
    assert response.status_code == 302 and "/admin/login/" in response["Location"]


@pytest.mark.django_db
def test_proxy_forwards_the_groups_topics_and_messages(staff_client, sandbox_server):  # noqa: F811
    sandbox_server.state.forum.create(title="Operators", chat_id=GROUP)
    assert staff_client.get(f"{API}groups/{GROUP}/topics").json() == {"topics": []}
    posted = staff_client.post(f"{API}groups/{GROUP}/messages", {"user": ANNA, "text": "Morning!"},
                               content_type="application/json")
    assert posted.status_code == 200, posted.content
    [message] = staff_client.get(f"{API}groups/{GROUP}/messages").json()["messages"]
    assert (message["plain_text"], message["from_user"]) == ("Morning!", ANNA["id"])
    broken = staff_client.post(f"{API}groups/{GROUP}/messages", {"user": ANNA, "text": "x", "message_thread_id": 9},
                               content_type="application/json")
    assert broken.status_code == 400 and "message thread 9 not found" in broken.json()["error"]
    # Only the page's routes pass: creating groups or deleting topics stays with tests and scripts.
    assert staff_client.post(f"{API}groups", {"title": "x"}, content_type="application/json").status_code == 404
    assert staff_client.get(f"{API}groups/{GROUP}/topics/1").status_code == 404
