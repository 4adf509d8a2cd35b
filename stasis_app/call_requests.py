"""What a call asks of the customer's application: documents and status callbacks, with the call's parameters.

:class:`CallRequests` is that half of :class:`stasis_app.session.CallSession`: every request carries the standard
parameters of the call (as Restcomm sends them), and a call runs at most :data:`MAX_DOCUMENTS` documents.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Protocol

from models.config import NumberConfig, Settings
from models.rcml import Document, HttpMethod
from stasis_app.callbacks import Callbacks
from stasis_app.errors import StasisRcmlError, WebhookError
from stasis_app.legs import CallLeg, LegRole
from stasis_app.webhook import resolve_url

__all__ = ["API_VERSION", "MAX_DOCUMENTS", "CallRequests", "DocumentBudgetSpent", "Requester"]

API_VERSION = "2012-04-24"

# Documents one call may run (its first, then each Redirect, Dial action or Refer app): an app that redirects
# to itself, or re-dials an undialable number from its action forever, ends here instead of spinning.
MAX_DOCUMENTS = 100


class DocumentBudgetSpent(StasisRcmlError):
    """The call asked for more documents than :data:`MAX_DOCUMENTS`."""


class Requester(Protocol):
    """The one way to request an application URL (Voice URL, Refer URL, Dial action, Redirect)."""

    async def fetch(
        self, url: str, method: HttpMethod, params: Mapping[str, str], *, base: str | None = None
    ) -> Document: ...

    async def fetch_voice(self, number: NumberConfig, params: Mapping[str, str]) -> Document:
        """A new call's first document: the number's Voice URL, or its Voice Fallback URL when that fails."""

    async def notify(self, url: str, method: HttpMethod, params: Mapping[str, str], *, base: str | None = None) -> None:
        """Request a status callback URL and ignore its answer; never raises (a failure is one log line)."""


class RequestHost(Protocol):
    """What the requests of a call need of the engine."""

    settings: Settings
    webhooks: Requester
    callbacks: Callbacks


class CallRequests:
    """Requests on behalf of ``self.leg``'s call; a subclass provides the attributes below."""

    leg: CallLeg
    host: RequestHost
    _number: NumberConfig
    documents: int
    document_source: str

    def params(self, leg: CallLeg | None = None) -> dict[str, str]:
        """The standard request parameters of a leg's call, as Restcomm sends them."""
        leg = leg or self.leg
        return {
            "CallSid": leg.call_sid,
            "AccountSid": self.host.settings.webhooks.account_sid,
            "From": leg.party.from_,
            "To": leg.party.to,
            "CallStatus": leg.call_status(),
            "ApiVersion": API_VERSION,
            "Direction": leg.role.value,
            "CallerName": leg.party.caller_name,
            "ForwardedFrom": leg.party.forwarded_from,
        }

    async def fetch(self, url: str, method: HttpMethod, extra: Mapping[str, str] | None = None) -> Document:
        if self.documents >= MAX_DOCUMENTS:
            raise DocumentBudgetSpent(f"number {self._number.number}: {self.documents} documents in one call")
        params = self.params() | dict(extra or {})
        return await self.host.webhooks.fetch(url, method, params, base=self.document_source or None)

    def notify(self, url: str, method: HttpMethod, extra: Mapping[str, str]) -> None:
        self.host.callbacks.post(url, method, self.params() | dict(extra), base=self.document_source or None)

    def absolute(self, url: str) -> str:
        try:
            return resolve_url(url, self.document_source or None)
        except WebhookError:
            return url  # requested as written: it fails then, in one line

    def post(self, url: str, method: HttpMethod, extra: Mapping[str, str]) -> None:
        self.notify(self.absolute(url), method, extra)

    def _call_ended(self) -> None:
        """The number's StatusCallback, for a call that came to it (not a leg a transfer took over)."""
        url = self._number.status_callback
        if url is None or self.leg.role is not LegRole.INBOUND:
            return
        answered = self.leg.answered_at
        duration = round(time.monotonic() - answered) if answered is not None else 0
        params = self.params() | {"CallDuration": str(duration)}
        self.host.callbacks.post(url, self._number.status_callback_method, params)
