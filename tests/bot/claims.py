"""Test helper: make the update-claim store fail for real (its table renamed away), then restore it."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from asgiref.sync import sync_to_async
from django.db import connection

from supportbot.support.models import UpdateClaim


@contextlib.asynccontextmanager
async def claim_table_missing() -> AsyncIterator[None]:
    """Every claim fails with a real ``DatabaseError`` inside the block; the table is back after it."""
    table = UpdateClaim._meta.db_table

    def rename(old: str, new: str) -> None:
        with connection.schema_editor() as editor:
            editor.alter_db_table(UpdateClaim, old, new)

    await sync_to_async(rename)(table, f"{table}_away")
    try:
        yield
    finally:
        await sync_to_async(rename)(f"{table}_away", table)
