"""The staff-only sandbox chat page and its proxy to the sandbox's control API.

The proxy is exercised against a real sandbox server on an ephemeral port, run on its
own event loop in a background thread because the Django test client is synchronous.
"""

from __future__ import annotations

import asyncio
import json
import re
import socket
import threading
import urllib.request
from collections.abc import Iterator

import pytest
from asgiref.sync import sync_to_async
from django.contrib.auth import get_user_model
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client

from supportbot.config import SANDBOX_BOT_TOKEN
from supportbot.sandbox import views
from supportbot.sandbox.server import SandboxServer, start_server

from ..conftest import wait_until

PAGE = "/sandbox/"
API = "/sandbox/api/"
USER = 777001
CUSTOMER = {"first_name": "Olena", "language_code": "uk"}


@pytest.fixture
def sandbox_server(monkeypatch) -> Iterator[SandboxServer]:
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="sandbox-server", daemon=True)
    thread.start()
    server = asyncio.run_coroutine_threadsafe(
        start_server("127.0.0.1", 0, token=SANDBOX_BOT_TOKEN), loop).result(timeout=10)
    monkeypatch.setattr(views, "_sandbox_base", lambda: f"{server.url}/sandbox/api/")
    try:
        yield server
    finally:
        asyncio.run_coroutine_threadsafe(server.close(), loop).result(timeout=10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        loop.close()


@pytest.fixture
def staff(django_user_model):
    return django_user_model.objects.create_user("olena", password="pw-not-used", is_staff=True)


@pytest.fixture
def staff_client(staff) -> Client:
    client = Client()
    client.force_login(staff)
    return client


@pytest.fixture
def csrf_client(staff) -> Client:
    """A client that, like a browser, must present the CSRF token."""
    client = Client(enforce_csrf_checks=True)
    client.force_login(staff)
    client.get(PAGE)  # sets the csrftoken cookie, as the page does for the browser
    return client


def _token(client: Client) -> str:
    return client.cookies["csrftoken"].value


# -- the page ---------------------------------------------------------------------


@pytest.mark.django_db
def test_anonymous_visitor_is_sent_to_the_admin_login(client):
    response = client.get(PAGE)
    assert response.status_code == 302
    assert response["Location"].startswith("/admin/login/")


@pytest.mark.django_db
def test_non_staff_user_is_sent_to_the_admin_login(client, django_user_model):
    client.force_login(django_user_model.objects.create_user("customer", password="x"))
    response = client.get(PAGE)
    assert response.status_code == 302
    assert response["Location"].startswith("/admin/login/")


@pytest.mark.django_db
def test_staff_member_gets_the_chat_page(staff_client, staff):
    response = staff_client.get(PAGE)
    assert response.status_code == 200
    html = response.content.decode()
    assert "<h1>Sandbox chat</h1>" in html
    assert 'href="/admin/"' in html  # back to the admin
    for control in ('id="sb-text"', 'id="sb-lang"', 'id="sb-new"', 'id="sb-audio"', 'id="sb-record"'):
        assert control in html
    config = json.loads(html.split('<script id="sb-config" type="application/json">')[1]
                        .split("</script>")[0])
    assert config["apiBase"] == API
    assert config["userId"] == 900_000_000 + staff.pk
    assert config["csrfToken"]
    assert "real Telegram token" not in html  # the tests run without one


@pytest.mark.django_db
def test_page_warns_when_the_bot_runs_with_a_real_token(staff_client, monkeypatch):
    from supportbot.config import get_settings

    monkeypatch.setattr(type(get_settings()), "sandbox_mode", property(lambda self: False))
    html = staff_client.get(PAGE).content.decode()
    assert "The bot runs with a real Telegram token" in html


@pytest.mark.django_db
def test_page_shows_no_external_assets(staff_client):
    html = staff_client.get(PAGE).content.decode()
    assert not re.findall(r"""(?:src|href)=["']?(?:https?:)?//""", html)


# -- the proxy --------------------------------------------------------------------


@pytest.mark.django_db
def test_proxy_forwards_a_json_message_and_lists_it(staff_client, sandbox_server):
    response = staff_client.post(f"{API}chats/{USER}/messages",
                                 {"text": "Where is my parcel?", "user": CUSTOMER},
                                 content_type="application/json")
    assert response.status_code == 200, response.content
    assert response.json()["message"]["from"]["language_code"] == "uk"

    listed = staff_client.get(f"{API}chats/{USER}/messages")
    assert listed.status_code == 200
    [message] = listed.json()["messages"]
    assert (message["from"], message["plain_text"]) == ("user", "Where is my parcel?")

    later = staff_client.get(f"{API}chats/{USER}/messages?after={message['message_id']}")
    assert later.json() == {"messages": []}  # the query string is forwarded


@pytest.mark.django_db
def test_proxy_forwards_a_multipart_voice_upload_intact(csrf_client, sandbox_server):
    audio = bytes(range(256)) * 40 + b"OggS\r\n--not-a-boundary\r\n"
    response = csrf_client.post(
        f"{API}chats/{USER}/messages",
        {"kind": "voice", "file": _upload("voice.ogg", audio, "audio/ogg"),
         "duration": "3", "mime_type": "audio/ogg", "user": json.dumps(CUSTOMER)},
        HTTP_X_CSRFTOKEN=_token(csrf_client),
    )
    assert response.status_code == 200, response.content
    voice = response.json()["message"]["voice"]
    assert (voice["duration"], voice["mime_type"], voice["file_size"]) == (3, "audio/ogg", len(audio))
    assert sandbox_server.state.files[voice["file_id"]].data == audio


@pytest.mark.django_db
def test_proxy_forwards_uploads_bigger_than_djangos_in_memory_limit(csrf_client, sandbox_server,
                                                                   settings):
    audio = b"\x01" * (settings.DATA_UPLOAD_MAX_MEMORY_SIZE + 1024)
    response = csrf_client.post(
        f"{API}chats/{USER}/messages",
        {"kind": "voice", "file": _upload("long.ogg", audio, "audio/ogg")},
        HTTP_X_CSRFTOKEN=_token(csrf_client),
    )
    assert response.status_code == 200, response.content
    assert response.json()["message"]["voice"]["file_size"] == len(audio)


@pytest.mark.django_db
def test_proxy_refuses_uploads_over_the_limit(csrf_client, sandbox_server, monkeypatch):
    monkeypatch.setattr(views, "_MAX_BODY", 1000)
    response = csrf_client.post(
        f"{API}chats/{USER}/messages",
        {"kind": "voice", "file": _upload("v.ogg", b"x" * 2000, "audio/ogg")},
        HTTP_X_CSRFTOKEN=_token(csrf_client),
    )
    assert response.status_code == 413
    assert USER not in sandbox_server.state.chats


@pytest.mark.django_db
def test_proxy_passes_the_button_press_and_the_bots_alert(staff_client, sandbox_server):
    staff_client.post(f"{API}chats/{USER}/messages", {"text": "hi", "user": CUSTOMER},
                      content_type="application/json")
    keyboard = {"inline_keyboard": [[{"text": "Yes", "callback_data": "fb:1"}]]}
    sent = _bot_api(sandbox_server, "sendMessage", chat_id=USER, text="<b>Helpful?</b>",
                    parse_mode="HTML", reply_markup=keyboard)

    [_, shown] = staff_client.get(f"{API}chats/{USER}/messages").json()["messages"]
    assert (shown["from"], shown["plain_text"], shown["reply_markup"]) == ("bot", "Helpful?", keyboard)
    assert shown["entities"] == [{"type": "bold", "offset": 0, "length": 8}]

    pressed = staff_client.post(f"{API}chats/{USER}/callback",
                                {"message_id": sent["message_id"], "data": "fb:1"},
                                content_type="application/json")
    assert pressed.status_code == 200, pressed.content
    callback_id = pressed.json()["callback_query_id"]
    update = _bot_api(sandbox_server, "getUpdates", offset=0)[-1]
    assert update["callback_query"]["data"] == "fb:1"
    _bot_api(sandbox_server, "answerCallbackQuery", callback_query_id=callback_id,
             text="This button is no longer active.", show_alert=True)

    answer = staff_client.get(f"{API}callbacks/{callback_id}").json()
    assert answer["answered"] and answer["show_alert"]
    assert answer["text"] == "This button is no longer active."


@pytest.mark.django_db
def test_proxy_passes_sandbox_errors_through(staff_client, sandbox_server):
    response = staff_client.post(f"{API}chats/{USER}/messages", {"text": "   "},
                                 content_type="application/json")
    assert response.status_code == 400
    assert response.json() == {"error": "'text' must not be empty"}


@pytest.mark.django_db
@pytest.mark.parametrize("rest", [
    "chats",                                      # not a route the page uses
    "bot",
    "chats/1/block",
    "chats/1/../../../bot1000000001:x/getMe",    # escaping the control API
    "chats/1/messages/..",
    "../bot1000000001:sandbox-token-not-a-secret/getUpdates",
    "chats/abc/messages",
    "callbacks/1/../../chats",
])
def test_proxy_refuses_routes_outside_the_control_api(staff_client, sandbox_server, rest):
    response = staff_client.get(API + rest)
    assert response.status_code == 404
    assert response.json() == {"error": "unknown sandbox route"}


@pytest.mark.django_db
def test_proxy_says_clearly_when_the_sandbox_is_not_running(staff_client, monkeypatch):
    with socket.socket() as sock:  # a port that was free a moment ago: nothing listens
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    monkeypatch.setattr(views, "_sandbox_base", lambda: f"http://127.0.0.1:{port}/sandbox/api/")
    response = staff_client.get(f"{API}chats/{USER}/messages")
    assert response.status_code == 503
    assert "sandbox is not running" in response.json()["error"]


@pytest.mark.django_db
def test_proxy_requires_the_csrf_token_for_posts(csrf_client, sandbox_server):
    url = f"{API}chats/{USER}/messages"
    body = json.dumps({"text": "hello", "user": CUSTOMER})
    refused = csrf_client.post(url, body, content_type="application/json")
    assert refused.status_code == 403
    assert USER not in sandbox_server.state.chats

    accepted = csrf_client.post(url, body, content_type="application/json",
                                HTTP_X_CSRFTOKEN=_token(csrf_client))
    assert accepted.status_code == 200, accepted.content
    assert csrf_client.get(url).json()["messages"][0]["plain_text"] == "hello"


@pytest.mark.django_db
def test_proxy_refuses_a_multipart_post_without_the_csrf_token(csrf_client, sandbox_server):
    response = csrf_client.post(f"{API}chats/{USER}/messages",
                                {"kind": "voice", "file": _upload("v.ogg", b"OggS", "audio/ogg")})
    assert response.status_code == 403
    assert USER not in sandbox_server.state.chats


@pytest.mark.django_db
def test_proxy_answers_json_403_to_anonymous_and_non_staff(client, django_user_model, sandbox_server):
    assert client.get(f"{API}health").status_code == 403
    client.force_login(django_user_model.objects.create_user("customer", password="x"))
    response = client.get(f"{API}health")
    assert response.status_code == 403
    assert "Staff login required" in response.json()["error"]


def _bot_api(server: SandboxServer, method: str, **params):
    """The bot's side of the conversation, straight over the sandbox's Bot API."""
    request = urllib.request.Request(
        f"{server.url}/bot{SANDBOX_BOT_TOKEN}/{method}", data=json.dumps(params).encode(),
        headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.load(response)["result"]


def _upload(name: str, data: bytes, content_type: str) -> SimpleUploadedFile:
    return SimpleUploadedFile(name, data, content_type=content_type)


# -- the page's path to the real bot -------------------------------------------------


@pytest.mark.django_db(transaction=True)
async def test_customer_on_the_page_talks_to_the_real_bot(sandbox, bot_app, monkeypatch):
    """What the page does, request for request: send /start, poll, see the greeting."""
    monkeypatch.setattr(views, "_sandbox_base", lambda: f"{sandbox.url}/sandbox/api/")
    user = await get_user_model().objects.acreate(username="olena", is_staff=True)
    client = Client(enforce_csrf_checks=True)
    await sync_to_async(client.force_login)(user)
    await sync_to_async(client.get)(PAGE)

    sent = await sync_to_async(client.post)(
        f"{API}chats/{USER}/messages",
        {"text": "/start", "user": {**CUSTOMER, "language_code": "en"}},
        content_type="application/json", HTTP_X_CSRFTOKEN=_token(client))
    assert sent.status_code == 200, sent.content

    def bot_reply():
        messages = client.get(f"{API}chats/{USER}/messages").json()["messages"]
        return next((m for m in messages if m["from"] == "bot"), None)

    reply = await wait_until(bot_reply, timeout=10)
    assert reply["parse_mode"] == "HTML"
    assert reply["plain_text"].startswith("Hello, Olena!")
