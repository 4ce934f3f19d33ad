"""The local step: one GGUF model per process, one dedicated worker thread, a bounded queue.

A model instance generates one answer at a time, so questions line up in front
of the worker. The line is short on purpose (``LOCAL_LLM_QUEUE``): when it is
full the step says :class:`StepUnavailable` at once and the chain moves on (to
the API, or to a person) rather than letting customers wait behind each other.
Tokens travel from the worker to the event loop through an ``asyncio.Queue``
(``call_soon_threadsafe``); the event loop never waits on the model itself.
A question whose caller gave up (timeout, next step) is skipped if it is still
waiting and stopped at its next token if it is running.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass, field

from supportbot.background import run_in_background
from supportbot.llm.base import ChatMessage, Chunk, StepUnavailable
from supportbot.llm.engines import Engine

log = logging.getLogger(__name__)

_DONE = object()


@dataclass(eq=False)
class _Job:
    messages: list[ChatMessage] | None  # None: only load the model (warm-up)
    max_tokens: int
    deadline: float
    loop: asyncio.AbstractEventLoop
    out: asyncio.Queue = field(default_factory=asyncio.Queue)
    cancelled: threading.Event = field(default_factory=threading.Event)

    def send(self, item) -> bool:
        """Hand an item to the waiting coroutine; False when nobody listens any more."""
        if self.cancelled.is_set():
            return False
        try:
            self.loop.call_soon_threadsafe(self.out.put_nowait, item)
        except RuntimeError:  # the event loop is gone
            self.cancelled.set()
            return False
        return True

    @property
    def wanted(self) -> bool:
        return not self.cancelled.is_set() and time.monotonic() < self.deadline


class LocalAnswerer:
    """:class:`~supportbot.llm.base.Answerer` over a local engine, in its own worker thread."""

    source = "local_llm"

    def __init__(self, make_engine: Callable[[], Engine], *, model_name: str, max_waiting: int = 2) -> None:
        # The engine is made (model file found or assembled) and loaded in the worker, on first use.
        self._make_engine = make_engine
        self.engine: Engine | None = None
        self.model_name = model_name
        self.capacity = 1 + max_waiting  # the one being answered + those waiting
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._pending = 0
        self._thread: threading.Thread | None = None
        self._closed = False

    # -- admission ----------------------------------------------------------------------
    @property
    def pending(self) -> int:
        return self._pending

    def _submit(self, job: _Job) -> None:
        with self._lock:
            if self._closed:
                raise StepUnavailable("the local model is shut down")
            if job.messages is not None and self._pending >= self.capacity:
                raise StepUnavailable(f"local model busy ({self._pending} questions in line)")
            self._pending += 1
            if self._thread is None:
                self._thread = threading.Thread(target=self._work, name="llm-local", daemon=True)
                self._thread.start()
        self._jobs.put(job)

    # -- the worker thread ------------------------------------------------------------------
    def _work(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                break
            try:
                self._run(job)
            except BaseException as exc:  # noqa: BLE001 - never let the worker die: report and go on
                job.send(exc)
            finally:
                with self._lock:
                    self._pending -= 1
        if self.engine is not None:
            self.engine.close()

    def _engine(self) -> Engine:
        if self.engine is None:
            engine = self._make_engine()
            started = time.perf_counter()
            # Loading (a 1.1 GB read and seconds of CPU, at start-up) must not slow the FAQ
            # answers, the database or the event loop: it runs in a lower-priority thread
            # (``supportbot.background``). Generating stays in this thread, at normal priority.
            run_in_background(engine.load, name="llm-load")
            log.info("local LLM %s loaded with %s in %.1f s", self.model_name, engine.name,
                     time.perf_counter() - started)
            self.engine = engine
        return self.engine

    def _run(self, job: _Job) -> None:
        if job.messages is None:
            self._engine()
            job.send(_DONE)
            return
        if not job.wanted:  # its caller gave up while it waited
            job.send(TimeoutError("gave up while waiting for the local model"))
            return
        started = time.perf_counter()
        usage = self._engine().generate(
            job.messages, max_tokens=job.max_tokens,
            on_text=lambda text: job.wanted and job.send(Chunk(text=text)),
        )
        log.debug("local model: %s tokens in %.2f s", usage.completion_tokens, time.perf_counter() - started)
        job.send(usage)
        job.send(_DONE)

    # -- the event-loop side -------------------------------------------------------------------
    async def stream(
        self, messages: list[ChatMessage], *, max_tokens: int, deadline: float
    ) -> AsyncGenerator[Chunk, None]:
        job = _Job(messages, max_tokens, deadline, asyncio.get_running_loop())
        self._submit(job)
        try:
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError("the local model ran out of time")
                item = await asyncio.wait_for(job.out.get(), remaining)
                if item is _DONE:
                    return
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            job.cancelled.set()  # stop generating (or skip the job) once nobody reads

    async def warm_up(self, timeout: float = 600.0) -> None:
        """Load the model in the worker now, so the first customer does not wait for it."""
        job = _Job(None, 0, time.monotonic() + timeout, asyncio.get_running_loop())
        self._submit(job)
        try:
            item = await asyncio.wait_for(job.out.get(), timeout)
        finally:
            job.cancelled.set()
        if isinstance(item, BaseException):
            raise item

    def close(self) -> None:
        """Stop the worker after the current job; the engine frees the model."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            started = self._thread is not None
        if started:
            self._jobs.put(None)
