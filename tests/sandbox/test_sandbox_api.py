"""The sandbox Bot API server, exercised with the real aiogram client and raw HTTP.

These tests need neither Django nor the network: everything runs against a server
on an ephemeral localhost port.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiogram import Bot, Dispatcher
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from aiogram.exceptions import (
    TelegramBadRequest,
    TelegramConflictError,
    TelegramForbiddenError,
    TelegramUnauthorizedError,
)
from aiogram.types import (
    BotCommand,
    CallbackQuery,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    Message,
    ReplyParameters,
)

from supportbot.sandbox import SandboxClient, SandboxError, SandboxServer
from supportbot.sandbox.server import EntityParseError, parse_html, parse_markdown_v2

from .helpers import TOKEN, close_bot

USER = 4242


def keyboard(*pairs: tuple[str, str]) -> InlineKeyboardMarkup:
    return InlineKeyboardMarkup(
        inline_keyboard=[[InlineKeyboardButton(text=t, callback_data=d)] for t, d in pairs]
    )


@pytest.fixture
async def client(server: SandboxServer) -> AsyncIterator[SandboxClient]:
    async with SandboxClient(server.url) as sandbox:
        yield sandbox


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def drain(bot: Bot) -> list[Any]:
    """Fetch and confirm everything pending, like a polling loop would."""
    updates = await bot.get_updates(timeout=0)
    if updates:
        await bot.get_updates(offset=updates[-1].update_id + 1, timeout=0)
    return updates


# --- basics --------------------------------------------------------------------------


async def test_get_me_and_server_url(server: SandboxServer, bot: Bot) -> None:
    assert server.url == f"http://127.0.0.1:{server.port}" and server.port > 0
    me = await bot.get_me()
    assert me.id == 123456789
    assert me.is_bot is True
    assert me.first_name == "Sandbox Support Bot"
    assert me.username == "sandbox_support_bot"


async def test_wrong_token_is_unauthorized(server: SandboxServer) -> None:
    session = AiohttpSession(api=TelegramAPIServer.from_base(server.url))
    intruder = Bot("987654321:not-the-sandbox-token", session=session)
    try:
        with pytest.raises(TelegramUnauthorizedError, match="Unauthorized"):
            await intruder.get_me()
    finally:
        await close_bot(intruder)


async def test_unknown_method_and_case_insensitive_names(
    server: SandboxServer, http: aiohttp.ClientSession
) -> None:
    async with http.post(f"{server.url}/bot{TOKEN}/sendTeleportation") as resp:
        assert resp.status == 404
        assert await resp.json() == {
            "ok": False,
            "error_code": 404,
            "description": "Not Found: method not found",
        }
    async with http.get(f"{server.url}/bot{TOKEN}/GETME") as resp:
        body = await resp.json()
        assert resp.status == 200 and body["ok"] is True
        assert body["result"]["username"] == "sandbox_support_bot"


async def test_raw_json_and_urlencoded_bodies(
    server: SandboxServer, client: SandboxClient, http: aiohttp.ClientSession
) -> None:
    await client.send_text(USER, "hi")
    markup = '{"inline_keyboard": [[{"text": "Yes", "callback_data": "y"}]]}'
    async with http.post(
        f"{server.url}/bot{TOKEN}/sendMessage",
        data={"chat_id": str(USER), "text": "form body", "reply_markup": markup},
    ) as resp:
        body = await resp.json()
        assert resp.status == 200, body
        assert body["result"]["reply_markup"]["inline_keyboard"][0][0]["callback_data"] == "y"
    async with http.post(
        f"{server.url}/bot{TOKEN}/sendMessage",
        json={"chat_id": USER, "text": "<i>json</i>", "parse_mode": "HTML"},
    ) as resp:
        body = await resp.json()
        assert body["result"]["text"] == "json"
        assert body["result"]["entities"] == [{"type": "italic", "offset": 0, "length": 4}]
        assert body["result"]["from"]["is_bot"] is True
        assert body["result"]["chat"] == {"id": USER, "type": "private", "first_name": "Test"}
    async with http.post(f"{server.url}/bot{TOKEN}/sendMessage", json={"text": "no chat"}) as resp:
        assert resp.status == 400
        assert (await resp.json())["description"] == "Bad Request: chat_id is empty"


async def test_token_never_logged(
    server: SandboxServer, bot: Bot, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="supportbot")
    await bot.get_me()
    with pytest.raises(TelegramBadRequest):
        await bot.send_message(1, "x")
    assert "/bot<token>/getMe" in caplog.text  # the access log is on, and redacted
    assert TOKEN not in caplog.text
    assert TOKEN.split(":")[1] not in caplog.text


def test_malformed_token_rejected_at_startup() -> None:
    from supportbot.sandbox import create_app

    with pytest.raises(ValueError, match="token"):
        create_app(token="no-colon-here")


# --- getUpdates ----------------------------------------------------------------------


async def test_long_poll_returns_as_soon_as_an_update_arrives(
    bot: Bot, client: SandboxClient
) -> None:
    started = time.monotonic()
    poll = asyncio.create_task(bot.get_updates(timeout=5))
    await asyncio.sleep(0.1)
    assert not poll.done()  # it is really waiting
    await client.send_text(USER, "hello", first_name="Olena", language_code="uk", username="olena")
    updates = await asyncio.wait_for(poll, 2)
    assert time.monotonic() - started < 1.5
    assert len(updates) == 1
    message = updates[0].message
    assert message is not None and message.text == "hello"
    assert message.from_user is not None
    assert (message.from_user.first_name, message.from_user.language_code) == ("Olena", "uk")
    assert message.chat.id == USER and message.chat.type == "private"


async def test_long_poll_returns_empty_after_timeout(
    server: SandboxServer, http: aiohttp.ClientSession
) -> None:
    started = time.monotonic()
    async with http.post(f"{server.url}/bot{TOKEN}/getUpdates", json={"timeout": 0.3}) as resp:
        body = await resp.json()
    elapsed = time.monotonic() - started
    assert body == {"ok": True, "result": []}
    assert 0.25 <= elapsed < 1.5


async def test_offset_confirms_updates(bot: Bot, client: SandboxClient) -> None:
    for text in ("one", "two", "three"):
        await client.send_text(USER, text)
    first = await bot.get_updates(timeout=0)
    assert [u.message.text for u in first if u.message] == ["one", "two", "three"]
    # Without an offset nothing is confirmed: the same updates come back.
    assert [u.update_id for u in await bot.get_updates(timeout=0)] == [u.update_id for u in first]
    rest = await bot.get_updates(offset=first[1].update_id, timeout=0, limit=1)
    assert [u.update_id for u in rest] == [first[1].update_id]
    # The offset dropped "one" for good.
    again = await bot.get_updates(timeout=0)
    assert [u.message.text for u in again if u.message] == ["two", "three"]
    assert await bot.get_updates(offset=first[-1].update_id + 1, timeout=0) == []


async def test_newer_poller_terminates_older_one(bot: Bot) -> None:
    older = asyncio.create_task(bot.get_updates(timeout=5))
    await asyncio.sleep(0.05)
    newer = asyncio.create_task(bot.get_updates(timeout=0))
    with pytest.raises(TelegramConflictError, match="terminated by other getUpdates"):
        await asyncio.wait_for(older, 2)
    assert await newer == []


async def test_webhook_blocks_get_updates(bot: Bot) -> None:
    with pytest.raises(TelegramBadRequest, match="HTTPS URL"):
        await bot.set_webhook("http://insecure.example/hook")
    assert await bot.set_webhook("https://example.com/hook")
    assert (await bot.get_webhook_info()).url == "https://example.com/hook"
    with pytest.raises(TelegramConflictError, match="webhook is active"):
        await bot.get_updates(timeout=0)
    assert await bot.delete_webhook(drop_pending_updates=True)
    assert (await bot.get_webhook_info()).url == ""
    assert await bot.get_updates(timeout=0) == []


# --- sendMessage and formatting ------------------------------------------------------


async def test_inline_keyboard_round_trip(bot: Bot, client: SandboxClient) -> None:
    await client.send_text(USER, "/start")
    updates = await drain(bot)
    assert updates[0].message.entities[0].type == "bot_command"
    sent = await bot.send_message(
        USER,
        "<b>Was this helpful?</b>",
        parse_mode="HTML",
        reply_markup=keyboard(("Yes", "fb:yes"), ("No", "fb:no")),
        reply_parameters=ReplyParameters(message_id=updates[0].message.message_id),
    )
    assert sent.text == "Was this helpful?"
    assert sent.reply_to_message is not None and sent.reply_to_message.text == "/start"
    assert sent.reply_markup is not None

    seen = await client.wait_for_bot_message(USER, after=1)
    assert seen["message_id"] == sent.message_id
    assert seen["text"] == "<b>Was this helpful?</b>" and seen["parse_mode"] == "HTML"
    assert seen["plain_text"] == "Was this helpful?"
    rows = seen["reply_markup"]["inline_keyboard"]
    assert [row[0]["callback_data"] for row in rows] == ["fb:yes", "fb:no"]

    callback_id = await client.press(USER, sent.message_id, "fb:yes")
    (update,) = await drain(bot)
    query = update.callback_query
    assert query is not None and query.id == callback_id and query.data == "fb:yes"
    assert query.from_user.id == USER and query.message is not None
    assert query.message.message_id == sent.message_id

    assert (await client.callback_answer(callback_id))["answered"] is False
    assert await bot.answer_callback_query(callback_id, text="Thanks!", show_alert=True)
    answer = await client.wait_for_callback_answer(callback_id, timeout=1)
    assert (answer["text"], answer["show_alert"]) == ("Thanks!", True)
    with pytest.raises(TelegramBadRequest, match="query is too old"):
        await bot.answer_callback_query(callback_id)
    with pytest.raises(TelegramBadRequest, match="query is too old"):
        await bot.answer_callback_query("123")


async def test_forged_callback_data_is_delivered(bot: Bot, client: SandboxClient) -> None:
    await client.send_text(USER, "hi")
    sent = await bot.send_message(USER, "pick", reply_markup=keyboard(("A", "a")))
    await drain(bot)
    await client.press(USER, sent.message_id, "admin:delete_everything")
    (update,) = await drain(bot)
    assert update.callback_query is not None
    assert update.callback_query.data == "admin:delete_everything"


async def test_html_formatting_accepted(bot: Bot, client: SandboxClient) -> None:
    await client.send_text(USER, "hi")
    sent = await bot.send_message(
        USER,
        '<b>Bold</b> <a href="https://example.com/?a=1&b=2">link</a> 1 &lt; 2 &amp;&#33; '
        '<tg-spoiler>x</tg-spoiler> <span class="tg-spoiler">y</span> '
        '<pre><code class="language-py">z</code></pre>',
        parse_mode="HTML",
    )
    assert sent.text == "Bold link 1 < 2 &! x y z"
    types = [e.type for e in sent.entities or []]
    assert types == ["bold", "text_link", "spoiler", "spoiler", "pre"]


@pytest.mark.parametrize(
    ("text", "detail"),
    [
        ("1 < 2", 'Unsupported start tag "" at byte offset 2'),
        ("Tom & Jerry", 'unescaped "&" at byte offset 4'),
        ("&nbsp;", "Unsupported HTML entity"),
        ("<b>bold", 'Can\'t find end tag corresponding to start tag "b"'),
        ("<b><i>x</b></i>", 'expected "</i>", found "</b>"'),
        ("<marquee>x</marquee>", 'Unsupported start tag "marquee"'),
        ("x</b>", "Unexpected end tag"),
        ("<span>x</span>", 'must have class "tg-spoiler"'),
        ("a<b", "Unclosed start tag at byte offset 1"),
        ("ї <", "byte offset 3"),  # offsets are UTF-8 bytes, like Telegram's
    ],
)
async def test_malformed_html_rejected(
    bot: Bot, client: SandboxClient, text: str, detail: str
) -> None:
    await client.send_text(USER, "hi")
    with pytest.raises(TelegramBadRequest, match="can't parse entities") as excinfo:
        await bot.send_message(USER, text, parse_mode="HTML")
    assert detail in excinfo.value.message
    assert await client.bot_messages(USER) == []  # nothing was delivered


def test_markdown_v2_parser() -> None:
    assert parse_markdown_v2(r"*Hi* _there_ \. `a.b`").text == "Hi there . a.b"
    reserved = r"Character '\.' is reserved and must be escaped with the preceding '\\'"
    with pytest.raises(EntityParseError, match=reserved):
        parse_markdown_v2("Version 1.2")
    with pytest.raises(EntityParseError, match="Can't find end of Bold entity"):
        parse_markdown_v2("*open")
    parsed = parse_html("  <b>x</b>  ")
    assert parsed.text == "x" and parsed.entities == ({"type": "bold", "offset": 0, "length": 1},)


async def test_markdown_v2_and_unknown_parse_mode(bot: Bot, client: SandboxClient) -> None:
    await client.send_text(USER, "hi")
    with pytest.raises(TelegramBadRequest, match=r"Character '!' is reserved"):
        await bot.send_message(USER, "Hello!", parse_mode="MarkdownV2")
    ok = await bot.send_message(USER, r"*Hello\!*", parse_mode="MarkdownV2")
    assert ok.text == "Hello!" and ok.entities and ok.entities[0].type == "bold"
    with pytest.raises(TelegramBadRequest, match="unsupported parse_mode"):
        await bot.send_message(USER, "x", parse_mode="BBCode")


async def test_text_length_limits(bot: Bot, client: SandboxClient) -> None:
    await client.send_text(USER, "hi")
    assert (await bot.send_message(USER, "a" * 4096)).text == "a" * 4096
    with pytest.raises(TelegramBadRequest, match="message is too long"):
        await bot.send_message(USER, "a" * 4097)
    # The limit applies after entity parsing: markup does not count, entities do.
    await bot.send_message(USER, "<b>" + "a" * 4096 + "</b>", parse_mode="HTML")
    with pytest.raises(TelegramBadRequest, match="message is too long"):
        await bot.send_message(USER, "&amp;" * 4097, parse_mode="HTML")
    for empty in ("   \n ", "<b> </b>"):
        with pytest.raises(TelegramBadRequest, match="message text is empty"):
            await bot.send_message(USER, empty, parse_mode="HTML")


async def test_callback_data_limit(bot: Bot, client: SandboxClient) -> None:
    await client.send_text(USER, "hi")
    await bot.send_message(USER, "ok", reply_markup=keyboard(("x", "d" * 64)))
    with pytest.raises(TelegramBadRequest, match="BUTTON_DATA_INVALID"):
        await bot.send_message(USER, "too long", reply_markup=keyboard(("x", "d" * 65)))
    with pytest.raises(TelegramBadRequest, match="BUTTON_DATA_INVALID"):
        await bot.send_message(USER, "bytes, not chars", reply_markup=keyboard(("x", "ї" * 33)))


async def test_unknown_chat_and_missing_messages(bot: Bot, client: SandboxClient) -> None:
    with pytest.raises(TelegramBadRequest, match="chat not found"):
        await bot.send_message(999, "hello?")
    await client.send_text(USER, "hi")
    with pytest.raises(TelegramBadRequest, match="message to edit not found"):
        await bot.edit_message_text(text="x", chat_id=USER, message_id=77)
    with pytest.raises(TelegramBadRequest, match="message can't be edited"):
        await bot.edit_message_text(text="x", chat_id=USER, message_id=1)  # the user's message
    with pytest.raises(TelegramBadRequest, match="message to delete not found"):
        await bot.delete_message(USER, 77)
    with pytest.raises(TelegramBadRequest, match="message to be replied not found"):
        await bot.send_message(USER, "re", reply_parameters=ReplyParameters(message_id=77))


# --- edits and deletes ---------------------------------------------------------------


async def test_edit_reply_markup_text_and_delete(bot: Bot, client: SandboxClient) -> None:
    await client.send_text(USER, "hi")
    rating = keyboard(("1", "r:1"), ("2", "r:2"))
    sent = await bot.send_message(USER, "Rate us", reply_markup=rating)

    edited = await bot.edit_message_reply_markup(
        chat_id=USER, message_id=sent.message_id, reply_markup=keyboard(("Thanks", "noop"))
    )
    assert isinstance(edited, Message) and edited.edit_date is not None
    with pytest.raises(TelegramBadRequest, match="message is not modified"):
        await bot.edit_message_reply_markup(
            chat_id=USER, message_id=sent.message_id, reply_markup=keyboard(("Thanks", "noop"))
        )
    (seen,) = await client.bot_messages(USER)
    assert seen["reply_markup"] == {
        "inline_keyboard": [[{"text": "Thanks", "callback_data": "noop"}]]
    }
    assert seen["edit_count"] == 1

    # Same text and keyboard: not modified; as on Telegram, no reply_markup drops the keyboard.
    with pytest.raises(TelegramBadRequest, match="message is not modified"):
        await bot.edit_message_text(
            text="Rate us",
            chat_id=USER,
            message_id=sent.message_id,
            reply_markup=keyboard(("Thanks", "noop")),
        )
    await bot.edit_message_text(
        text="<b>Rate us</b>", parse_mode="HTML", chat_id=USER, message_id=sent.message_id
    )
    (seen,) = await client.bot_messages(USER)
    assert seen["reply_markup"] is None
    assert (seen["text"], seen["edit_count"]) == ("<b>Rate us</b>", 2)

    assert await bot.delete_message(USER, sent.message_id)
    (seen,) = await client.bot_messages(USER)
    assert seen["deleted"] is True
    with pytest.raises(SandboxError, match="does not exist"):
        await client.press(USER, sent.message_id, "r:1")


# --- files, actions, blocking ----------------------------------------------------------


async def test_voice_upload_get_file_and_download(bot: Bot, client: SandboxClient) -> None:
    payload = os.urandom(150_000)
    result = await client.send_file(USER, "voice", payload, duration=4, mime_type="audio/ogg")
    voice = result["message"]["voice"]
    assert voice["file_size"] == len(payload) and voice["duration"] == 4

    (update,) = await drain(bot)
    assert update.message is not None and update.message.voice is not None
    file = await bot.get_file(update.message.voice.file_id)
    assert file.file_size == len(payload)
    assert file.file_path is not None and file.file_path.startswith("voice/")
    downloaded = await bot.download(update.message.voice.file_id)
    assert downloaded is not None and downloaded.read() == payload
    with pytest.raises(TelegramBadRequest, match="invalid file_id"):
        await bot.get_file("nope")


async def test_other_customer_message_kinds(bot: Bot, client: SandboxClient) -> None:
    await client.send_kind(USER, "sticker", emoji="👍")
    await client.send_kind(USER, "photo", caption="look")
    await client.send_kind(USER, "document", file_name="invoice.pdf")
    await client.send_kind(USER, "location", latitude=50.45, longitude=30.52)
    messages = [u.message for u in await drain(bot)]
    assert messages[0].sticker is not None and messages[0].sticker.emoji == "👍"
    assert messages[1].photo and messages[1].caption == "look"
    assert messages[2].document is not None and messages[2].document.mime_type == "application/pdf"
    assert messages[3].location is not None and messages[3].location.latitude == 50.45
    kinds = [m["kind"] for m in await client.messages(USER)]
    assert kinds == ["sticker", "photo", "document", "location"]


async def test_chat_actions_and_commands(bot: Bot, client: SandboxClient) -> None:
    await client.send_text(USER, "hi")
    assert await bot.send_chat_action(USER, "typing")
    assert await bot.send_chat_action(USER, "record_voice")
    assert [a["action"] for a in await client.actions(USER)] == ["typing", "record_voice"]
    with pytest.raises(TelegramBadRequest, match="wrong parameter action"):
        await bot.send_chat_action(USER, "dancing")

    assert await bot.set_my_commands([BotCommand(command="start", description="Start")])
    assert [c.command for c in await bot.get_my_commands()] == ["start"]
    with pytest.raises(TelegramBadRequest, match="BOT_COMMAND_INVALID"):
        await bot.set_my_commands([BotCommand(command="Bad Command", description="x")])


async def test_blocked_user(bot: Bot, client: SandboxClient) -> None:
    await client.send_text(USER, "hi")
    await drain(bot)
    await client.block(USER)
    with pytest.raises(TelegramForbiddenError, match="bot was blocked by the user"):
        await bot.send_message(USER, "are you there?")
    with pytest.raises(TelegramForbiddenError):
        await bot.send_chat_action(USER, "typing")
    (update,) = await drain(bot)
    assert update.my_chat_member is not None
    assert update.my_chat_member.new_chat_member.status == "kicked"
    with pytest.raises(SandboxError) as excinfo:
        await client.send_text(USER, "let me talk")
    assert excinfo.value.status == 409

    await client.block(USER, blocked=False)
    assert (await bot.send_message(USER, "welcome back")).text == "welcome back"


# --- the control API ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "kwargs", "fragment"),
    [
        (
            "chats/42/messages",
            {"data": "{not json", "headers": {"Content-Type": "application/json"}},
            "valid JSON",
        ),
        ("chats/42/messages", {"json": {"user": {"first_name": "A"}}}, "exactly one of"),
        ("chats/42/messages", {"json": {"text": "   "}}, "must not be empty"),
        ("chats/42/messages", {"json": {"text": 5}}, "'text' must be a string"),
        ("chats/abc/messages", {"json": {"text": "hi"}}, "user_id must be a positive integer"),
        ("chats/42/messages", {"json": {"text": "hi", "user": "bob"}}, "'user' must be"),
        ("chats/42/messages", {"json": {"location": {"latitude": "north"}}}, "latitude"),
        ("chats/42/messages", {"json": ["text"]}, "JSON object"),
        ("chats/42/callback", {"json": {"message_id": 1, "data": "x"}}, "does not exist"),
        ("chats/42/block", {"json": {"blocked": "yes"}}, "'blocked' must be true or false"),
    ],
)
async def test_control_api_rejects_bad_input(
    server: SandboxServer,
    http: aiohttp.ClientSession,
    path: str,
    kwargs: dict[str, Any],
    fragment: str,
) -> None:
    async with http.post(f"{server.url}/sandbox/api/{path}", **kwargs) as resp:
        body = await resp.json()
        assert resp.status == 400, body
        assert fragment in body["error"]


async def test_control_api_reads(
    server: SandboxServer, client: SandboxClient, http: aiohttp.ClientSession
) -> None:
    assert await client.health()
    assert await client.messages(USER) == []  # unknown chat: simply empty
    first = await client.send_text(USER, "one")
    await client.send_text(USER, "two")
    assert first["update_id"] >= 1 and first["message"]["message_id"] == 1
    assert [m["text"] for m in await client.messages(USER, after=1)] == ["two"]
    assert [c["user_id"] for c in await client.chats()] == [USER]
    async with http.get(f"{server.url}/sandbox/api/chats/{USER}/messages?after=x") as resp:
        assert resp.status == 400
    async with http.get(f"{server.url}/sandbox/api/callbacks/nope") as resp:
        assert resp.status == 404 and "error" in await resp.json()
    async with http.get(f"{server.url}/sandbox/api/no/such/route") as resp:
        assert resp.status == 404 and "error" in await resp.json()


async def test_wait_for_bot_message_timeout_shows_transcript(client: SandboxClient) -> None:
    await client.send_text(USER, "is anyone there?")
    with pytest.raises(TimeoutError, match=r"(?s)transcript:.*#1 user: 'is anyone there\?'"):
        await client.wait_for_bot_message(USER, timeout=0.1)


# --- a real aiogram Dispatcher against the sandbox ----------------------------------------


async def test_dispatcher_polling_end_to_end(bot: Bot, client: SandboxClient) -> None:
    dp = Dispatcher()

    @dp.message()
    async def echo(message: Message) -> None:
        await message.answer(f"You said: {message.text}", reply_markup=keyboard(("👍", "like")))

    @dp.callback_query()
    async def on_like(query: CallbackQuery) -> None:
        await query.answer("Liked")

    polling = asyncio.create_task(
        dp.start_polling(bot, polling_timeout=1, handle_signals=False, close_bot_session=False)
    )
    try:
        await client.send_text(USER, "ping")
        reply = await client.wait_for_bot_message(
            USER, predicate=lambda m: "ping" in m["text"], timeout=5
        )
        assert reply["text"] == "You said: ping"
        callback_id = await client.press(USER, reply["message_id"], "like")
        answer = await client.wait_for_callback_answer(callback_id, timeout=5)
        assert answer["text"] == "Liked"
    finally:
        await dp.stop_polling()
        await asyncio.wait_for(polling, 5)


def test_api_reply_models_are_built_once_per_process() -> None:
    """aiogram's Response[T] survives garbage collection once pinned (it was rebuilt per call)."""
    import gc

    from aiogram.client.session.base import Response
    from aiogram.methods import GetUpdates, SendMessage

    from supportbot.bot.runner import pin_response_types

    assert pin_response_types() > 100  # every Bot API method
    before = id(Response[SendMessage.__returning__]), id(Response[GetUpdates.__returning__])
    gc.collect()
    assert (id(Response[SendMessage.__returning__]), id(Response[GetUpdates.__returning__])) == before
