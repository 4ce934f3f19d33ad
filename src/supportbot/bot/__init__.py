"""The Telegram front door (aiogram 3): thin handlers over the pipeline and services."""
