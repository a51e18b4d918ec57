"""Thread pools with a bounded queue: inference runs off the event loop, and a full queue says so.

Every model call (embedding, reranking, an LLM answer) and every ingest blocks for tens of milliseconds
to minutes, so the server hands them to a :class:`WorkerPool`. A pool runs ``workers`` calls at once and
lets at most ``queue`` more wait; one more is refused at once with :class:`Busy` (HTTP 503 with
``Retry-After``) instead of piling up behind the others until every client times out.

A slot is given back when the call finishes in its thread, not when the request ends: a client that
disconnects mid-answer leaves a thread running, and that thread still counts. A call that can stop early (an
ingest: :meth:`WorkerPool.run_cancellable`) is told to when its client hangs up.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Awaitable, Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any


def default_workers() -> int:
    """One inference thread per core, 2 to 8: the models use several cores per call already."""
    return max(2, min(8, os.cpu_count() or 2))


class Busy(RuntimeError):
    """The pool is full: the caller should try again in ``retry_after`` seconds."""

    def __init__(self, pool: str, retry_after: int) -> None:
        super().__init__(f"the server is busy ({pool} queue full); try again in {retry_after} s")
        self.retry_after = retry_after


class WorkerPool:
    def __init__(self, name: str, workers: int, queue: int, retry_after_s: int = 2) -> None:
        if workers < 1 or queue < 0:
            raise ValueError("a pool needs at least one worker and a queue of zero or more")
        self.name = name
        self.workers = workers
        self.capacity = workers + queue
        self.retry_after_s = retry_after_s
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix=f"api-{name}")
        self._lock = threading.Lock()
        self._active = 0

    @property
    def active(self) -> int:
        """Calls running or waiting."""
        return self._active

    def _release(self, _: Future) -> None:
        with self._lock:
            self._active -= 1

    def check(self) -> None:
        """Raise :class:`Busy` when the pool and its queue are full now: before a request's body is read."""
        if self._active >= self.capacity:
            raise Busy(self.name, self.retry_after_s)

    def submit(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Future:
        """Start ``fn`` in a worker thread, or raise :class:`Busy` when the pool and its queue are full."""
        with self._lock:
            self.check()
            self._active += 1
        try:
            future = self._executor.submit(fn, *args, **kwargs)
        except BaseException:
            with self._lock:
                self._active -= 1
            raise
        future.add_done_callback(self._release)
        return future

    async def run(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """``fn(*args, **kwargs)`` in a worker thread, awaited."""
        return await asyncio.wrap_future(self.submit(fn, *args, **kwargs))

    async def run_cancellable(self, gone: Callable[[], Awaitable[bool]], fn: Callable[..., Any], *args: Any,
                              poll_s: float = 0.5) -> Any:
        """``fn(*args, cancel=event)`` in a worker thread, awaited; ``gone()`` (the client hung up) is asked every
        ``poll_s`` seconds meanwhile, and when it says so the event is set, so that ``fn`` stops early (its
        slot comes back then) instead of working on for nobody."""
        cancel = threading.Event()
        future = asyncio.wrap_future(self.submit(fn, *args, cancel=cancel))
        while not cancel.is_set():
            done, _ = await asyncio.wait({future}, timeout=poll_s)
            if done:
                break
            if await gone():
                cancel.set()
        return await future

    def status(self) -> dict:
        return {"workers": self.workers, "capacity": self.capacity, "active": self._active}

    def shutdown(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
