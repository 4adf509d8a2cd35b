"""Admission control: a new call is refused at StasisStart when the app is at its ceiling, so the calls already
up keep what they need. Measures, all cheap: the calls running now, how late the event loop runs, how far behind
Asterisk the app is (the age of the new call's StasisStart), and how far behind the app Asterisk is (how long it
has lately taken to answer the app's requests).

A refused call is hung up with ``congestion`` (Q.850 34: the phone sees 503) before any webhook is requested;
refusals are counted and logged at most once a second, whatever the rate.
"""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import UTC, datetime

from models.config import LimitSettings

__all__ = ["Admission"]

log = logging.getLogger(__name__)

_TICK_S = 0.05
_LOG_EVERY_S = 1.0


class Admission:
    """Decides, per new call, whether the app takes it; :meth:`start` runs the event-loop lag probe."""

    def __init__(self, limits: LimitSettings) -> None:
        self.limits = limits
        self.refused = 0  # since start
        self.lag_ms = 0.0  # the probe's last reading, decaying
        self._unlogged = 0
        self._last_log = 0.0
        self._probe: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self.limits.max_loop_lag_ms > 0 and self._probe is None:
            self._probe = asyncio.ensure_future(self._measure())

    async def stop(self) -> None:
        if self._probe is not None:
            self._probe.cancel()
            await asyncio.gather(self._probe, return_exceptions=True)
            self._probe = None

    def admit(self, calls_up: int, timestamp: str = "", answer_ms: float = 0.0) -> bool:
        """True if a new call may start now, with ``calls_up`` calls running, its StasisStart stamped
        ``timestamp`` by Asterisk and Asterisk answering requests in ``answer_ms`` lately; else counts and maybe
        logs."""
        why = None
        age_ms = _age_ms(timestamp) if self.limits.max_event_age_ms and timestamp else 0.0
        if calls_up >= self.limits.max_calls:
            why = f"{calls_up} calls up (max_calls {self.limits.max_calls})"
        elif age_ms > self.limits.max_event_age_ms:
            why = f"the app is {age_ms:.0f} ms behind Asterisk (max_event_age_ms {self.limits.max_event_age_ms:.0f})"
        elif self.limits.max_answer_ms and answer_ms > self.limits.max_answer_ms:
            why = (
                f"Asterisk takes {answer_ms:.0f} ms to answer requests (max_answer_ms {self.limits.max_answer_ms:.0f})"
            )
        elif self.limits.max_loop_lag_ms and self.lag_ms > self.limits.max_loop_lag_ms:
            why = f"event loop {self.lag_ms:.0f} ms late (max_loop_lag_ms {self.limits.max_loop_lag_ms:.0f})"
        if why is None:
            return True
        self.refused += 1
        self._unlogged += 1
        now = time.monotonic()
        if now - self._last_log >= _LOG_EVERY_S:
            log.warning("overload: refused %d new call(s) with 503: %s", self._unlogged, why)
            self._unlogged, self._last_log = 0, now
        return False

    async def _measure(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            before = loop.time()
            await asyncio.sleep(_TICK_S)
            late = (loop.time() - before - _TICK_S) * 1000
            # A spike counts at once; calm returns over a few ticks, so one slow callback does not flap.
            self.lag_ms = max(late, self.lag_ms * 0.5)


def _age_ms(timestamp: str) -> float:
    """How long ago Asterisk stamped an event (``2026-12-02T21:16:58.404+0000``); 0 when it cannot tell."""
    try:
        stamped = datetime.fromisoformat(timestamp)
    except ValueError:
        return 0.0
    if stamped.tzinfo is None:
        return 0.0
    return max(0.0, (datetime.now(UTC) - stamped).total_seconds() * 1000)
