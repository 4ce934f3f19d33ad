"""Voice messages in the desk: transcripts on the message log, and the audio itself.

Privacy: audio is held in memory only for transcription and never written,
unless ``KEEP_AUDIO=true``; then it goes under ``<data dir>/audio/`` and a
periodic job (in the bot process) deletes it after ``AUDIO_RETENTION_DAYS``.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import os
import tempfile
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

from django.db import close_old_connections
from django.utils import timezone

from supportbot.support.models import Message

if TYPE_CHECKING:
    from supportbot.config import SpeechSettings

log = logging.getLogger(__name__)

_SUFFIXES = {".ogg", ".oga", ".opus", ".mp3", ".m4a", ".mp4", ".wav", ".flac", ".webm", ".aac", ".amr"}

CONTENT_TYPES = {
    ".ogg": "audio/ogg", ".oga": "audio/ogg", ".opus": "audio/ogg", ".mp3": "audio/mpeg",
    ".m4a": "audio/mp4", ".mp4": "video/mp4", ".wav": "audio/wav", ".flac": "audio/flac",
    ".webm": "audio/webm", ".aac": "audio/aac", ".amr": "audio/amr",
}


def audio_root() -> Path:
    from django.conf import settings

    return settings.SUPPORTBOT.data_dir / "audio"


class AudioStore:
    """Kept voice audio under one folder; paths stored on messages are relative to it."""

    def __init__(self, root: Path, *, keep: bool, retention_days: int) -> None:
        self.root = root
        self.keep = keep
        self.retention = dt.timedelta(days=retention_days)

    @classmethod
    def from_settings(cls, speech: SpeechSettings, *, data_dir: Path) -> AudioStore:
        return cls(data_dir / "audio", keep=speech.keep_audio, retention_days=speech.audio_retention_days)

    def save(self, data: bytes, *, suffix: str) -> str:
        """Write ``data`` atomically; return its path relative to the root ("" when not keeping)."""
        if not self.keep:
            return ""
        suffix = suffix.lower() if suffix.lower() in _SUFFIXES else ".ogg"
        day = timezone.now().strftime("%Y/%m/%d")
        folder = self.root / day
        folder.mkdir(parents=True, exist_ok=True)
        relative = f"{day}/{uuid.uuid4().hex}{suffix}"
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=".incoming-")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
            os.chmod(tmp, 0o640)
            os.replace(tmp, self.root / relative)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return relative

    def path_of(self, relative: str) -> Path | None:
        """The file for a stored relative path, or None (missing, or outside the root)."""
        if not relative:
            return None
        root = self.root.resolve()
        path = (root / relative).resolve()
        if not path.is_relative_to(root) or not path.is_file():
            return None
        return path

    def purge_expired(self, *, now: dt.datetime | None = None) -> int:
        """Delete audio older than the retention period; returns how many files went."""
        now = now or timezone.now()
        cutoff = now - self.retention
        removed = 0
        expired = Message.objects.filter(created_at__lt=cutoff).exclude(audio_file="")
        for pk, relative in expired.values_list("pk", "audio_file"):
            path = self.path_of(relative)
            if path is not None:
                path.unlink(missing_ok=True)
                removed += 1
            Message.objects.filter(pk=pk).update(audio_file="")
        # Files no message points to any more (a crash between write and save) expire too.
        if self.root.is_dir():
            limit = cutoff.timestamp()
            for path in self.root.rglob("*"):
                if path.is_file() and path.stat().st_mtime < limit:
                    path.unlink(missing_ok=True)
                    removed += 1
            for folder in sorted((p for p in self.root.rglob("*") if p.is_dir()), reverse=True):
                with contextlib.suppress(OSError):
                    folder.rmdir()  # only succeeds when empty
        if removed:
            log.info("deleted %d expired voice recordings", removed)
        return removed


class AudioRetentionJob:
    """Runs :meth:`AudioStore.purge_expired` periodically, off the event loop."""

    def __init__(self, store: AudioStore, *, interval: float = 3600.0) -> None:
        self.store = store
        self.interval = interval

    async def run(self) -> None:
        while True:
            try:
                await asyncio.to_thread(self._purge)
            except Exception:
                log.exception("audio retention pass failed; retrying later")
            await asyncio.sleep(self.interval)

    def _purge(self) -> int:
        close_old_connections()
        return self.store.purge_expired()


def attach_transcript(
    *, message_id: int, language: str = "", probability: float | None = None,
    audio_seconds: float | None = None, transcription_ms: int | None = None, audio_file: str = "",
) -> None:
    """Record how a voice message was heard on its (already logged) message row."""
    Message.objects.filter(pk=message_id).update(
        transcript_language=(language or "")[:8], transcript_probability=probability,
        audio_seconds=audio_seconds, transcription_ms=transcription_ms, audio_file=audio_file[:255],
    )


# -- the operators' view ------------------------------------------------------------------
def voice_details(message: Message):
    """For the admin thread: how the voice message was heard, and a player when its audio is kept."""
    from django.urls import reverse
    from django.utils.html import format_html, format_html_join

    facts = []
    if message.transcript_language:
        probability = message.transcript_probability
        facts.append(f"{message.transcript_language}" + (f" (p={probability:.2f})" if probability is not None else ""))
    if message.audio_seconds is not None:
        facts.append(f"{message.audio_seconds:.1f} s of audio")
    if message.transcription_ms is not None:
        facts.append(f"transcribed in {message.transcription_ms} ms")
    if not message.text:
        facts.append("no transcript")
    summary = format_html_join(" · ", "{}", ((f,) for f in facts))
    if not message.audio_file:
        return format_html('<div class="help">🎤 {}</div>', summary)
    url = reverse("admin:support_message_audio", args=[message.pk])
    return format_html('<div class="help">🎤 {}</div><audio controls preload="none" src="{}"></audio>',
                       summary, url)


def audio_view(request, message_id: int):
    """Stream a kept recording to a staff member allowed to see messages."""
    from django.http import FileResponse, Http404
    from django.shortcuts import get_object_or_404

    if not request.user.has_perm("support.view_message"):
        raise Http404
    from django.conf import settings

    message = get_object_or_404(Message, pk=message_id)
    store = AudioStore.from_settings(settings.SUPPORTBOT.speech, data_dir=settings.SUPPORTBOT.data_dir)
    path = store.path_of(message.audio_file)
    if path is None:
        raise Http404("The recording was not kept or has expired.")
    # FileResponse owns the file and closes it once the body is sent: no context manager here.
    handle = open(path, "rb")  # noqa: SIM115
    response = FileResponse(handle, content_type=CONTENT_TYPES.get(path.suffix, "application/octet-stream"))
    response["Cache-Control"] = "private, no-store"
    return response
