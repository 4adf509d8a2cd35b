"""<Say> and <Play> of URLs on the real Asterisk 22 sandbox: Asterisk's HTTP media cache fetches the speech from
the app's own HTTP side and the customer's audio from the test's web app; a broken URL is one line and the call
goes on. Alice's sipp phone answers nothing back (no RTP needed): what she "hears" is read from the playbacks
Asterisk reports (PlaybackFinished, state done) and the GETs each HTTP server got."""

from __future__ import annotations

import io
import wave

import pytest

from tests.e2e.harness import Number, Phones, RcmlProcess, WebApp

pytestmark = pytest.mark.e2e

WAIT = 30.0


def wav_bytes(seconds: float) -> bytes:
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(b"\x10\x00" * int(8000 * seconds))
    return out.getvalue()


def playbacks(rcml: RcmlProcess) -> list[tuple[str, str]]:
    """(media, final state) of every playback Asterisk finished, in order."""
    return [
        (e["playback"]["media_uri"], e["playback"]["state"]) for e in rcml.events() if e["type"] == "PlaybackFinished"
    ]


async def test_say_and_play_of_http_urls(rcml: RcmlProcess, phones: Phones, web: WebApp):
    web.file("/media/hello.wav", wav_bytes(0.5))
    web.xml(
        "/1001.xml",
        "<Response>"
        '<Say voice="woman" language="en-US">Welcome to the test.</Say>'
        "<Play>media/hello.wav</Play>"  # relative: resolved against the document's URL
        f"<Play>{web.url}/media/missing.wav</Play>"
        '<Play digits="1w2"/>'
        "<Hangup/>"
        "</Response>",
    )
    rcml.start([Number("1001", f"{web.url}/1001.xml")])
    alice = await phones.start("alice", "alice_uac.xml", service="1001", talk_ms=20000)
    result = await alice.result(WAIT)
    assert result.value("final_response") == "200", result
    assert result.value("hangup") == "remote", result  # the app hung up at <Hangup/>, after the media

    (speech, speech_state), hello, missing = playbacks(rcml)
    assert speech.startswith("sound:http://127.0.0.1:8090/tts/"), speech
    assert speech_state == "done"
    assert hello == (f"sound:{web.url}/media/hello.wav", "done")
    assert missing == (f"sound:{web.url}/media/missing.wav", "failed")
    log = rcml.log()
    key = speech.rsplit("/", 1)[1]
    assert f"http: GET /tts/{key} -> 200 (asterisk-libcurl-agent" in log, log[-3000:]
    with wave.open(str(rcml.workdir / "tts-cache" / key)) as w:
        assert (w.getframerate(), w.getnchannels(), w.getsampwidth()) == (8000, 1, 2)
    assert "/media/hello.wav" in web.paths()
    warnings = [line for line in log.splitlines() if "WARNING" in line and "stasis_app.app:" not in line]
    assert len(warnings) == 1, warnings
    assert f"<Play> {web.url}/media/missing.wav: Asterisk could not play it" in warnings[0]


async def test_app_documents_play_audio_of_the_apps_folder(rcml: RcmlProcess, phones: Phones):
    rcml.start(
        [Number("1001", "app:ivr")],
        apps={"ivr": '<Response><Play loop="2">welcome.wav</Play><Say loop="2">Goodbye.</Say></Response>'},
    )
    (rcml.workdir / "apps" / "welcome.wav").write_bytes(wav_bytes(0.3))
    alice = await phones.start("alice", "alice_uac.xml", service="1001", talk_ms=20000)
    result = await alice.result(WAIT)
    assert result.value("hangup") == "remote", result  # the end of the document hung up
    finished = playbacks(rcml)
    assert [state for _media, state in finished] == ["done"] * 4, finished
    assert finished[0][0] == "sound:http://127.0.0.1:8090/apps/welcome.wav"
    assert finished[0][0] == finished[1][0]
    assert finished[2][0] == finished[3][0]
    assert "http: GET /apps/welcome.wav -> 200" in rcml.log()
