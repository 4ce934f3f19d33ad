"""The sandbox and an aiogram Bot pointed at it, for the sandbox's own tests."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from aiogram import Bot
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer

from supportbot.sandbox import SandboxServer, start_server

#: The token the sandbox tests' bot uses (a well-formed one that is not the product's sandbox token).
TOKEN = "123456789:SANDBOX-test_token_0123456789abcdef"


@asynccontextmanager
async def running_sandbox(token: str) -> AsyncIterator[SandboxServer]:
    server = await start_server(port=0, token=token)
    try:
        yield server
    finally:
        await server.close()


async def close_bot(bot: Bot) -> None:
    # AiohttpSession.close() sleeps 250 ms so SSL transports can finish; the sandbox is
    # plain HTTP, so closing the underlying aiohttp session directly keeps tests fast.
    http_session = await bot.session.create_session()
    await http_session.close()


@asynccontextmanager
async def bot_for(server: SandboxServer, token: str) -> AsyncIterator[Bot]:
    bot = Bot(token, session=AiohttpSession(api=TelegramAPIServer.from_base(server.url)))
    try:
        yield bot
    finally:
        await close_bot(bot)
