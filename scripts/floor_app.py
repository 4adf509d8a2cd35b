"""The least any Python ARI app can spend on the seed transfer: ``scripts/bench-load --mode floor`` runs it.

Not a product: a yardstick. It asks Asterisk for exactly what stasis-rcml asks on the seed flow (the same event
filter, the same 15 REST requests over the events websocket, in the same order, on the same aiohttp + uvloop
stack) and does nothing else: no RCML, no call model, no pydantic, no logging, no admission, no error handling,
each request sent without waiting for its answer (Asterisk runs a websocket's requests in order). The app's CPU
per transfer minus this one's is what the engine costs; Asterisk's CPU with this one is what the requests and
events alone cost Asterisk, whatever an app does with them.

The flow it hard-codes (the sandbox's examples/config.toml numbers): Alice's call to 1001 rings PJSIP/bob in a
mixing bridge; Bob's REFER to 1002 rings PJSIP/carol into the same bridge; Alice's hangup ends it.

    .venv/bin/python scripts/floor_app.py [--url ws://127.0.0.1:8088] [--user asterisk] [--password asterisk]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import signal
import sys
import uuid
from typing import Any

import aiohttp
import uvloop

from stasis_app.ari.rest import event_filter_body

APP = "rcml"
FIRST_NOTIFY_S = 0.05  # as stasis_app.transfer: Asterisk 22.10.1 crashes on a sooner transfer_progress


class Floor:
    """One dict per call, keyed by each of its channel ids; every event handled in place."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.ids = itertools.count(1)
        self.calls: dict[str, dict[str, Any]] = {}
        self.loop = asyncio.get_running_loop()
        self.sends: set[asyncio.Task[None]] = set()

    def send(self, method: str, uri: str, query: dict[str, str] | None = None, body: str | None = None) -> None:
        msg: dict[str, Any] = {"type": "RESTRequest", "request_id": str(next(self.ids)), "method": method, "uri": uri}
        if query:
            msg["query_strings"] = [{"name": k, "value": v} for k, v in query.items()]
        if body:
            msg["content_type"] = "application/json"
            msg["message_body"] = body
        task = self.loop.create_task(self.ws.send_str(json.dumps(msg)))
        self.sends.add(task)
        task.add_done_callback(self.sends.discard)

    def on_event(self, event: dict[str, Any]) -> None:
        kind = event["type"]
        if kind == "StasisStart":
            self._started(event["channel"], event["args"])
        elif kind == "ChannelTransfer":
            self._refer(event["referred_by"]["source_channel"]["id"])
        elif kind == "StasisEnd":
            channel_id = event["channel"]["id"]
            call = self.calls.pop(channel_id, None)
            if call is not None and channel_id == call["alice"]:
                if "carol" in call:
                    self.send("DELETE", f"channels/{call['carol']}", {"reason": "normal"})
                self.send("DELETE", f"bridges/{call['bridge']}")
        elif kind == "ChannelDestroyed":
            self.calls.pop(event["channel"]["id"], None)

    def _started(self, channel: dict[str, Any], args: list[str]) -> None:
        channel_id = channel["id"]
        if not args:  # Alice
            call = {"alice": channel_id, "bridge": uuid.uuid4().hex, "bob": uuid.uuid4().hex}
            call["caller_id"] = '"{name}" <{number}>'.format(**channel["caller"])
            self.calls[channel_id] = self.calls[call["bob"]] = call
            self.send("POST", "channels", self._originate("PJSIP/bob", call["bob"], call))
            self.send("POST", f"bridges/{call['bridge']}", {"type": "mixing", "name": "rcml-1001"})
            self.send("POST", f"channels/{channel_id}/ring")
            return
        call = self.calls.get(channel_id)
        if call is None:
            return
        bridge = f"bridges/{call['bridge']}"
        if channel_id == call["bob"]:
            self.send("POST", f"channels/{call['alice']}/answer")
            self.send("POST", f"{bridge}/addChannel", {"channel": f"{call['alice']},{channel_id}"})
        elif channel_id == call.get("carol"):
            self.send("POST", f"{bridge}/addChannel", {"channel": channel_id})
            self.send("DELETE", f"channels/{call['alice']}/ring")
            self.send("POST", f"channels/{call['bob']}/transfer_progress", {"states": "channel_answered"})
            self.send("DELETE", f"channels/{call['bob']}", {"reason": "normal"})

    def _refer(self, bob: str) -> None:
        call = self.calls.get(bob)
        if call is None or "carol" in call:
            return  # the echo of a transfer_progress
        call["carol"] = uuid.uuid4().hex
        self.calls[call["carol"]] = call
        self.send("POST", "channels", self._originate("PJSIP/carol", call["carol"], call))
        self.send("POST", f"channels/{call['alice']}/ring")
        self.send("POST", f"bridges/{call['bridge']}/removeChannel", {"channel": bob})
        query = {"states": "channel_progress"}
        self.loop.call_later(FIRST_NOTIFY_S, self.send, "POST", f"channels/{bob}/transfer_progress", query)

    @staticmethod
    def _originate(endpoint: str, channel_id: str, call: dict[str, Any]) -> dict[str, str]:
        return {
            "endpoint": endpoint, "app": APP, "appArgs": "dial", "channelId": channel_id,
            "callerId": call["caller_id"], "timeout": "25", "originator": call["alice"],
        }  # fmt: skip


async def run(url: str, user: str, password: str) -> None:
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    async with aiohttp.ClientSession() as http:
        ws = await http.ws_connect(
            f"{url}/ari/events?app={APP}&subscribeAll=false", auth=aiohttp.BasicAuth(user, password)
        )
        floor = Floor(ws)
        floor.send("PUT", f"applications/{APP}/eventFilter", body=event_filter_body().decode())

        async def read() -> None:
            async for message in ws:
                event = json.loads(message.data)
                if event["type"] != "RESTResponse":
                    floor.on_event(event)
                elif event["status_code"] >= 300:
                    print(f"floor_app: {event['status_code']} {event.get('message_body')}", file=sys.stderr)

        reader = asyncio.create_task(read())
        await stop.wait()
        reader.cancel()
        await ws.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="ws://127.0.0.1:8088")
    parser.add_argument("--user", default="asterisk")
    parser.add_argument("--password", default="asterisk")
    args = parser.parse_args()
    uvloop.run(run(args.url, args.user, args.password))


if __name__ == "__main__":
    main()
