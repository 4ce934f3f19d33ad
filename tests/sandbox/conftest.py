"""The sandbox and a bot pointed at it, shared by the sandbox's test modules (a module may
define its own ``server`` / ``bot`` with another token)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from aiogram import Bot

from supportbot.sandbox import SandboxServer

from .helpers import TOKEN, bot_for, running_sandbox


@pytest.fixture
async def server() -> AsyncIterator[SandboxServer]:
    async with running_sandbox(TOKEN) as srv:
        yield srv


@pytest.fixture
async def bot(server: SandboxServer) -> AsyncIterator[Bot]:
    async with bot_for(server, TOKEN) as bot:
        yield bot
