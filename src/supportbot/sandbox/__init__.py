"""Local Telegram Bot API sandbox: run the real bot without a Telegram token.

``start_server`` serves a Bot API look-alike that aiogram reaches through
``TelegramAPIServer.from_base(server.url)``; ``SandboxClient`` plays the customer
through the control API under ``/sandbox/api/``.
"""

from supportbot.sandbox.client import SandboxClient, SandboxError
from supportbot.sandbox.server import (
    BOT_FIRST_NAME,
    BOT_USERNAME,
    SandboxServer,
    SandboxState,
    create_app,
    run_forever,
    start_server,
)

__all__ = [
    "BOT_FIRST_NAME",
    "BOT_USERNAME",
    "SandboxClient",
    "SandboxError",
    "SandboxServer",
    "SandboxState",
    "create_app",
    "run_forever",
    "start_server",
]
