"""What the app exposes: files it writes, credentials in logs, unsafe deployments refused or warned at start."""

from __future__ import annotations

import logging
import stat
import sys
import types
from pathlib import Path

import pytest

from models.config import Settings
from stasis_app.ari.events import EventLog
from stasis_app.cli import main
from stasis_app.config import load_settings
from stasis_app.errors import MarkupError, WebhookError
from stasis_app.redact import redact_url


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
