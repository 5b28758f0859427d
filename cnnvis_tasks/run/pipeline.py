"""Keeping a job's device busy: images decoded ahead, rows written behind, and a job's
cores split between the compute and that work.

Decoding (Pillow), rendering (NumPy) and PNG encoding (zlib) release the GIL, so
threads overlap them with the compute of the next batch in the same process; no
pickling of pictures or results, as processes would need.  Each pool here is
bounded, so a job's memory stays flat in its number of images, and with 0 workers
everything runs at once in the caller: the serial job, row for row the same.
"""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

# From this many cores, a CPU job gives a second worker to decoding and writing.
_SECOND_CPU_WORKER = 8


def split_cores(threads: int, device_type: str) -> tuple[int, int]:
    """(torch threads, I/O workers) of a job given ``threads`` cores on ``device_type``.

    On a CPU torch keeps every core and one I/O worker (two from 8 cores) overlaps
    it: torch's sums split over its threads, so fewer threads would change the last
    bits of the results of a given ``--threads`` (and at times a pixel), and on 2
    cores 2 + 1 measured no slower than 1 + 1 for Grad-CAM (bench/RESULTS.md,
    "Chunk job").  On a GPU torch needs one thread to drive the device, and every
    core of the job decodes, renders and writes.
    """
    threads = max(1, threads)
    if device_type == "cpu":
        return threads, 1 if threads < _SECOND_CPU_WORKER else 2
    return 1, threads


def in_order(
    function: Callable[[Any], Any], items: Iterable[Any], workers: int, ahead: int
) -> Iterator[tuple[Any, Exception | None]]:
    """``(function(item), None)`` or ``(None, the exception it raised)`` for each item, in
    order; ``workers`` threads work on at most ``ahead`` items beyond the one the caller
    is at (0 workers: each item when the caller asks for it).  Close the iterator (or
    exhaust it) to stop the threads."""
    if workers <= 0:
        for item in items:
            try:
                yield function(item), None
            except Exception as error:  # noqa: BLE001  (handed to the caller, in order)
                yield None, error
        return
    items = iter(items)
    executor = ThreadPoolExecutor(workers, thread_name_prefix="cnnvis-read")
    pending: deque[Future] = deque(executor.submit(function, item) for item in itertools.islice(items, max(1, ahead)))
    try:
        while pending:
            future = pending.popleft()
            following = next(items, _END)
            if following is not _END:
                pending.append(executor.submit(function, following))
            error = future.exception()
            yield (None, error) if error is not None else (future.result(), None)
    finally:
        for future in pending:
            future.cancel()
        executor.shutdown(wait=True, cancel_futures=True)


_END = object()


class Behind:
    """Tasks run on ``workers`` threads (0: at once, in the caller) while the caller goes
    on; their outcomes are taken back in the order they were given.  A context
    manager: leaving it (an error, an interrupt) cancels what has not started and
    waits for what has, so that no thread outlives the job."""

    def __init__(self, workers: int):
        self._executor = ThreadPoolExecutor(workers, thread_name_prefix="cnnvis-write") if workers > 0 else None
        self._pending: deque[tuple[Any, Future]] = deque()

    def __len__(self) -> int:
        return len(self._pending)

    def submit(self, key: Any, function: Callable[..., Any], *args: Any) -> None:
        """Run ``function(*args)``; its outcome comes back with ``key``."""
        if self._executor is not None:
            self._pending.append((key, self._executor.submit(function, *args)))
            return
        future: Future = Future()
        try:
            future.set_result(function(*args))
        except Exception as error:  # noqa: BLE001  (taken back in order, like a thread's)
            future.set_exception(error)
        self._pending.append((key, future))

    def finished(self, keep: int = 0) -> Iterator[tuple[Any, Any, Exception | None]]:
        """``(key, result, None)`` or ``(key, None, exception)`` of the tasks done, oldest
        first, waiting for the oldest while more than ``keep`` are pending."""
        while self._pending:
            key, future = self._pending[0]
            if len(self._pending) <= keep and not future.done():
                return
            error = future.exception()
            self._pending.popleft()
            yield (key, None, error) if error is not None else (key, future.result(), None)

    def close(self) -> None:
        """Cancel what has not started, wait for what has."""
        for _, future in self._pending:
            future.cancel()
        self._pending.clear()
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> Behind:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()
