"""One API request in flight: its works in the scheduler and the asyncio queue their events arrive on.

The scheduler's thread calls `sink` (never blocking: the event is handed to the event loop); the request's
handler iterates `events()` until every choice is done or one failed. `cancel` (a client that went away, a
failed sibling choice) drops the request's remaining works at the scheduler's next step boundary. The queue
is unbounded, but the scheduler sends at most one event per step and choice, so it holds at most about
`max_tokens` events per choice: a slow reader's output is buffered here, and no reader can stall the batch.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from decodekit.serve.scheduler import Done, Event, Failed, Work


class Job:
    def __init__(self, loop: asyncio.AbstractEventLoop, choices: int) -> None:
        self.loop = loop
        self.choices = choices
        self.queue: asyncio.Queue[Event] = asyncio.Queue()
        self.works: list[Work] = []
        self._open = choices

    def sink(self, event: Event) -> None:
        try:
            self.loop.call_soon_threadsafe(self.queue.put_nowait, event)
        except RuntimeError:  # the event loop is closed: the server is gone, nobody reads this
            pass

    async def events(self) -> AsyncIterator[Event]:
        while self._open:
            event = await self.queue.get()
            if isinstance(event, (Done, Failed)):
                self._open -= 1
            yield event
            if isinstance(event, Failed):
                self.cancel()
                return

    def cancel(self) -> None:
        for work in self.works:
            work.cancel()

    @property
    def finished(self) -> bool:
        return self._open == 0
