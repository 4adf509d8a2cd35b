"""Fire-and-forget application requests (status callbacks): each in a task of its own, so a slow or failing
application never delays or breaks a call. Their answer is not used: it need not be RCML."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any, Protocol

from models.rcml import HttpMethod

__all__ = ["Callbacks", "Fetcher"]

log = logging.getLogger(__name__)


class Fetcher(Protocol):
    """The engine's requester (:class:`stasis_app.webhook.Webhooks`)."""

    async def notify(
        self, url: str, method: HttpMethod, params: Mapping[str, str], *, base: str | None = None
    ) -> None: ...


class Callbacks:
    """Posts status callbacks in the background; :meth:`drain` waits for those in flight (at shutdown)."""

    def __init__(self, fetcher: Fetcher) -> None:
        self._fetcher = fetcher
        self._tasks: set[asyncio.Task[Any]] = set()

    def post(self, url: str, method: HttpMethod, params: Mapping[str, str], *, base: str | None = None) -> None:
        """Request ``url`` with ``params`` in a task of its own; a failure is one INFO line, never an error."""
        task = asyncio.ensure_future(self._post(url, method, dict(params), base))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _post(self, url: str, method: HttpMethod, params: Mapping[str, str], base: str | None) -> None:
        # The requester's notify() never raises: a failure is its one log line, and the answer is not read.
        await self._fetcher.notify(url, method, params, base=base)

    async def drain(self, timeout: float = 5.0) -> None:
        """Wait (at most ``timeout`` seconds) for the callbacks in flight, each bounded by the webhook deadline."""
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=timeout)
