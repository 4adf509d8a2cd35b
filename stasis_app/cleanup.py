"""Deletes that are not forgotten: the engine's view of Asterisk, whose hangups and bridge destroys are retried.

Every other call passes straight through. A ``DELETE /channels/{id}`` or ``DELETE /bridges/{id}`` that fails for
any reason but :class:`~stasis_app.errors.CallGone` (a 500, a timeout, the socket down) still raises to its
caller as before (who logs it and moves on), and is retried in the background with backoff until Asterisk
answers it or says the channel or bridge is gone. After the last retry the thing is left to the periodic
reconcile (:mod:`stasis_app.reconcile`), which finds it by listing what Asterisk holds.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from stasis_app.ari.protocol import AsteriskApi, HangupReason
from stasis_app.errors import AriError, CallGone

__all__ = ["RETRY_DELAYS", "RetriedDeletes"]

log = logging.getLogger(__name__)

RETRY_DELAYS = (0.5, 1.0, 2.0, 4.0, 8.0)
"""Seconds before each retry of a failed delete: five more tries within about 15 s."""


class RetriedDeletes:
    """An :class:`AsteriskApi` over ``ari`` whose failed hangups and bridge destroys are retried (see the module)."""

    def __init__(self, ari: AsteriskApi, delays: tuple[float, ...] = RETRY_DELAYS) -> None:
        self.inner = ari
        self.delays = delays
        self._retries: dict[str, asyncio.Task[None]] = {}  # "channel:ID" / "bridge:ID" -> its retry task
        self._stopped = False

    @property
    def pending(self) -> list[str]:
        """What is being retried now (``channel:ID``, ``bridge:ID``)."""
        return sorted(key for key, task in self._retries.items() if not task.done())

    async def stop(self) -> None:
        """Cancel the retries in flight; later failures are no longer retried (the app is stopping)."""
        self._stopped = True
        tasks = list(self._retries.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._retries.clear()

    # -- the two retried calls ----------------------------------------------------------------------------------

    async def hangup(self, channel_id: str, reason: HangupReason = "normal") -> None:
        await self._retried(f"channel:{channel_id}", lambda: self.inner.hangup(channel_id, reason))

    async def destroy_bridge(self, bridge_id: str) -> None:
        await self._retried(f"bridge:{bridge_id}", lambda: self.inner.destroy_bridge(bridge_id))

    async def _retried(self, key: str, delete: Callable[[], Awaitable[None]]) -> None:
        try:
            await delete()
        except CallGone:
            raise
        except AriError as exc:
            if not self._stopped and key not in self.pending:
                task = asyncio.ensure_future(self._retry(key, delete, exc))
                task.set_name(f"retry-{key}")
                self._retries[key] = task
                task.add_done_callback(functools.partial(self._retried_done, key))
            raise

    def _retried_done(self, key: str, task: asyncio.Task[None]) -> None:
        if self._retries.get(key) is task:
            del self._retries[key]

    async def _retry(self, key: str, delete: Callable[[], Awaitable[None]], first: AriError) -> None:
        error = first
        for attempt, delay in enumerate(self.delays, start=2):
            await asyncio.sleep(delay)
            try:
                await delete()
            except CallGone:
                log.info("%s gone before retry %d", key, attempt - 1)
                return
            except AriError as exc:
                error = exc
                continue
            log.info("%s deleted at attempt %d (first failure: %s)", key, attempt, first)
            return
        log.warning(
            "could not delete %s in %d attempts (last: %s); the periodic reconcile will try again",
            key,
            len(self.delays) + 1,
            error,
        )

    # -- everything else passes through -----------------------------------------------------------------------

    def __getattr__(self, name: str) -> Any:
        # Every other typed call goes to Asterisk as it is: only deletes are worth retrying.
        return getattr(self.inner, name)
