"""Bounded, fixed-seed fuzzing of RCML documents run as calls, not just parsed.

Alice calls 1001; its Voice URL (and any ``next.xml`` a Dial action or Redirect asks for) serves a mutated
example document, as text or as mangled bytes. The real engine runs it on the fake Asterisk: it may dial Bob,
Carol or our own 1002, play, pause, redirect, reject, hang up, or fail to parse. Alice hangs up after a short
while if the call is still up. Whatever the document: no handler error, no ERROR line (a traceback is a bug),
every call ends, nothing is left in the fake Asterisk or in the engine.
"""

from __future__ import annotations

import asyncio
import logging
import random
import re
import time

import httpx

from tests.rig import Rig
from tests.test_rcml_fuzz import SEEDS, as_input, mutate

CASES = 800
SEED = 20261204
CONCURRENT = 40
HOLD = 0.05  # seconds Alice stays on a call that is still up

SEEDS_AS_CALLS = [
    *SEEDS,
    '<Response><Dial action="next.xml" timeout="1"><Client>bob</Client></Dial><Hangup/></Response>',
    '<Response><Dial timeLimit="1"><Number>1002</Number><Client>nobody</Client></Dial></Response>',
    '<Response><Play>tone:ring</Play><Redirect method="GET">next.xml</Redirect></Response>',
    '<Response><Dial><Sip>sip:carol@127.0.0.1</Sip></Dial><Reject reason="busy"/></Response>',
]


# Values that stay well-formed XML but are odd for the verb or noun they land in.
# fmt: off
VALUES = [
    "", "0", "-1", "1", "2", "1.5", "1e9", "9" * 400, "bob", "carol", "1002", "1001", "nosuch", "next.xml",
    "/next.xml", "app:x", "http://[::1/x", "file:///etc/passwd", "GET", "post", "busy", "rejected", "true",
    "sip:carol@127.0.0.1", "a&amp;b", "PJSIP/carol", "1002,30", "sound:beep", "tone:ring", "\u00e9", " ",
]
VERBS = [
    "<Hangup/>", "<Reject/>", '<Pause length="1"/>', "<Play>beep</Play>", "<Redirect>next.xml</Redirect>",
    "<Dial><Client>bob</Client></Dial>", "<Dial><Number>1002</Number></Dial>", '<Dial timeout="1"></Dial>',
    "<Say>hi</Say>", "<Unknown/>",
]
# fmt: on
_VALUE = re.compile(r'"[^"<>]*"|(?:(?<=<Number>)|(?<=<Client>)|(?<=<Sip>)|(?<=<Play>)|(?<=<Redirect>))[^<>]*(?=<)')
_BETWEEN_VERBS = re.compile(r"<Response>|</Dial>|<Hangup/>|</Play>|(?=</Response>)")


def mutate_values(rng: random.Random, text: str) -> str:
    """Change attribute values, text and verbs, keeping the document well-formed (mostly)."""
    for _ in range(rng.randint(1, 3)):
        if rng.random() < 0.7 and (spots := list(_VALUE.finditer(text))):
            spot = rng.choice(spots)
            value = rng.choice(VALUES)
            text = text[: spot.start()] + (f'"{value}"' if spot.group()[:1] == '"' else value) + text[spot.end() :]
        elif spots := list(_BETWEEN_VERBS.finditer(text)):
            at = rng.choice(spots).end()
            text = text[:at] + rng.choice(VERBS) + text[at:]
    return text


def xml(content: str | bytes) -> httpx.Response:
    return httpx.Response(200, content=content, headers={"Content-Type": "text/xml"})


async def test_mutated_documents_run_as_calls_end_cleanly_and_leak_nothing(tmp_path, caplog):
    caplog.set_level(logging.INFO)
    rng = random.Random(SEED)
    documents: dict[tuple[str, str], str | bytes] = {}
    for case in range(CASES):
        for path in ("/1001.xml", "/next.xml"):
            seed = rng.choice(SEEDS_AS_CALLS)
            wild = rng.random() < 0.25
            documents[f"a{case}", path] = as_input(rng, mutate(rng, seed)) if wild else mutate_values(rng, seed)
    started = time.monotonic()
    async with Rig(tmp_path) as rig:
        rig.fake.media_duration = 0.005
        rig.fake.timeout_scale = 0.01
        rig.fake.phone("PJSIP/bob", answer_after=0)
        rig.fake.phone("PJSIP/carol", answer_after=0.01, hangup_after=0.02)
        rig.fake.phone("PJSIP/trunk/sip:carol@127.0.0.1", answer_after=0, busy=True)
        served: set[tuple[str, str]] = set()

        def serve(params: dict[str, str], path: str) -> httpx.Response:
            # A document that dials its own number (<Number>1001</Number>) nests calls without end today (a
            # known limit, not what this suite looks for): the nested call gets a hang-up, the first the fuzz.
            key = (params.get("From", ""), path)
            if key in served and path == "/1001.xml":
                return xml("<Response><Hangup/></Response>")
            served.add(key)
            return xml(documents[key])

        for path in ("/1001.xml", "/next.xml"):
            rig.web.routes[path] = lambda params, path=path: serve(params, path)
        rig.web.xml("/1002.xml", "<Response><Dial><Client>carol</Client></Dial></Response>")
        gate = asyncio.Semaphore(CONCURRENT)
        ended_by_itself = 0

        async def call(case: int) -> None:
            nonlocal ended_by_itself
            async with gate:
                alice = await rig.call(f"a{case}", "1001")
                await asyncio.sleep(HOLD)
                if alice in rig.fake.channels:
                    await rig.fake.phone_hangup(alice)
                else:
                    ended_by_itself += 1

        await asyncio.gather(*(call(case) for case in range(CASES)))
        await rig.idle(timeout=10)
        rig.fake.assert_nothing_leaked()
        assert not rig.engine.bridges
        assert not rig.engine.owner
        assert not rig.fake.handler_errors
        requested = len({params["From"] for params in rig.web.calls("/1001.xml")})
        dialed = sum(1 for m, path, _ in rig.fake.rest_log if (m, path) == ("POST", "/channels"))
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
    assert errors == []
    elapsed = time.monotonic() - started
    print(f"{CASES} RCML calls in {elapsed:.1f} s: {ended_by_itself} ended by themselves, {dialed} originates")
    # Every call fetched its document, and the mutations neither all end the call at once nor all leave it up.
    assert requested == CASES
    assert CASES // 10 < ended_by_itself < CASES - CASES // 10
    assert dialed > CASES // 10
    assert elapsed < 20, "the fuzz suite must stay fast"
