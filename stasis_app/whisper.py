"""A Dial noun's ``url`` (Twilio's whisper): RCML run on the callee's leg once it answers, before it is bridged
with the caller.

It runs in a :class:`~stasis_app.session.CallSession` of its own on the callee's leg, so its requests carry the
callee's call (``CallSid``, ``Direction=outbound-dial``, ``CallStatus=in-progress``) and its media verbs play to
the callee. It may ``<Play>``, ``<Say>``, ``<Pause>``, ``<Gather>`` (whose ``action`` document goes on here) and
``<Redirect>``; any other verb is skipped with one WARNING. As on Twilio, the document ending connects the
call, and a ``<Hangup/>`` in it means the callee did not take it: the Dial goes on as ``no-answer``. A whisper
URL that fails is one WARNING and the Dial goes on as ``failed``. The session is never run as a call: the leg
stays the Dial's, and so does hanging it up.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from models.rcml import Document, Gather, Hangup, HttpMethod, Pause, Play, Redirect, Say
from stasis_app.call_requests import MAX_DOCUMENTS, DocumentBudgetSpent
from stasis_app.errors import CallGone, MarkupError, WebhookError
from stasis_app.legs import CallLeg
from stasis_app.outcomes import Handover, HangupCall, Next, Replace
from stasis_app.session import CallSession, SessionHost
from stasis_app.verbs import EXECUTORS

__all__ = ["run_whisper"]

log = logging.getLogger(__name__)

_ALLOWED = (Play, Say, Pause, Gather, Redirect, Hangup)


async def run_whisper(host: SessionHost, dialer: CallSession, leg: CallLeg, url: str, method: HttpMethod) -> str | None:
    """Run the whisper at ``url`` on ``leg`` (answered, not bridged yet); None: connect it, else the
    ``DialCallStatus`` the Dial goes on with. Gives up (``failed``) when either party hangs up meanwhile."""
    callee = CallSession(host, leg, dialer.number)  # registers the leg to it while it runs
    callee.document_source = dialer.document_source  # a relative url is relative to the Dial's document
    number = dialer.number.number
    running = asyncio.ensure_future(_run(callee, url, method))
    try:
        waits: set[asyncio.Future[Any]] = {running, leg.ended, dialer.leg.ended}
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        if not running.done():
            return "failed"  # somebody hung up: the Dial sees who
        return running.result()
    except (WebhookError, MarkupError, DocumentBudgetSpent) as exc:
        log.warning("number %s: whisper for %s: %s; the Dial goes on as failed", number, leg.name, exc)
        return "failed"
    except CallGone:
        return "failed"
    finally:
        if not running.done():
            running.cancel()
            await asyncio.gather(running, return_exceptions=True)
        if not leg.is_gone:
            host.register(leg, dialer)  # the leg is the Dial's again (a gone one is forgotten already)


async def _run(callee: CallSession, url: str, method: HttpMethod) -> str | None:
    document: Document = await callee.fetch(url, method)
    number = callee.number.number
    while True:
        callee.documents += 1
        callee.document_source = document.source
        replaced = None
        for verb in document.verbs:
            if not isinstance(verb, _ALLOWED):
                log.warning("number %s: <%s> in a whisper skipped (Play, Say, Pause, Gather only)", number, verb.verb)
                continue
            match await EXECUTORS[type(verb)].execute(callee, verb):
                case Next():
                    continue
                case Replace(document=replacement):
                    replaced = replacement
                case HangupCall() | Handover():
                    log.info("number %s: the whisper hung up: %s did not take the call", number, callee.leg.name)
                    return "no-answer"
            break
        if replaced is None:
            return None
        if callee.documents >= MAX_DOCUMENTS:
            raise DocumentBudgetSpent(f"number {number}: {callee.documents} documents in one whisper")
        document = replaced
