"""``<Gather>``: collect the caller's key presses (DTMF) while its nested media verbs play, Twilio's way.

The nested verbs (``<Play>``, ``<Pause>``, and ``<Say>`` once it exists) run through their own executors, taken
from the verb table the Gather is given, so a new media verb nests without any change here. The first key
interrupts them: their task is cancelled, and a cancelled playback is stopped (``CallContext.play``). Then each
key waits at most ``timeout`` seconds for the next one. Input ends on ``finishOnKey`` (not part of ``Digits``),
on ``numDigits`` keys, or on a timeout after some keys; it goes to ``action`` (by default the document's own
URL) as ``Digits``, and that document replaces the rest. No input at all: the next verb runs.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any

from models.ari import ChannelDtmfReceived
from models.rcml import Gather, Verb
from stasis_app.context import CallContext, Needs, VerbExecutor
from stasis_app.legs import LegEvents
from stasis_app.outcomes import HangupCall, Next, Outcome, Replace

__all__ = ["GatherVerb"]

log = logging.getLogger(__name__)


class _Input:
    """The keys of one Gather, and whether they are complete."""

    def __init__(self, verb: Gather) -> None:
        self.verb = verb
        self.digits = ""
        self.finished = False

    def key(self, digit: str) -> None:
        if self.verb.finish_on_key and digit == self.verb.finish_on_key:
            self.finished = True
            return
        self.digits += digit
        if self.verb.num_digits is not None and len(self.digits) >= self.verb.num_digits:
            self.finished = True


class GatherVerb:
    """Runs ``<Gather>``; ``nested`` maps each media verb model to the executor that plays it."""

    needs = Needs.ANSWERED

    def __init__(self, nested: Mapping[type[Verb], VerbExecutor[Any]]) -> None:
        self._nested = nested

    async def execute(self, call: CallContext, verb: Gather) -> Outcome:
        media = call.caller.media_leg
        if media is None:
            log.warning("number %s: <Gather> skipped: this call has no channel of its own", call.number.number)
            return Next()
        keys = _Input(verb)
        with media.listen() as events:
            if not await self._collect(call, verb, events, keys):
                return HangupCall()
        if not keys.digits:
            log.info("number %s: <Gather> got no input; next verb", call.number.number)
            return Next()
        # The digits themselves are not logged: they may be a PIN or a card number.
        log.info("number %s: <Gather> got %d digit(s)", call.number.number, len(keys.digits))
        url = verb.action or call.document_url
        return Replace(await call.fetch(url, verb.method, {"Digits": keys.digits}))

    async def _collect(self, call: CallContext, verb: Gather, events: LegEvents, keys: _Input) -> bool:
        """Play the prompt and gather keys into ``keys``; False if the caller hung up."""
        prompt = asyncio.ensure_future(self._prompt(call, verb))
        try:
            pressed = await events.next(ChannelDtmfReceived, until=prompt)
            if pressed is not None:
                prompt.cancel()  # the first key interrupts the prompt
                keys.key(pressed.digit)
            elif not prompt.done() or not prompt.result():
                return False  # the caller hung up during the prompt
            while not keys.finished:
                pressed = await events.next(ChannelDtmfReceived, timeout=verb.timeout)
                if pressed is None:
                    return not call.caller.is_gone  # timed out: what was typed so far counts
                keys.key(pressed.digit)
            return True
        finally:
            if not prompt.done():
                prompt.cancel()
            await asyncio.gather(prompt, return_exceptions=True)  # its playback stopped before we go on

    async def _prompt(self, call: CallContext, verb: Gather) -> bool:
        """The nested verbs in order; False if the caller hung up."""
        for nested in verb.verbs:
            outcome = await self._nested[type(nested)].execute(call, nested)
            if isinstance(outcome, HangupCall) or call.caller.is_gone:
                return False
        return True
