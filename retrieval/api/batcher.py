"""Dynamic micro-batching: concurrent single-text searches become one encoder call and one
index search."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Any


class MicroBatcher:
    """Queues requests from concurrent callers and processes them together.

    A worker takes the first waiting request, then gathers more for at most ``max_wait_s`` (or
    until ``max_batch``), and runs ``process(batch) -> results`` (one result a request, in order)
    in a thread. Requests that arrive while a batch is being processed are taken by the next one
    at once, so under load batches grow by themselves. The wait for more is spent only while
    requests come concurrently (the last batch had company): a lone client's request runs at
    once (measured: BENCHMARKS.md, "HTTP search"). A batch that fails is run again one request at
    a time, so an error reaches only the request that caused it.
    """

    def __init__(self, process: Callable[[Sequence[Any]], Sequence[Any]], max_batch: int = 64,
                 max_wait_s: float = 0.002) -> None:
        self._process, self.max_batch, self.max_wait_s = process, max_batch, max_wait_s
        self._queue: asyncio.Queue[tuple[Any, asyncio.Future]] | None = None
        self._worker: asyncio.Task | None = None
        self.batches = 0
        self.requests = 0
        self._last_size = 0

    async def start(self) -> None:
        """Start the worker on the running loop."""
        self._queue = asyncio.Queue()
        self._worker = asyncio.create_task(self._run())

    async def stop(self) -> None:
        """Stop the worker."""
        if self._worker:
            self._worker.cancel()
            await asyncio.gather(self._worker, return_exceptions=True)

    async def submit(self, request: Any) -> Any:
        """The result of one request, processed together with whatever else is waiting."""
        future: asyncio.Future = asyncio.get_running_loop().create_future()
        await self._queue.put((request, future))
        return await future

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = [await self._queue.get()]
            deadline = loop.time() + (self.max_wait_s if self._last_size > 1 else 0.0)
            while len(batch) < self.max_batch:
                if not self._queue.empty():
                    batch.append(self._queue.get_nowait())
                    continue
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                try:
                    batch.append(await asyncio.wait_for(self._queue.get(), remaining))
                except TimeoutError:
                    break
            await self._run_batch(batch)

    async def _run_batch(self, batch: list[tuple[Any, asyncio.Future]]) -> None:
        try:
            results = await asyncio.to_thread(self._process, [request for request, _ in batch])
        except Exception:  # one bad request must not fail the others: run each on its own
            if len(batch) == 1:
                results = None
            else:
                for one in batch:
                    await self._run_batch([one])
                return
        if results is None:
            try:
                results = await asyncio.to_thread(self._process, [batch[0][0]])
            except Exception as exc:  # its own error, to its own caller; the worker lives on
                if not batch[0][1].done():
                    batch[0][1].set_exception(exc)
                return
        self.batches += 1
        self.requests += len(batch)
        self._last_size = len(batch)
        for (_, future), result in zip(batch, results):
            if not future.done():
                future.set_result(result)
