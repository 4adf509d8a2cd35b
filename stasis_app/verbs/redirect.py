"""``<Redirect method="POST">url</Redirect>``: continue with the document at another URL."""

from __future__ import annotations

from typing import TYPE_CHECKING

from models.rcml import Redirect
from stasis_app.verbs.base import Outcome, Replace

if TYPE_CHECKING:
    from stasis_app.session import CallSession


class RedirectVerb:
    async def execute(self, call: CallSession, verb: Redirect) -> Outcome:
        return Replace(await call.fetch(verb.url, verb.method))
