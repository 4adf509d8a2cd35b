"""Scenario tests of <Say> and <Play> of URLs on the fake Asterisk, with the app's real HTTP side on a loopback
port: Asterisk's media cache (the fake's) GETs the rendered speech and the apps-folder audio from it."""

from __future__ import annotations

import contextlib
import io
import logging
import wave

import httpx
import pytest

from models.config import HttpSettings, NumberConfig
from stasis_app.http_side import HttpSide
from stasis_app.media import MediaService
from stasis_app.tts import EspeakEngine
from tests.rig import WEB, Rig


def wav_bytes(seconds: float = 0.1) -> bytes:
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(b"\0\0" * int(8000 * seconds))
    return out.getvalue()


@contextlib.asynccontextmanager
async def media_rig(tmp_path, **options):
    async with Rig(tmp_path, **options) as rig:
        settings = rig.settings.model_copy(update={"http": HttpSettings(port=0)})
        async with HttpSide(settings, rig.engine.media, rig.fake.api) as http:
            rig.http = http
            rig.fake.media_cache.mounts[WEB] = rig.web.transport  # the customer's app serves its own media
            yield rig


@pytest.fixture
async def rig(tmp_path):
    async with media_rig(tmp_path) as rig:
        yield rig


def warnings(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]


async def run_call(rig: Rig, document: str) -> str:
    rig.web.xml("/1001.xml", document)
    alice = await rig.call("alice", "1001")
    await rig.idle()
    rig.fake.assert_nothing_leaked()
    return alice


async def test_say_is_rendered_once_served_by_our_http_side_and_played(rig, caplog):
    alice = await run_call(
        rig, '<Response><Say voice="woman" language="en-US" loop="2">Hello Alice</Say><Play>beep</Play></Response>'
    )
    key = rig.engine.media.speech.key("Hello Alice", "woman", "en-US")
    speech = f"sound:{rig.http.base_url}/tts/{key}.wav"
    assert rig.fake.played[alice] == [speech, speech, "sound:beep"]
    fetch = rig.fake.media_cache.fetches[0]
    assert (fetch.url, fetch.status, fetch.content_type) == (speech.removeprefix("sound:"), 200, "audio/wav")
    with wave.open(io.BytesIO(fetch.body)) as w:  # what Asterisk's format_wav reads: 8 kHz mono 16-bit
        assert (w.getframerate(), w.getnchannels(), w.getsampwidth()) == (8000, 1, 2)
        assert 0.3 < w.getnframes() / 8000 < 3.0
    assert list(rig.engine.media.speech.folder.glob("*.wav")) == [rig.engine.media.speech.path(key)]
    assert warnings(caplog) == []


async def test_say_that_cannot_be_rendered_is_one_line_and_the_call_goes_on(rig, caplog):
    rig.engine.media = MediaService(rig.settings, EspeakEngine(espeak="/nonexistent/espeak-ng"))
    alice = await run_call(rig, "<Response><Say>Hello</Say><Play>sound:after</Play></Response>")
    assert rig.fake.played[alice] == ["sound:after"]
    assert warnings(caplog) == [
        "number 1001: <Say> 'Hello' skipped: /nonexistent/espeak-ng is not installed (apt-get install espeak-ng sox)"
    ]


async def test_say_with_nowhere_to_write_is_one_line_and_the_call_goes_on(rig, tmp_path, caplog):
    (tmp_path / "full").write_text("not a folder")
    settings = rig.settings.model_copy(
        update={"tts": rig.settings.tts.model_copy(update={"cache_dir": tmp_path / "full" / "tts"})}
    )
    rig.engine.media = MediaService(settings)
    alice = await run_call(rig, "<Response><Say>Hello</Say><Play>sound:after</Play></Response>")
    assert rig.fake.played[alice] == ["sound:after"]
    (line,) = warnings(caplog)
    assert line.startswith("number 1001: <Say> 'Hello' skipped: cannot write speech to ")
    assert "Not a directory" in line


async def test_play_of_an_http_url_goes_through_the_media_cache(rig):
    rig.web.routes["/hello.wav"] = lambda _p: httpx.Response(200, content=wav_bytes())
    alice = await run_call(rig, f"<Response><Play>{WEB}/hello.wav</Play><Play>media/hello.wav</Play></Response>")
    # the relative one resolves against the document's URL, http://app.test/1001.xml
    assert rig.fake.played[alice] == [f"sound:{WEB}/hello.wav", f"sound:{WEB}/media/hello.wav"]
    assert [(f.url, f.status) for f in rig.fake.media_cache.fetches] == [
        (f"{WEB}/hello.wav", 200),
        (f"{WEB}/media/hello.wav", 404),
    ]


async def test_a_broken_url_is_one_line_not_retried_by_loop_and_the_call_goes_on(rig, caplog):
    alice = await run_call(rig, f'<Response><Play loop="5">{WEB}/missing.wav</Play><Play>sound:after</Play></Response>')
    assert rig.fake.played[alice] == [f"sound:{WEB}/missing.wav", "sound:after"]
    assert warnings(caplog) == [
        f"number 1001: <Play> {WEB}/missing.wav: Asterisk could not play it (not found, unreachable, or a format "
        "it cannot read); going on"
    ]


async def test_app_documents_play_files_of_the_apps_folder_from_our_http_side(tmp_path, caplog):
    audio = wav_bytes(0.2)
    (tmp_path / "welcome.wav").write_bytes(audio)
    (tmp_path / "ivr.xml").write_text(
        "<Response><Play>welcome.wav</Play><Play>../etc/passwd.wav</Play><Play>sound:after</Play></Response>"
    )
    async with media_rig(tmp_path, numbers=(NumberConfig(number="1001", voice_url="app:ivr"),)) as rig:
        alice = await rig.call("alice", "1001")
        await rig.idle()
        url = f"{rig.http.base_url}/apps/welcome.wav"
        assert rig.fake.played[alice] == [f"sound:{url}", "sound:after"]
        assert [(f.url, f.status, f.body) for f in rig.fake.media_cache.fetches] == [(url, 200, audio)]
        (line,) = warnings(caplog)
        assert "'../etc/passwd.wav' in app:ivr: the apps folder serves plain audio file names only" in line
        rig.fake.assert_nothing_leaked()


async def test_play_digits_sends_dtmf_then_plays(rig):
    alice = await run_call(rig, '<Response><Play digits="1w2#"/><Play digits="9">sound:after</Play></Response>')
    assert rig.fake.dtmf_sent[alice] == ["1w2#", "9"]
    assert rig.fake.played[alice] == ["sound:after"]


async def test_loop_zero_plays_until_the_caller_hangs_up(rig):
    rig.web.xml("/1001.xml", '<Response><Play loop="0">sound:hold</Play></Response>')
    alice = await rig.call("alice", "1001")
    await rig.until(lambda: len(rig.fake.played.get(alice, [])) >= 3)
    await rig.fake.phone_hangup(alice)
    await rig.idle()
    rig.fake.assert_nothing_leaked()


async def test_say_loop_zero_plays_until_the_caller_hangs_up(rig):
    rig.web.xml("/1001.xml", '<Response><Say loop="0">Please hold</Say></Response>')
    alice = await rig.call("alice", "1001")
    await rig.until(lambda: len(rig.fake.played.get(alice, [])) >= 3)
    await rig.fake.phone_hangup(alice)
    await rig.idle()
    assert len(rig.fake.media_cache.fetches) >= 3
    rig.fake.assert_nothing_leaked()
