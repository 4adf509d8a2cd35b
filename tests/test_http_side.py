"""The app's own HTTP side on a real loopback port (0: any free one), and the speech cache it serves."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx
import pytest

from models.config import HttpSettings, RoutingSettings, Settings, TtsSettings
from stasis_app.errors import ConfigError
from stasis_app.http_side import HttpSide
from stasis_app.media import MediaService
from stasis_app.tts import EspeakEngine, SpeechCache, TtsError
from tests.fake_asterisk import FakeAsterisk


def settings_in(tmp_path: Path, **http) -> Settings:
    return Settings(
        routing=RoutingSettings(apps_dir=Path("apps")),
        http=HttpSettings(**({"port": 0} | http)),
        tts=TtsSettings(cache_dir=Path("speech")),
        base_dir=tmp_path,
    )


@pytest.fixture
async def side(tmp_path):
    (tmp_path / "apps").mkdir()
    fake = FakeAsterisk()
    settings = settings_in(tmp_path)
    media = MediaService(settings)
    async with HttpSide(settings, media, fake.api) as http, httpx.AsyncClient(trust_env=False) as client:
        yield http, media, fake, client


async def test_serves_rendered_speech_and_nothing_else_under_tts(side):
    http, media, _fake, client = side
    url = await media.speech_media("Welcome", "man", "en")
    assert url.startswith(f"sound:{http.base_url}/tts/")
    assert http.base_url.startswith("http://127.0.0.1:")
    response = await client.get(url.removeprefix("sound:"))
    assert response.status_code == 200
    assert response.headers["content-type"] == "audio/wav"
    assert response.content[:4] == b"RIFF"
    for path in ("/tts/" + "0" * 64 + ".wav", "/tts/../speech/x.wav", "/tts/ABC.wav", "/other"):
        assert (await client.get(http.base_url + path)).status_code == 404, path


async def test_serves_audio_files_of_the_apps_folder_by_plain_name_only(side, tmp_path):
    http, _media, _fake, client = side
    (tmp_path / "apps" / "hello.wav").write_bytes(b"RIFF-audio")
    (tmp_path / "apps" / "ivr.xml").write_text("<Response/>")
    (tmp_path / "secret.wav").write_bytes(b"secret")
    assert (await client.get(f"{http.base_url}/apps/hello.wav")).content == b"RIFF-audio"
    for path in ("ivr.xml", "..%2Fsecret.wav", "%2E%2E/secret.wav", ".hello.wav", "missing.wav", "sub/hello.wav"):
        assert (await client.get(f"{http.base_url}/apps/{path}")).status_code == 404, path


async def test_serves_recordings_asterisk_stored(side):
    http, _media, fake, client = side
    fake.stored_recordings["CA1-rec"] = b"RIFF-recorded"
    response = await client.get(f"{http.base_url}/recordings/CA1-rec.wav")
    assert (response.status_code, response.content) == (200, b"RIFF-recorded")
    assert ("GET", "/recordings/stored/CA1-rec/file", {}) in fake.rest_log
    assert (await client.get(f"{http.base_url}/recordings/other.wav")).status_code == 404


async def test_a_port_in_use_is_one_config_error(tmp_path, side):
    http, _media, fake, _client = side
    port = int(http.base_url.rsplit(":", 1)[1])
    settings = settings_in(tmp_path, port=port)
    with pytest.raises(ConfigError, match=rf"^\[http\] cannot listen on 127.0.0.1:{port}: "):
        await HttpSide(settings, MediaService(settings), fake.api).start()


async def test_public_url_is_what_asterisk_is_given(tmp_path):
    settings = settings_in(tmp_path, public_url="http://media.example:8090/")
    media = MediaService(settings)
    async with HttpSide(settings, media, FakeAsterisk().api):
        assert media.play_media("hi.wav", "app:ivr") == "sound:http://media.example:8090/apps/hi.wav"


# -- the speech cache ---------------------------------------------------------------------------------------------


class Counting:
    """The real engine, counted."""

    def __init__(self) -> None:
        self.inner = EspeakEngine()
        self.name = self.inner.name
        self.calls = 0

    async def render(self, text: str, voice: str, language: str, dest: Path) -> None:
        self.calls += 1
        await self.inner.render(text, voice, language, dest)


async def test_one_rendering_per_speech_even_when_asked_at_once(tmp_path):
    engine = Counting()
    cache = SpeechCache(tmp_path, engine)
    keys = await asyncio.gather(*(cache.render("Same words", "woman", "fr-FR") for _ in range(5)))
    assert len(set(keys)) == 1
    assert engine.calls == 1
    await cache.render("Same words", "woman", "fr-FR")
    assert engine.calls == 1  # on disk already
    assert [p.name for p in tmp_path.iterdir()] == [f"{keys[0]}.wav"]  # no temporary file left


def test_the_key_changes_with_engine_voice_language_and_text(tmp_path):
    cache = SpeechCache(tmp_path, EspeakEngine())
    keys = {
        cache.key("Hello", "man", "en"),
        cache.key("Hello", "woman", "en"),
        cache.key("Hello", "man", "fr"),
        cache.key("Hello!", "man", "en"),
    }
    assert len(keys) == 4
    assert cache.key("Hello", "MAN", "EN") == cache.key("Hello", "man", "en")


@pytest.mark.parametrize(
    ("voice", "language", "espeak"),
    [
        ("man", "en", "en-us+m3"),
        ("woman", "en-GB", "en-gb+f3"),
        ("alice", "es-MX", "es-419+f2"),
        ("woman", "de-DE", "de+f3"),
        ("alice", "zh-CN", "cmn+f2"),
        ("Polly.Joanna", "fr", "fr-fr"),
        ("man", "fr-FR", "fr-fr+m3"),
    ],
)
async def test_twilio_voices_and_languages_map_to_espeak(voice, language, espeak):
    assert await EspeakEngine().voice_for(voice, language) == espeak


async def test_a_rendering_that_takes_too_long_is_stopped(tmp_path):
    started = time.monotonic()
    with pytest.raises(TtsError, match="took more than"):
        await EspeakEngine(timeout=0.001).render("word " * 2000, "man", "en", tmp_path / "x.wav")
    assert time.monotonic() - started < 2.0
