"""``<Redirect method="POST">url</Redirect>``: continue with the document at another URL."""

from __future__ import annotations

from models.rcml import Redirect
from stasis_app.context import CallContext, Needs
from stasis_app.outcomes import Outcome, Replace


class RedirectVerb:
    needs = Needs.NOTHING

    async def execute(self, call: CallContext, verb: Redirect) -> Outcome:
        return Replace(await call.fetch(verb.url, verb.method))
