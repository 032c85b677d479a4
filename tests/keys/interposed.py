"""An engine that delegates to a real one, where a test can pause or replace any method.

For what a real backend cannot be made to do on cue: stop in the middle of a call while
another call commits (the races), or answer what a broken backend would.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any

from medrelay.services.keys.engine import TransitEngine

Hook = Callable[..., Awaitable[Any]]


class InterposedEngine:
    """TransitEngine over `inner`: `before[method]` runs first, `instead[method]` replaces it."""

    def __init__(self, inner: TransitEngine) -> None:
        self.inner = inner
        self.backend_name = inner.backend_name
        self.before: dict[str, Hook] = {}
        self.instead: dict[str, Hook] = {}

    def __getattr__(self, name: str) -> Any:
        method = getattr(self.inner, name)
        if not callable(method):
            return method

        async def call(*args: Any, **kwargs: Any) -> Any:
            if name in self.instead:
                return await self.instead[name](*args, **kwargs)
            if name in self.before:
                await self.before[name](*args, **kwargs)
            return await method(*args, **kwargs)

        return call


class Pause:
    """A hook that stops the first call at the hook until `release()`; `entered` is set once
    that call has arrived. Later calls pass straight through."""

    def __init__(self) -> None:
        self.entered = asyncio.Event()
        self._go = asyncio.Event()
        self._used = False

    async def __call__(self, *args: Any, **kwargs: Any) -> None:
        if self._used:
            return
        self._used = True
        self.entered.set()
        await self._go.wait()

    async def wait_entered(self) -> None:
        async with asyncio.timeout(10.0):
            await self.entered.wait()

    def release(self) -> None:
        self._go.set()


class Gather:
    """A hook that holds every call until `count` calls have arrived (or `timeout` passed),
    so that they all go on together."""

    def __init__(self, count: int, timeout: float = 10.0) -> None:
        self._count = count
        self._timeout = timeout
        self._arrived = 0
        self._all = asyncio.Event()

    async def __call__(self, *args: Any, **kwargs: Any) -> None:
        self._arrived += 1
        if self._arrived >= self._count:
            self._all.set()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._all.wait(), self._timeout)
