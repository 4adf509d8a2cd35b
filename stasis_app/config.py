"""Load the TOML configuration into :class:`models.config.Settings`, and check it with its local apps.

Every problem is one line naming the file and the key (or the app file and line), e.g.::

    config.toml: numbers[1].voice_url: must be http://, https:// or app:NAME
    config.toml: line 3: invalid TOML (Expected '=' after a key in a key/value pair)
    invalid RCML from examples/apps/dial-bob.xml, line 2: unsupported verb <Say>
    numbers[0].refer_url: app:refer: no such app file examples/apps/refer.xml
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from models.config import Settings
from models.rcml import Dial, Document, Redirect
from stasis_app.errors import ConfigError, MarkupError, WebhookError
from stasis_app.rcml import parse_rcml
from stasis_app.redact import redact_url
from stasis_app.webhook import app_file, read_app_file, resolve_url

__all__ = ["ConfigProblems", "check_settings", "load_settings", "local_apps"]

# Environment variables that override the [ari] and [webhooks] tables (secrets stay out of the file).
_ARI_ENVIRON = {"ARI_URL": "url", "ARI_USERNAME": "username", "ARI_PASSWORD": "password", "ARI_APP": "app"}
_WEBHOOKS_ENVIRON = {"WEBHOOK_AUTH_TOKEN": "auth_token"}
_TOML_POSITION = re.compile(r"\s*\(at line (\d+), column \d+\)$")
# What `check` substitutes for $core_X: valid as a number, a client name, a count and a duration,
# and recognisable, so that `action="$core_Next"` is not reported as a missing app "app:0000001".
_PLACEHOLDER = "0000001"


class ConfigProblems(ConfigError):
    """The configuration has one or more problems; ``problems`` has one line for each."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = tuple(problems)
        more = f" (and {len(problems) - 1} more: run `stasis-rcml check`)" if len(problems) > 1 else ""
        super().__init__(f"{problems[0]}{more}")


def load_settings(path: Path, environ: Mapping[str, str] | None = None) -> Settings:
    """Read and validate the configuration file; ``ARI_URL``, ``ARI_USERNAME``, ``ARI_PASSWORD`` and
    ``ARI_APP`` (from ``environ``, default :data:`os.environ`) override its ``[ari]`` table, and
    ``WEBHOOK_AUTH_TOKEN`` its ``[webhooks] auth_token``.

    Relative paths in it (``routing.apps_dir``) are relative to the file's folder.
    Raises :class:`ConfigProblems` (a :class:`ConfigError`) listing every problem found.
    """
    environ = os.environ if environ is None else environ
    data = _read_toml(path)
    from_environ = _apply_environ(data, environ)
    problems = _duplicate_numbers(path, data)
    if "base_dir" in data:
        problems.append(f"{path}: unknown key base_dir (paths are relative to this file's folder)")
    else:
        try:
            settings = Settings.model_validate({**data, "base_dir": path.parent})
        except ValidationError as exc:
            problems[:0] = [_problem(path, error, from_environ) for error in exc.errors()]
        else:
            if not problems:
                return settings
    raise ConfigProblems(problems)


def check_settings(settings: Settings, warnings: list[str] | None = None) -> list[str]:
    """Every problem in the settings and in each local app they name, one line each; empty when all is well.
    What is accepted but deserves a look (an unknown verb, skipped) is added to ``warnings``.

    Local apps are the ``app:`` URLs of the numbers, the apps those documents name in turn
    (``Dial action``, ``Redirect``), and every ``*.xml`` file in the apps folder. ``$core_X``
    placeholders are replaced by a dummy value. http(s) URLs are not requested.
    """
    used = {
        f"numbers[{index}].{key}": url
        for index, number in enumerate(settings.numbers)
        for key, url in (
            ("voice_url", number.voice_url),
            ("refer_url", number.refer_url),
            ("voice_fallback_url", number.voice_fallback_url),
        )
        if url is not None and url.startswith("app:")
    }
    if used and not settings.apps_path.is_dir():
        return [f"apps folder {settings.apps_path} does not exist (routing.apps_dir; needed by {min(used)})"]
    problems: list[str] = []
    checked: set[Path] = set()
    pending = [(url, where) for where, url in used.items()]
    pending += [(f"app:{name}", str(settings.apps_path)) for name in local_apps(settings)]
    while pending:
        url, where = pending.pop(0)
        try:
            path = app_file(settings.apps_path, url)
            if path in checked:
                continue
            checked.add(path)
            document = _parse_app(path, url)
            if warnings is not None:
                warnings.extend(document.warnings)
        except WebhookError as exc:
            problems.append(f"{where}: {redact_url(exc.url)}: {exc.reason}")
            continue
        except MarkupError as exc:
            problems.append(str(exc))  # names the app file and the line
            continue
        pending += [(linked, str(path)) for linked in _linked_apps(url, document)]
    return problems


def local_apps(settings: Settings) -> list[str]:
    """The names of the local apps (``app:NAME``) in the apps folder, sorted."""
    if not settings.apps_path.is_dir():
        return []
    return sorted(path.stem for path in settings.apps_path.glob("*.xml") if path.is_file())


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not UTF-8 text") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read ({exc.strerror})") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        message = str(exc)
        match = _TOML_POSITION.search(message)
        if match is None:
            raise ConfigError(f"{path}: invalid TOML ({message})") from None
        raise ConfigError(f"{path}: line {match.group(1)}: invalid TOML ({message[: match.start()]})") from None


def _apply_environ(data: dict[str, Any], environ: Mapping[str, str]) -> dict[str, str]:
    """Put the environment's overrides into ``data``; returns "table.key" -> variable, to name it in errors."""
    named: dict[str, str] = {}
    for table, variables in (("ari", _ARI_ENVIRON), ("webhooks", _WEBHOOKS_ENVIRON)):
        overrides = {key: environ[name] for name, key in variables.items() if environ.get(name)}
        section = data.get(table, {})
        if overrides and isinstance(section, dict):
            data[table] = {**section, **overrides}
        named.update({f"{table}.{key}": name for name, key in variables.items() if key in overrides})
    return named


def _duplicate_numbers(path: Path, data: Mapping[str, Any]) -> list[str]:
    numbers = data.get("numbers")
    if not isinstance(numbers, list):
        return []
    problems: list[str] = []
    seen: dict[str, int] = {}
    for index, entry in enumerate(numbers):
        if not isinstance(entry, dict) or not isinstance(entry.get("number"), str | int):
            continue
        number = str(entry["number"])
        if number in seen:
            problems.append(f"{path}: numbers[{index}].number: {number} is already numbers[{seen[number]}]")
        seen.setdefault(number, index)
    return problems


def _problem(path: Path, error: Mapping[str, Any], from_environ: Mapping[str, str]) -> str:
    """One pydantic error as ``file: key: message``; a value from the environment names its variable."""
    loc: tuple[str | int, ...] = error["loc"]
    key = "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in loc).lstrip(".")
    if error["type"] == "extra_forbidden":
        return f"{path}: unknown key {key}"
    if error["type"] == "missing":
        return f"{path}: {key}: missing"
    message = str(error["msg"]).removeprefix("Value error, ")
    if len(loc) == 2 and f"{loc[0]}.{loc[1]}" in from_environ:
        return f"{from_environ[f'{loc[0]}.{loc[1]}']} (environment): {message}"
    return f"{path}: {key}: {message}"


def _parse_app(path: Path, url: str) -> Document:
    return parse_rcml(read_app_file(path, url), str(path), _Placeholders())


def _linked_apps(base: str, document: Document) -> Iterator[str]:
    """The local apps a document names: Dial actions and Redirects, resolved against its URL."""
    for verb in document.verbs:
        url = verb.action if isinstance(verb, Dial) else verb.url if isinstance(verb, Redirect) else None
        if url is None or _PLACEHOLDER in url:
            continue
        try:
            resolved = resolve_url(url, base)
        except WebhookError:
            continue  # reported when the call gets there; not a file this check can find
        if resolved.startswith("app:"):
            yield resolved


class _Placeholders(Mapping[str, str]):
    """Request parameters for `check`: every name has the placeholder value."""

    def __getitem__(self, key: str) -> str:
        return _PLACEHOLDER

    def __iter__(self) -> Iterator[str]:
        return iter(())

    def __len__(self) -> int:
        return 0
