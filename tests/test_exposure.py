"""What the app exposes: files it writes, credentials in logs, unsafe deployments refused or warned at start."""

from __future__ import annotations

import stat
from pathlib import Path

from stasis_app.ari.events import EventLog


def test_event_log_is_created_readable_by_its_owner_only(tmp_path: Path):
    path = tmp_path / "events.jsonl"
    with EventLog(path) as sink:
        sink('{"type": "StasisStart", "channel": {"caller": {"number": "alice"}}}')
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert '"alice"' in path.read_text()
