"""The stasis-rcml command: check and run, one line per problem, never a traceback."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import types
from pathlib import Path

import pytest

from models.config import Settings
from stasis_app.cli import main
from stasis_app.errors import AriError

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def check(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, list[str], list[str]]:
    status = main(["check", *argv])
    out, err = capsys.readouterr()
    return status, out.splitlines(), err.splitlines()


def test_check_examples(capsys: pytest.CaptureFixture[str]):
    status, out, err = check(capsys, "--config", str(EXAMPLES / "config.toml"))
    assert (status, out, err) == (0, ["ok: 3 numbers, 5 local apps"], [])


def test_check_broken_config_one_line_per_problem(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    config = tmp_path / "config.toml"
    config.write_text('[ari]\nusrname = "x"\n[[numbers]]\nnumber = "1"\nvoice_url = "ftp://x"\n')
    status, out, err = check(capsys, "--config", str(config))
    assert (status, out) == (1, [])
    assert err == [
        f"stasis-rcml: {config}: unknown key ari.usrname",
        f"stasis-rcml: {config}: numbers[0].voice_url: must be http://, https:// or app:NAME",
    ]


def test_check_invalid_toml(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    config = tmp_path / "config.toml"
    config.write_text("[ari\n")
    status, _, err = check(capsys, "--config", str(config))
    assert status == 1
    assert len(err) == 1
    assert err[0].startswith(f"stasis-rcml: {config}: line 1: invalid TOML (")


def test_check_reports_a_missing_local_app(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    (tmp_path / "apps").mkdir()
    (tmp_path / "apps" / "hello.xml").write_text("<Response><Hangup/></Response>")
    config = tmp_path / "config.toml"
    config.write_text('[[numbers]]\nnumber = "1"\nvoice_url = "app:hello"\nrefer_url = "app:refer"\n')
    status, out, err = check(capsys, "--config", str(config))
    assert (status, out) == (1, [])
    assert err == [f"stasis-rcml: numbers[0].refer_url: app:refer: no such app file {tmp_path}/apps/refer.xml"]


def test_check_accepts_say_and_play_of_urls_and_names_a_bad_attribute(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    (tmp_path / "apps").mkdir()
    (tmp_path / "apps" / "ivr.xml").write_text(
        '<Response><Say voice="alice" language="fr-FR" loop="2">Bonjour</Say><Play>welcome.wav</Play>'
        '<Play loop="0">https://example.com/hold.wav</Play><Play digits="ww1234#"/></Response>'
    )
    (tmp_path / "apps" / "bad.xml").write_text('<Response>\n<Say loop="-1">Hi</Say></Response>')
    config = tmp_path / "config.toml"
    config.write_text(
        '[http]\nport = 8090\n[tts]\ncache_dir = "speech"\n'
        '[[numbers]]\nnumber = "1"\nvoice_url = "app:ivr"\nrefer_url = "app:bad"\n'
    )
    status, out, err = check(capsys, "--config", str(config))
    assert (status, out) == (1, [])
    assert err == [
        f"stasis-rcml: invalid RCML from {tmp_path}/apps/bad.xml, line 2: "
        '<Say> loop="-1": Input should be greater than or equal to 0'
    ]


def test_check_missing_config_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    status, _, err = check(capsys, "--config", str(tmp_path / "nope.toml"))
    assert (status, err) == (1, [f"stasis-rcml: {tmp_path}/nope.toml: no such file"])


def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str]):
    assert main([]) == 2
    assert main(["frobnicate"]) == 2
    assert "usage: stasis-rcml" in capsys.readouterr().err


@pytest.fixture
def fake_app(monkeypatch: pytest.MonkeyPatch) -> types.ModuleType:
    """A stand-in for stasis_app.app, so these tests do not depend on the engine."""
    module = types.ModuleType("stasis_app.app")
    monkeypatch.setitem(sys.modules, "stasis_app.app", module)
    return module


def test_run_stops_cleanly_on_sigterm(fake_app: types.ModuleType):
    seen: list[Settings] = []
    cancelled: list[bool] = []

    async def run_app(settings: Settings, *, event_log: Path | None = None) -> None:
        seen.append(settings)
        asyncio.get_running_loop().call_soon(os.kill, os.getpid(), signal.SIGTERM)
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            cancelled.append(True)
            raise

    fake_app.run_app = run_app  # type: ignore[attr-defined]
    assert main(["run", "--config", str(EXAMPLES / "config.toml"), "--log-level", "warning"]) == 0
    assert [settings.ari.app for settings in seen] == ["rcml"]
    assert cancelled == [True]
    # The handlers are gone again: the default SIGINT handler is back.
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_run_reports_an_error_in_one_line(fake_app: types.ModuleType, capsys: pytest.CaptureFixture[str]):
    async def run_app(settings: Settings, *, event_log: Path | None = None) -> None:
        raise AriError("GET", "/ari/asterisk/info", None, "connection refused")

    fake_app.run_app = run_app  # type: ignore[attr-defined]
    assert main(["run", "--config", str(EXAMPLES / "config.toml")]) == 1
    assert capsys.readouterr().err.splitlines() == ["stasis-rcml: ARI GET /ari/asterisk/info -> connection refused"]


def test_run_with_a_broken_config_does_not_start(
    fake_app: types.ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    config = tmp_path / "config.toml"
    config.write_text('[ari]\nurl = "x"\n[webhooks]\ntimeout = -1\n')
    assert main(["run", "--config", str(config)]) == 1
    (line,) = capsys.readouterr().err.splitlines()
    assert line == (
        f"stasis-rcml: {config}: ari.url: must start with http:// or https:// (and 1 more: run `stasis-rcml check`)"
    )


def test_run_passes_the_event_log_on(fake_app: types.ModuleType, tmp_path: Path):
    logs: list[Path | None] = []

    async def run_app(settings: Settings, *, event_log: Path | None = None) -> None:
        logs.append(event_log)

    fake_app.run_app = run_app  # type: ignore[attr-defined]
    config = str(EXAMPLES / "config.toml")
    assert main(["run", "--config", config, "--event-log", str(tmp_path / "events.jsonl")]) == 0
    assert main(["run", "--config", config]) == 0
    assert logs == [tmp_path / "events.jsonl", None]


def test_run_with_an_unwritable_event_log_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    target = tmp_path / "no-such-dir" / "events.jsonl"
    assert main(["run", "--config", str(EXAMPLES / "config.toml"), "--event-log", str(target)]) == 1
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith(f"stasis-rcml: --event-log {target}: cannot open: ")
