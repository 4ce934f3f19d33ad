"""A bounded worker pool for transcription, so voice never blocks the event loop.

At most ``concurrency`` transcriptions run at once (each already uses
``WHISPER_THREADS`` cores) and at most ``max_waiting`` more wait their turn. Past
that a caller is refused at once (:class:`QueueFull`) so the bot can ask the
customer to wait or write instead: nothing piles up unseen and nothing is dropped
silently.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

from supportbot.ops import health, metrics
from supportbot.speech.audio import AudioSource
from supportbot.speech.transcriber import Transcriber, Transcript

log = logging.getLogger(__name__)


class QueueFull(Exception):
    """Every worker is busy and the waiting line is full."""


class TranscriptionQueue:
    def __init__(self, transcriber: Transcriber, *, concurrency: int = 1, max_waiting: int = 10,
                 max_seconds: float = 120, languages: tuple[str, ...] = ("uk", "ru", "en")) -> None:
        self.transcriber = transcriber
        self.concurrency = concurrency
        self.capacity = concurrency + max_waiting
        #: The longest voice message accepted (the bot refuses longer ones before downloading).
        self.max_seconds = max_seconds
        self.languages = languages
        self.in_flight = 0  # only touched on the event loop: no lock needed
        self._executor = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="transcribe")

    @contextlib.contextmanager
    def admission(self) -> Iterator[None]:
        """Hold a place from download to transcript; raises :class:`QueueFull` when none is left."""
        if self.in_flight >= self.capacity:
            raise QueueFull(f"{self.in_flight} voice messages in progress")
        self.in_flight += 1
        try:
            yield
        finally:
            self.in_flight -= 1

    async def transcribe(self, audio: AudioSource, **options) -> Transcript:
        loop = asyncio.get_running_loop()
        call = functools.partial(self.transcriber.transcribe, audio, **options)
        started = time.perf_counter()
        transcript = await loop.run_in_executor(self._executor, call)
        seconds = time.perf_counter() - started  # waiting for a worker included: what the customer waits
        metrics.SPEECH_SECONDS.observe(seconds)
        metrics.observe_stage("speech", seconds)
        if transcript.duration:
            metrics.SPEECH_AUDIO_SECONDS.observe(transcript.duration)
        return transcript

    async def warm_up(self) -> None:
        """Load the model in a worker now, so the first customer does not wait for it."""
        load = getattr(self.transcriber, "load", None)
        if load is None:
            return
        health.mark_loading("transcriber")
        try:
            await asyncio.get_running_loop().run_in_executor(self._executor, load)
        except Exception:
            # The bot still answers text: a failed speech model does not make the process unready.
            health.forget("transcriber")
            log.exception("speech model failed to load; voice messages will be refused politely")
        else:
            health.mark_ready("transcriber")

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
