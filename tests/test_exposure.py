"""What the app exposes: files it writes, credentials in logs, unsafe deployments refused or warned at start."""

from __future__ import annotations

import logging
import stat
import sys
import types
from pathlib import Path

import pytest

from models.config import AriSettings, Settings
from stasis_app.app import run_app
from stasis_app.ari.events import EventLog
from stasis_app.cli import main
from stasis_app.config import load_settings
from stasis_app.errors import ConfigError, MarkupError, WebhookError
from stasis_app.rcml import parse_rcml
from stasis_app.redact import redact_url
from stasis_app.safety import is_loopback_url, refuse_unsafe, startup_warnings
from stasis_app.webhook import resolve_url


def test_event_log_is_created_readable_by_its_owner_only(tmp_path: Path):
    path = tmp_path / "events.jsonl"
    with EventLog(path) as sink:
        sink('{"type": "StasisStart", "channel": {"caller": {"number": "alice"}}}')
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert '"alice"' in path.read_text()


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("http://user:secret@app.test/voice", "http://***@app.test/voice"),
        ("https://u:p@ss@app.test:8443/a?b=c@d#e", "https://***@app.test:8443/a?b=c@d#e"),
        ("http://user:secret@[::1/x", "http://***@[::1/x"),
        ("http://token@app.test", "http://***@app.test"),
        ("http://app.test/a@b", "http://app.test/a@b"),
        ("app:refer", "app:refer"),
        (
            "redirect from http://a:b@x.test/ to ws://c:d@y.test/",
            "redirect from http://***@x.test/ to ws://***@y.test/",
        ),
    ],
)
def test_redact_url_hides_user_information(url: str, shown: str):
    assert redact_url(url) == shown


def test_errors_never_show_the_password_of_a_url():
    url = "https://user:secret@app.test/voice"
    assert "secret" not in str(WebhookError(url, "HTTP 500"))
    assert "secret" not in str(MarkupError(url, "unsupported verb <Say>", 2))
    assert str(WebhookError(url, "HTTP 500")) == "request to https://***@app.test/voice failed: HTTP 500"


def test_credentials_in_the_ari_url_become_username_and_password(tmp_path: Path):
    config = tmp_path / "config.toml"
    config.write_text('[ari]\nurl = "http://ari%40pbx:s3cr%3At@127.0.0.1:8088/"\n')
    ari = load_settings(config, environ={}).ari
    assert (ari.url, ari.username, ari.password) == ("http://127.0.0.1:8088", "ari@pbx", "s3cr:t")
    from_environ = load_settings(config, environ={"ARI_URL": "https://u:p@10.0.0.5:8089"}).ari
    assert (from_environ.url, from_environ.username, from_environ.password) == ("https://10.0.0.5:8089", "u", "p")


def test_run_never_logs_the_ari_password(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
):
    module = types.ModuleType("stasis_app.app")
    seen: list[str] = []

    async def run_app(settings: Settings, *, event_log: Path | None = None) -> None:
        seen.append(settings.ari.password)

    module.run_app = run_app  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "stasis_app.app", module)
    monkeypatch.setenv("ARI_URL", "http://ari:s3cret@127.0.0.1:8088")
    config = tmp_path / "config.toml"
    config.write_text("")
    with caplog.at_level(logging.INFO):
        assert main(["run", "--config", str(config)]) == 0
    assert seen == ["s3cret"]
    assert "ARI http://127.0.0.1:8088 app rcml" in caplog.text
    assert "s3cret" not in caplog.text


def write_config(tmp_path: Path, text: str) -> Path:
    config = tmp_path / "config.toml"
    config.write_text(text)
    return config


@pytest.mark.parametrize(
    ("url", "loopback"),
    [
        ("http://127.0.0.1:8088", True),
        ("http://127.9.9.9", True),
        ("http://[::1]:8088", True),
        ("http://localhost:8088", True),
        ("https://pbx.localhost", True),
        ("http://10.0.0.5:8088", False),
        ("http://pbx.example.com", False),
        ("http://[::1", False),
        ("http://127.0.0.1.example.com", False),
    ],
)
def test_loopback_urls(url: str, loopback: bool):
    assert is_loopback_url(url) is loopback


async def test_sample_ari_password_against_another_host_does_not_start(tmp_path: Path):
    settings = Settings(ari=AriSettings(url="http://10.0.0.5:8088"))
    with pytest.raises(ConfigError) as caught:
        await run_app(settings)  # refused before any connection is tried
    assert str(caught.value) == (
        "ari.password is the sample password 'asterisk' and ari.url http://10.0.0.5:8088 is not on the loopback: "
        "set a strong password in Asterisk's ari.conf and in [ari] password (or ARI_PASSWORD)"
    )


def test_sample_ari_password_is_refused_by_run_and_check_in_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
):
    config = write_config(tmp_path, '[ari]\nurl = "https://pbx.example.com:8089"\n')
    assert main(["run", "--config", str(config)]) == 1
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith("stasis-rcml: ari.password is the sample password 'asterisk' and ari.url https://pbx")
    assert main(["check", "--config", str(config)]) == 1
    assert len(capsys.readouterr().err.splitlines()) == 1
    monkeypatch.setenv("ARI_PASSWORD", "a-real-secret")
    assert main(["check", "--config", str(config)]) == 0


def test_loopback_ari_with_the_sample_password_is_fine():
    refuse_unsafe(Settings())
    refuse_unsafe(Settings(ari=AriSettings(url="http://[::1]:8088")))
    assert startup_warnings(Settings()) == []


def test_plain_http_off_the_machine_and_unsigned_requests_are_warned(capsys: pytest.CaptureFixture[str], tmp_path):
    config = write_config(
        tmp_path,
        '[ari]\nurl = "http://10.0.0.5:8088"\npassword = "s3cret"\n'
        '[[numbers]]\nnumber = "1001"\nvoice_url = "http://u:pw@app.example.com/voice"\n'
        'refer_url = "http://127.0.0.1:8000/refer"\nvoice_fallback_url = "https://app.example.com/sorry"\n',
    )
    assert main(["check", "--config", str(config)]) == 0
    assert capsys.readouterr().err.splitlines() == [
        "stasis-rcml: warning: ari.url http://10.0.0.5:8088: plain http:// to another host sends the ARI password "
        "in clear; use https://",
        "stasis-rcml: warning: numbers[0].voice_url http://***@app.example.com/voice: plain http:// to another host; "
        "use https://",
        "stasis-rcml: warning: requests to application URLs are not signed: set [webhooks] auth_token "
        "(or WEBHOOK_AUTH_TOKEN) so your app can check X-Twilio-Signature",
    ]


def test_a_clamp_warning_does_not_show_the_documents_password(caplog: pytest.LogCaptureFixture):
    parse_rcml('<Response><Dial timeout="9999">1</Dial></Response>', "https://u:secret@app.test/voice")
    assert "https://***@app.test/voice, line 1: <Dial> timeout=" in caplog.text
    assert "secret" not in caplog.text


def test_a_relative_url_against_a_broken_base_is_a_webhook_error():
    with pytest.raises(WebhookError, match=r"^request to next failed: cannot resolve against http://\*\*\*@\[::1/x: "):
        resolve_url("next", "http://u:secret@[::1/x")
