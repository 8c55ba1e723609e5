"""The bridge from the engine's threads to the asyncio loop.

The native core pushes events into a bounded queue and makes an eventfd
readable; :class:`LoopBridge` watches that fd with ``loop.add_reader`` and
drains the queue in batches on the loop thread, so every roomkit callback runs
on the loop and no engine thread ever takes the GIL.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Callable
from typing import Any

logger = logging.getLogger("roomkit_media")

#: Events taken per loop turn; more re-arm the fd for the next turn, so other
#: tasks run between batches.
BATCH = 256


def call(callback: Callable[..., Any], *args: Any) -> None:
    """Call a roomkit callback, sync or async (a coroutine becomes a task)."""
    try:
        result = callback(*args)
        if inspect.isawaitable(result):
            asyncio.ensure_future(result)
    except Exception:
        logger.exception("callback %r failed", callback)


class LoopBridge:
    """Watches a native core's wake fd on one asyncio loop."""

    def __init__(self, core: Any, handle: Callable[[tuple[Any, ...]], None]) -> None:
        self._core = core
        self._handle = handle
        self._loop: asyncio.AbstractEventLoop | None = None

    def attach(self) -> None:
        """Start watching on the running loop (once; later calls do nothing)."""
        if self._loop is not None:
            return
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(self._core.wake_fd(), self._drain)

    def detach(self) -> None:
        """Stop watching: no event is handled after this returns."""
        if self._loop is not None:
            if not self._loop.is_closed():
                self._loop.remove_reader(self._core.wake_fd())
            self._loop = None

    def _drain(self) -> None:
        for event in self._core.drain(BATCH):
            if self._loop is None:  # detached by a callback of this batch
                return
            try:
                self._handle(event)
            except Exception:
                logger.exception("handling %s event failed", event[0])
