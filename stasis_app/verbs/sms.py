"""``<Sms to="bob" from="1001" action="...">text</Sms>``: Restcomm's voice-app SMS, sent as a SIP MESSAGE.

Asterisk sends it (``PUT /endpoints/sendMessage``, res_pjsip_messaging) to ``pjsip:<to>``: a client name is the
PJSIP endpoint of that name; a ``sip:`` URI goes out as is (``pjsip:sip:bob@host``). ``to`` defaults to the
caller, ``from`` to the number called. ``SmsStatus`` is ``sent`` when Asterisk accepted the message and
``failed`` when it refused it: Asterisk reports nothing after that, so a phone that never gets it is still
``sent``. With ``action`` its RCML replaces the rest of the document (Restcomm's Sms), with ``statusCallback``
the same parameters are posted, fire and forget; with neither the next verb runs.
"""

from __future__ import annotations

import logging
import re
import secrets

from models.rcml import Sms
from stasis_app.context import CallContext, Needs
from stasis_app.errors import AriError
from stasis_app.outcomes import Next, Outcome, Replace

__all__ = ["SmsVerb", "message_target"]

log = logging.getLogger(__name__)

# A client name or number, or a SIP URI: nothing Asterisk could read as another technology or an option.
_NAME = re.compile(r"[A-Za-z0-9_.+*#-]{1,64}")
_SIP_URI = re.compile(r"sips?:[A-Za-z0-9_.+*#%-]{1,64}@[A-Za-z0-9.:\[\]-]{1,255}")


def message_target(to: str) -> str | None:
    """The ``to`` of ``sendMessage`` for an RCML ``to``; None when it is neither a name nor a plain SIP URI."""
    to = to.strip()
    if _NAME.fullmatch(to):
        return f"pjsip:{to}"
    if _SIP_URI.fullmatch(to):
        return f"pjsip:{to}"
    return None


class SmsVerb:
    needs = Needs.NOTHING  # a message needs no answered call

    async def execute(self, call: CallContext, verb: Sms) -> Outcome:
        params = call.params()
        to = verb.to or params.get("From", "")
        from_ = verb.from_ or params.get("To", "")
        sid = "SM" + secrets.token_hex(16)
        target = message_target(to)
        status = "failed"
        if target is None:
            log.warning("number %s: <Sms> to %r: not a client, number or SIP URI; not sent", call.number.number, to)
        else:
            try:
                await call.send_message(target, from_, verb.body)
                status = "sent"
                log.info("number %s: <Sms> %s to %s (%d characters)", call.number.number, sid, target, len(verb.body))
            except AriError as exc:
                log.warning("number %s: <Sms> to %s not sent: %s", call.number.number, target, exc)
        result = {"SmsSid": sid, "SmsStatus": status}
        if verb.status_callback is not None:
            call.post(verb.status_callback, "POST", result)
        if verb.action is None:
            return Next()
        return Replace(await call.fetch(verb.action, verb.method, result))
