"""supportbot: a self-hosted AI support desk (Telegram bot + Django admin)."""

__version__ = "0.1.0"
