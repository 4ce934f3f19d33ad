"""Forum supergroups in the sandbox Bot API (``supportbot.sandbox.forum``), exercised with the
real aiogram client: topics created, renamed, closed, reopened and deleted by the bot; members
writing into topics (the updates the bot gets); Telegram's refusals, word for word."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from aiogram import Bot
from aiogram.exceptions import TelegramBadRequest

from supportbot.sandbox import SandboxClient, SandboxError, SandboxServer

GROUP = -1001234567890
ANNA = {"id": 701, "first_name": "Anna", "username": "anna_support"}


@pytest.fixture
async def client(server: SandboxServer) -> AsyncIterator[SandboxClient]:
    async with SandboxClient(server.url) as sandbox:
        yield sandbox


@pytest.fixture
async def group(client: SandboxClient) -> int:
    created = await client.create_group("Support team", chat_id=GROUP)
    assert created["chat"] == {"id": GROUP, "title": "Support team", "type": "supergroup", "is_forum": True}
    return GROUP


async def test_topics_created_renamed_closed_reopened_deleted(bot: Bot, client: SandboxClient, group: int):
    topic = await bot.create_forum_topic(group, "Olena @olena · #7")
    assert topic.name == "Olena @olena · #7" and topic.message_thread_id > 0
    thread = topic.message_thread_id

    sent = await bot.send_message(group, "Customer: where is my parcel?", message_thread_id=thread)
    assert sent.message_thread_id == thread and sent.is_topic_message
    assert sent.chat.type == "supergroup" and sent.chat.is_forum

    assert await bot.edit_forum_topic(group, thread, name="Olena @olena · #8")
    with pytest.raises(TelegramBadRequest, match="TOPIC_NOT_MODIFIED"):
        await bot.edit_forum_topic(group, thread, name="Olena @olena · #8")
    assert await bot.close_forum_topic(group, thread)
    with pytest.raises(TelegramBadRequest, match="TOPIC_NOT_MODIFIED"):
        await bot.close_forum_topic(group, thread)
    # The bot manages topics, so it may still post into a closed one (as an administrator may).
    await bot.send_message(group, "closed, but the bot may write", message_thread_id=thread)
    assert await bot.reopen_forum_topic(group, thread)

    [listed] = await client.topics(group)
    assert listed == {"message_thread_id": thread, "name": "Olena @olena · #8", "icon_color": 0x6FB9F0,
                      "closed": False, "deleted": False}
    texts = [m["text"] for m in await client.group_messages(group, thread_id=thread) if m["kind"] == "text"]
    assert texts == ["Customer: where is my parcel?", "closed, but the bot may write"]

    assert await bot.delete_forum_topic(group, thread)
    with pytest.raises(TelegramBadRequest, match=r"^Telegram server says - Bad Request: message thread not found$"):
        await bot.send_message(group, "into a deleted topic", message_thread_id=thread)
    assert (await client.topics(group))[0]["deleted"] is True


async def test_a_topic_deleted_by_hand_refuses_posts(bot: Bot, client: SandboxClient, group: int):
    thread = (await bot.create_forum_topic(group, "Ivan")).message_thread_id
    await client.delete_topic(group, thread)
    with pytest.raises(TelegramBadRequest, match="message thread not found"):
        await bot.send_message(group, "hello?", message_thread_id=thread)
    with pytest.raises(TelegramBadRequest, match="message thread not found"):
        await bot.send_message(group, "an unknown topic", message_thread_id=99999)
    with pytest.raises(TelegramBadRequest, match="message thread not found"):
        await bot.close_forum_topic(group, thread)
    with pytest.raises(SandboxError, match="does not exist"):
        await client.delete_topic(group, thread)
    # A new topic for the same customer works as before.
    again = await bot.create_forum_topic(group, "Ivan")
    assert again.message_thread_id != thread
    await bot.send_message(group, "here again", message_thread_id=again.message_thread_id)


async def test_a_member_writing_in_a_topic_reaches_the_bot(bot: Bot, client: SandboxClient, group: int):
    thread = (await bot.create_forum_topic(group, "Olena")).message_thread_id
    posted = await client.send_group_text(group, ANNA, "Hello Olena, I am checking.", thread_id=thread)
    command = await client.send_group_text(group, ANNA, "/close", thread_id=thread)
    sticker = await client.send_group_sticker(group, ANNA, thread_id=thread)

    updates = await bot.get_updates(timeout=0)
    assert [u.update_id for u in updates] == [posted["update_id"], command["update_id"], sticker["update_id"]]
    message = updates[0].message
    assert message is not None and message.text == "Hello Olena, I am checking."
    assert message.chat.id == group and message.chat.type == "supergroup" and message.chat.is_forum
    assert message.message_thread_id == thread and message.is_topic_message
    assert message.from_user is not None
    assert message.from_user.id == 701 and message.from_user.username == "anna_support"
    # Not a reply to anything in particular: it replies to the topic's "created" service message.
    assert message.reply_to_message is not None and message.reply_to_message.forum_topic_created is not None
    assert message.reply_to_message.forum_topic_created.name == "Olena"
    cmd = updates[1].message
    assert cmd is not None and cmd.entities is not None and cmd.entities[0].type == "bot_command"
    assert updates[2].message is not None and updates[2].message.sticker is not None
    assert updates[2].message.text is None

    listed = await client.group_messages(group, thread_id=thread)
    assert [(m["from"], m["from_user"], m["kind"]) for m in listed[-3:]] == [
        ("user", 701, "text"), ("user", 701, "text"), ("user", 701, "sticker")]


async def test_a_polled_update_can_be_handed_out_again(bot: Bot, client: SandboxClient, group: int):
    thread = (await bot.create_forum_topic(group, "Olena")).message_thread_id
    posted = await client.send_group_text(group, ANNA, "once", thread_id=thread)
    [first] = await bot.get_updates(timeout=0)
    assert first.update_id == posted["update_id"]
    await client.requeue_update(posted["update_id"])
    [again] = await bot.get_updates(offset=first.update_id + 1, timeout=0)
    assert again.update_id == first.update_id and again.message is not None and again.message.text == "once"
    with pytest.raises(SandboxError, match="never handed out"):
        await client.requeue_update(12345)
    with pytest.raises(SandboxError, match="positive integer"):
        await client._request("POST", "updates/x/requeue")


async def test_what_telegram_refuses(bot: Bot, client: SandboxClient, group: int):
    with pytest.raises(TelegramBadRequest, match="chat not found"):
        await bot.create_forum_topic(-1009999999999, "nobody's")
    with pytest.raises(TelegramBadRequest, match="TOPIC_TITLE_EMPTY"):
        await bot.create_forum_topic(group, "")
    with pytest.raises(TelegramBadRequest, match="TOPIC_TITLE_TOO_LONG"):
        await bot.create_forum_topic(group, "x" * 129)
    with pytest.raises(TelegramBadRequest, match="TOPIC_ICON_COLOR_INVALID"):
        await bot.create_forum_topic(group, "coloured", icon_color=0x123456)
    with pytest.raises(TelegramBadRequest, match="message thread identifier is not specified"):
        await bot.session.make_request(bot, _raw("closeForumTopic", chat_id=group))

    plain = await client.create_group("Not a forum", is_forum=False)
    with pytest.raises(TelegramBadRequest, match="the chat is not a forum"):
        await bot.create_forum_topic(plain["chat"]["id"], "topic")
    with pytest.raises(TelegramBadRequest, match="message thread not found"):
        await bot.send_message(plain["chat"]["id"], "in a topic?", message_thread_id=5)
    sent = await bot.send_message(plain["chat"]["id"], "plain group message")
    assert sent.message_thread_id is None and sent.chat.type == "supergroup"

    no_rights = await client.create_group("Bot is no admin", bot_can_manage_topics=False)
    with pytest.raises(TelegramBadRequest, match="not enough rights to create a topic"):
        await bot.create_forum_topic(no_rights["chat"]["id"], "topic")


async def test_control_api_refuses_broken_input(client: SandboxClient, group: int, bot: Bot):
    with pytest.raises(SandboxError, match="'title' is required"):
        await client._request("POST", "groups", json={"chat_id": -1005})
    with pytest.raises(SandboxError, match="negative integer"):
        await client.create_group("positive", chat_id=42)
    with pytest.raises(SandboxError, match="exists already"):
        await client.create_group("again", chat_id=GROUP)
    with pytest.raises(SandboxError, match="unknown field"):
        await client._request("POST", "groups", json={"title": "t", "colour": "red"})
    with pytest.raises(SandboxError, match="does not exist") as unknown:
        await client.send_group_text(-1007777, ANNA, "hello", thread_id=1)
    assert unknown.value.status == 404
    with pytest.raises(SandboxError, match="message thread 424242 not found"):
        await client.send_group_text(group, ANNA, "hello", thread_id=424242)
    with pytest.raises(SandboxError, match="'user' is required"):
        await client._request("POST", f"groups/{group}/messages", json={"text": "who am I"})
    with pytest.raises(SandboxError, match=r"user\.id"):
        await client.send_group_text(group, {"first_name": "No id"}, "hello")
    with pytest.raises(SandboxError, match="exactly one of"):
        await client._request("POST", f"groups/{group}/messages", json={"user": ANNA})
    thread = (await bot.create_forum_topic(group, "closing")).message_thread_id
    await bot.close_forum_topic(group, thread)
    with pytest.raises(SandboxError, match="is closed") as closed:
        await client.send_group_text(group, ANNA, "late", thread_id=thread)
    assert closed.value.status == 409


def _raw(method: str, **params):
    """A Bot API call with parameters aiogram would not let through (a missing required one)."""
    from aiogram.methods import TelegramMethod

    class Raw(TelegramMethod[bool]):
        __returning__ = bool
        __api_method__ = method
        model_config = {"extra": "allow"}

    return Raw(**params)


async def test_the_operators_group_can_exist_from_the_start():
    """``supportbot run`` / ``supportbot sandbox`` with OPERATOR_CHAT_ID: the sandbox has that forum
    group from the start, the bot its administrator, so the group desk works offline too."""
    from supportbot.sandbox import start_server

    from .helpers import TOKEN, bot_for

    server = await start_server(port=0, token=TOKEN, forum_group=-1004242)
    try:
        async with bot_for(server, TOKEN) as bot, SandboxClient(server.url) as client:
            topic = await bot.create_forum_topic(-1004242, "Olena")
            assert [t["name"] for t in await client.topics(-1004242)] == ["Olena"]
            assert topic.message_thread_id > 0
    finally:
        await server.close()
