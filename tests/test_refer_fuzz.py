"""Bounded, fixed-seed fuzzing of REFER targets through the real engine on the fake Asterisk.

Alice calls 1001, its app dials Bob; Bob (or Alice) sends a REFER whose Refer-To is fuzzed: random bytes and
unicode, the dial-string metacharacters (``&`` ``/`` ``,`` ``()`` ``@``), ``%xx`` escapes, control characters,
very long and empty values. The refer app dials ``<Number>`` with whatever target it was given (XML-escaped, as
a careful customer app does), so a target the engine lets through goes straight into an originate. Each case
must end in exactly one of: Asterisk refusing the Refer-To (400, nothing happens), a 603 with the call going on
as it was, or a proper transfer (200 when the target is one of our numbers, 503 when nobody answers it). After
every call has ended: no handler error, no ERROR line, nothing left in the fake Asterisk or in the engine, and
no originate ever dialed an endpoint with anything but a plain number or name in it.
"""

from __future__ import annotations

import asyncio
import logging
import random
import re
import time
from xml.sax.saxutils import escape

import httpx

from tests.fake.model import refer_user_part
from tests.rig import Rig

CASES = 1000
SEED = 20261203
CONCURRENT = 24

# Written here, not imported: the test's own idea of a target that cannot change a dial string.
PLAIN = re.compile(r"[A-Za-z0-9+*#._-]{1,64}")
SAFE_ENDPOINT = re.compile(r"PJSIP/[A-Za-z0-9+*#._-]{1,64}(@trunk)?|Local/[A-Za-z0-9+*#._-]{1,64}@rcml/n")

# fmt: off
PIECES = [
    "1002", "1001", "carol", "&", "/", ",", "(", ")", "@", "%", "%26", "%2F", "%2f", "%2C", "%28", "%29", "%40",
    "%00", "%0d%0a", "%zz", "%2", "%25", "PJSIP/", "Local/", "@rcml", "&PJSIP/carol", ",30", "(evil)", " ", "\t",
    "\r\n", "\x00", "\x01", "\x7f", "é", "\u202e", "\U0001f600", "\ufeff", ";user=phone", "?X-Foo=bar", "<", ">",
    "sip:", "sips:", "tel:", ":", "\"", "'", "$core_From", "--", "+", "*", "#", ".", "_", "-",
]
# fmt: on
SHAPES = [
    "{}",
    "<sip:{}@127.0.0.1>",
    "sip:{}@example.com",
    "<sips:{}@h;transport=tls>",
    "<sip:{}@h;user=phone?Replaces=x>",
    "tel:{}",
    "{}@",
]


def random_target(rng: random.Random) -> str:
    """One fuzzed Refer-To value."""
    match rng.randrange(6):
        case 0:
            user = "".join(rng.choice(PIECES) for _ in range(rng.randint(1, 6)))
        case 1:
            user = bytes(rng.randrange(256) for _ in range(rng.randint(0, 24))).decode("latin-1")
        case 2:
            user = "".join(chr(rng.randrange(0x1, 0x3000)) for _ in range(rng.randint(1, 12)))
        case 3:
            alphabet = "0123456789abcXYZ+*#._-"
            user = "".join(rng.choice(alphabet) for _ in range(rng.choice([1, 4, 63, 64, 65, 79, 80, 300, 5000])))
        case 4:
            user = rng.choice(["1002", "1001", "", " ", "carol", "9" * 64, "9" * 65, "%31%30%30%32"])
        case _:
            user = "1002" + rng.choice(PIECES) + rng.choice(["PJSIP/carol", "Local/1@x", "2", ""])
    return rng.choice(SHAPES).format(user)


def outcome_expected(destination: str) -> str:
    """What Asterisk and the engine must make of a REFER to ``destination``."""
    user = refer_user_part(destination)
    if user is None:
        return "refused"  # Asterisk answers 400 itself (tel:)
    if not PLAIN.fullmatch(user):
        return "declined"
    return "answered" if user in ("1001", "1002") else "unavailable"


def refer_app(params: dict[str, str]) -> httpx.Response:
    body = f"<Response><Dial timeout='5'><Number>{escape(params['ReferTarget'])}</Number></Dial></Response>"
    return httpx.Response(200, text=body, headers={"Content-Type": "text/xml"})


FINAL = {603: "declined", 200: "answered", 503: "unavailable"}


def connected(rig: Rig, channel_id: str) -> bool:
    site = rig.engine.site(channel_id)
    return site is not None and site[1].connection is not None and site[1].connection.active


async def one_call(rig: Rig, case: int, destination: str, bob_refers: bool) -> str:
    alice = await rig.call(f"a{case}", "1001")
    await rig.until(lambda: rig.fake.bridged_with(alice), timeout=5)
    (bob,) = rig.fake.bridged_with(alice)
    # A REFER before the engine has seen the Dial connect is declined, rightly: wait for the Dial to own the call.
    await rig.until(lambda: connected(rig, bob), timeout=5)
    referrer, other = (bob, alice) if bob_refers else (alice, bob)
    if await rig.fake.refer(referrer, destination) == 400:
        outcome = "refused"
        await rig.fake.settle(quiet_rounds=5)
        assert referrer not in rig.fake.notifies or not rig.fake.notifies[referrer]
    else:
        await rig.until(lambda: len(rig.fake.notifies.get(referrer, [])) >= 2, timeout=5)
        notifies = rig.fake.notifies[referrer]
        assert notifies[0] == 100, (destination, notifies)
        assert notifies[-1] in FINAL, (destination, notifies)
        outcome = FINAL[notifies[-1]]
    if outcome in ("refused", "declined"):
        # The call goes on as it was: still Alice and Bob, bridged together.
        assert rig.fake.bridged_with(alice) == {bob}, destination
        survivor = alice
    else:
        await rig.until(lambda: referrer not in rig.fake.channels, timeout=5)
        survivor = other
    await rig.until(lambda: rig.fake.bridged_with(survivor) or survivor not in rig.fake.channels, timeout=5)
    if survivor in rig.fake.channels:
        await rig.fake.phone_hangup(survivor)
    return outcome


async def test_fuzzed_refer_targets_end_in_603_or_a_proper_transfer_and_leak_nothing(tmp_path, caplog):
    caplog.set_level(logging.INFO)
    rng = random.Random(SEED)
    cases = [(random_target(rng), rng.random() < 0.7) for _ in range(CASES)]
    started = time.monotonic()
    async with Rig(tmp_path) as rig:
        rig.web.xml("/1001.xml", "<Response><Dial><Client>bob</Client></Dial></Response>")
        rig.web.xml("/1002.xml", "<Response><Dial><Client>carol</Client></Dial></Response>")
        rig.web.routes["/refer.xml"] = refer_app
        rig.fake.phone("PJSIP/bob", answer_after=0)
        rig.fake.phone("PJSIP/carol", answer_after=0)
        gate = asyncio.Semaphore(CONCURRENT)

        async def run(case: int, destination: str, bob_refers: bool) -> str:
            async with gate:
                return await one_call(rig, case, destination, bob_refers)

        outcomes = await asyncio.gather(*(run(case, dest, bob) for case, (dest, bob) in enumerate(cases)))
        await rig.idle(timeout=10)
        rig.fake.assert_nothing_leaked()
        assert not rig.engine.bridges
        assert not rig.engine.owner
        assert not rig.fake.handler_errors

        expected = [outcome_expected(destination) for destination, _ in cases]
        wrong = [(d, got, want) for (d, _), got, want in zip(cases, outcomes, expected, strict=True) if got != want]
        assert not wrong, wrong[:5]
        # Only plain targets ever reached the refer app, exactly as Asterisk passed them on.
        asked = sorted(params["ReferTarget"] for params in rig.web.calls("/refer.xml"))
        assert asked == sorted(
            refer_user_part(d) or ""
            for (d, _), want in zip(cases, expected, strict=True)
            if want in ("answered", "unavailable")
        )
        endpoints = [p["endpoint"] for m, path, p in rig.fake.rest_log if (m, path) == ("POST", "/channels")]
        assert [e for e in endpoints if not SAFE_ENDPOINT.fullmatch(e)] == []
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    counts = {kind: outcomes.count(kind) for kind in ("refused", "declined", "answered", "unavailable")}
    # Every kind of outcome was exercised, so none of the checks above is vacuous.
    print(f"{CASES} REFER targets in {time.monotonic() - started:.1f} s: {counts}")
    assert all(counts.values()), counts
    assert time.monotonic() - started < 20, "the fuzz suite must stay fast"
