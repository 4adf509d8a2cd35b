"""The scenario rig: the real engine and webhook requester on a fake Asterisk and a fake customer web app.

async with Rig(tmp_path) as rig:
    rig.web.xml("/1001.xml", "<Response><Dial><Client>bob</Client></Dial></Response>")
    rig.fake.phone("PJSIP/bob", answer_after=0.02)
    alice = await rig.call("alice", "1001")
    ...
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import httpx

from models.config import AriSettings, NumberConfig, RoutingSettings, Settings, WebhookSettings
from stasis_app.ari.protocol import TransportError
from stasis_app.ari.rest import AriRest
from stasis_app.cleanup import RetriedDeletes
from stasis_app.engine import Engine
from stasis_app.webhook import Webhooks
from tests.fake_asterisk import FakeAsterisk

WEB = "http://app.test"


class WebApp:
    """The customer's web app: serves RCML per path and records every request with its parameters."""

    def __init__(self) -> None:
        self.routes: dict[str, Callable[[dict[str, str]], httpx.Response]] = {}
        self.requests: list[tuple[str, str, dict[str, str]]] = []
        self.transport = httpx.MockTransport(self._handle)

    def xml(self, path: str, body: str) -> None:
        self.routes[path] = lambda _params: httpx.Response(200, text=body, headers={"Content-Type": "text/xml"})

    def status(self, path: str, code: int) -> None:
        self.routes[path] = lambda _params: httpx.Response(code, text="oops")

    def hang(self, path: str) -> None:
        def _timeout(_params: dict[str, str]) -> httpx.Response:
            raise httpx.ReadTimeout("timed out")

        self.routes[path] = _timeout

    def calls(self, path: str) -> list[dict[str, str]]:
        """The parameters of every request to ``path``, in order."""
        return [params for _method, seen, params in self.requests if seen == path]

    def paths(self) -> list[str]:
        return [path for _method, path, _params in self.requests]

    def _handle(self, request: httpx.Request) -> httpx.Response:
        params = dict(parse_qsl(request.url.query.decode(), keep_blank_values=True))
        if request.method == "POST":
            params |= dict(parse_qsl(request.content.decode(), keep_blank_values=True))
        self.requests.append((request.method, request.url.path, params))
        route = self.routes.get(request.url.path)
        if route is None:
            return httpx.Response(404, text="not found")
        return route(params)


def numbers(*entries: tuple[str, str, str | None]) -> tuple[NumberConfig, ...]:
    return tuple(
        NumberConfig(number=number, voice_url=f"{WEB}{voice}", refer_url=f"{WEB}{refer}" if refer else None)
        for number, voice, refer in entries
    )


DEFAULT_NUMBERS = numbers(("1001", "/1001.xml", "/refer.xml"), ("1002", "/1002.xml", None))


class Rig:
    def __init__(
        self,
        tmp_path: Path,
        *,
        numbers: tuple[NumberConfig, ...] = DEFAULT_NUMBERS,
        our_numbers: str = "in-process",
        reconcile_interval: float = 60.0,
    ) -> None:
        self.settings = Settings(
            ari=AriSettings(reconcile_interval=reconcile_interval),
            numbers=numbers,
            routing=RoutingSettings(apps_dir=tmp_path, our_numbers=our_numbers),
            webhooks=WebhookSettings(timeout=1.0),
            base_dir=tmp_path,
        )
        self.web = WebApp()
        self.fake = FakeAsterisk()
        self.webhooks = Webhooks(self.settings, transport=self.web.transport)
        self.engine = Engine(self.fake.api, self.webhooks, self.settings)

    async def __aenter__(self) -> Rig:
        self.fake.attach(self.engine)
        await self.fake.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.engine.close()
        await self.fake.stop()
        await self.webhooks.aclose()

    async def restart(self) -> Engine:
        """The app is killed (nothing more of it reaches Asterisk) and a new one connects to the same Asterisk."""
        old, deletes = self.engine, self.engine.ari
        old.ari = AriRest(_Dead(), self.settings.ari.app)
        tasks = list(old.sessions.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await old.reconciler.stop()
        if isinstance(deletes, RetriedDeletes):
            await deletes.stop()
        self.engine = Engine(self.fake.api, self.webhooks, self.settings)
        await self.fake.restart_app(self.engine)
        return self.engine

    async def call(self, caller: str, number: str) -> str:
        """``caller`` dials ``number``; returns the inbound channel id."""
        return await self.fake.call_in(caller, number)

    async def until(self, predicate: Callable[[], Any], timeout: float = 3.0) -> None:
        await self.fake.wait_for(lambda: bool(predicate()), timeout=timeout)

    async def idle(self, timeout: float = 5.0) -> None:
        """Wait until every call has ended and the engine has nothing left running."""
        await self.until(lambda: not self.engine.sessions and not self.engine.legs, timeout)
        await self.fake.settle()

    def assert_each_hangup_asked_once(self) -> None:
        """No channel got two DELETEs: a second one is a wasted request, or a 404 for a channel already gone."""
        deletes = [path for method, path, _params in self.fake.rest_log if method == "DELETE" and "/channels/" in path]
        assert len(deletes) == len(set(deletes)), sorted(deletes)

    def channel_named(self, prefix: str) -> str:
        """The id of the live channel whose name starts with ``prefix`` (e.g. ``PJSIP/bob``)."""
        found = [cid for cid, channel in self.fake.channels.items() if channel.name.startswith(prefix)]
        assert len(found) == 1, f"{prefix}: {found}"
        return found[0]

    def names_with(self, channel_id: str) -> set[str]:
        """Names of the channels bridged with ``channel_id``."""
        return {self.fake.name_of(cid).split("-")[0] for cid in self.fake.bridged_with(channel_id)}


class _Dead:
    """The transport of a killed process: nothing it asks reaches Asterisk."""

    ordered = False

    async def request(
        self, method: str, path: str, query: Mapping[str, str] | None = None, body: bytes | None = None
    ) -> tuple[int, bytes]:
        raise TransportError("the process is dead")

    async def aclose(self) -> None:
        pass


async def pause(seconds: float) -> None:
    await asyncio.sleep(seconds)
