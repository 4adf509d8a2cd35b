"""Loading and checking the configuration: one line per problem, naming the file and the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from models.config import NumberConfig, Settings
from stasis_app.config import ConfigProblems, check_settings, load_settings, local_apps
from stasis_app.errors import ConfigError

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"

VALID = """
[ari]
url = "http://pbx.test:8088"

[[numbers]]
number = "1001"
voice_url = "app:hello"
"""


def write(tmp_path: Path, text: str, name: str = "config.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def problems(path: Path, environ: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_settings(path, environ or {})
    error = caught.value
    return list(error.problems) if isinstance(error, ConfigProblems) else [str(error)]


def test_example_config_loads():
    settings = load_settings(EXAMPLES / "config.toml", {})
    assert settings.ari.url == "http://127.0.0.1:8088"
    assert (settings.ari.username, settings.ari.password, settings.ari.app) == (
        "asterisk",
        "asterisk",
        "rcml",
    )
    assert settings.number("1001") == NumberConfig(number="1001", voice_url="app:dial-bob", refer_url="app:refer")
    assert settings.number("1002") == NumberConfig(number="1002", voice_url="app:dial-carol")
    assert (settings.routing.client, settings.routing.number, settings.routing.sip) == (
        "PJSIP/{client}",
        "PJSIP/{number}@trunk",
        "PJSIP/trunk/{uri}",
    )
    assert settings.apps_path == EXAMPLES / "apps"


def test_example_apps_check_clean():
    settings = load_settings(EXAMPLES / "config.toml", {})
    assert check_settings(settings) == []
    assert local_apps(settings) == ["dial-bob", "dial-carol", "refer"]


def test_environment_overrides_the_ari_table(tmp_path: Path):
    environ = {"ARI_URL": "https://ari.test/", "ARI_USERNAME": "u", "ARI_PASSWORD": "p", "ARI_APP": "a"}
    settings = load_settings(write(tmp_path, VALID), environ)
    assert settings.ari.model_dump() == {
        "url": "https://ari.test",
        "username": "u",
        "password": "p",
        "app": "a",
        "rest": "auto",
        "http_connections": 20,
        "request_timeout": 10.0,
    }


def test_empty_environment_variable_does_not_override(tmp_path: Path):
    assert load_settings(write(tmp_path, VALID), {"ARI_URL": ""}).ari.url == "http://pbx.test:8088"


def test_bad_environment_value_names_the_variable(tmp_path: Path):
    assert problems(write(tmp_path, VALID), {"ARI_URL": "pbx:8088"}) == [
        "ARI_URL (environment): must start with http:// or https://"
    ]


def test_minimal_file_and_relative_apps_dir(tmp_path: Path):
    settings = load_settings(write(tmp_path, '[routing]\napps_dir = "rcml"\n'), {})
    assert settings == Settings(base_dir=tmp_path, routing=settings.routing)
    assert settings.apps_path == tmp_path / "rcml"


def test_integer_number_and_lowercase_method_are_accepted(tmp_path: Path):
    text = '[[numbers]]\nnumber = 1001\nvoice_url = "https://app.test/v"\nvoice_method = "get"\n'
    (number,) = load_settings(write(tmp_path, text), {}).numbers
    assert (number.number, number.voice_method) == ("1001", "GET")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('[ari]\nusrname = "x"\n', "config.toml: unknown key ari.usrname"),
        ('colour = "blue"\n', "config.toml: unknown key colour"),
        (
            '[[numbers]]\nnumber = "1"\nvoice_url = "app:a"\n[[numbers]]\nnumber = "2"\nvoice_url = "ftp://x"\n',
            "config.toml: numbers[1].voice_url: must be http://, https:// or app:NAME",
        ),
        (
            '[[numbers]]\nnumber = "1"\nvoice_url = "app:../etc/passwd"\n',
            "config.toml: numbers[0].voice_url: app:NAME must be a plain file name",
        ),
        (
            '[[numbers]]\nnumber = "1"\nvoice_url = "app:a"\nvoice_method = "PUT"\n',
            "config.toml: numbers[0].voice_method: Input should be 'GET' or 'POST'",
        ),
        ('[[numbers]]\nnumber = "1"\n', "config.toml: numbers[0].voice_url: missing"),
        ('[ari]\nurl = "127.0.0.1:8088"\n', "config.toml: ari.url: must start with http:// or https://"),
        ('[routing]\nclient = "PJSIP/{name}"\n', "config.toml: routing.client: must contain {client}"),
        ("[webhooks]\ntimeout = 0\n", "config.toml: webhooks.timeout: Input should be greater than 0"),
        ('base_dir = "/"\n', "config.toml: unknown key base_dir"),
        ("[ari]\nurl = \n", "config.toml: line 2: invalid TOML (Invalid value)"),
        ('[ari]\nurl = "a"\n[ari]\n', "config.toml: line 3: invalid TOML (Cannot declare ('ari',) twice)"),
    ],
)
def test_one_problem_is_one_line_naming_file_and_key(tmp_path: Path, text: str, expected: str):
    (problem,) = problems(write(tmp_path, text))
    assert problem.startswith(str(tmp_path / expected.split(":")[0]))
    assert problem.removeprefix(str(tmp_path) + "/").startswith(expected)
    assert "\n" not in problem


def test_duplicate_numbers_are_refused(tmp_path: Path):
    text = "".join(f'[[numbers]]\nnumber = "{n}"\nvoice_url = "app:x"\n' for n in ("1001", "1002", "1001"))
    assert problems(write(tmp_path, text)) == [f"{tmp_path}/config.toml: numbers[2].number: 1001 is already numbers[0]"]


def test_every_problem_is_reported_at_once(tmp_path: Path):
    text = '[ari]\nurl = "x"\n[[numbers]]\nnumber = "1"\nvoice_url = "ftp:"\n'
    lines = problems(write(tmp_path, text))
    assert [line.split(": ")[1] for line in lines] == ["ari.url", "numbers[0].voice_url"]
    with pytest.raises(ConfigError, match=r"\(and 1 more: run `stasis-rcml check`\)$"):
        load_settings(tmp_path / "config.toml", {})


def test_missing_and_unreadable_files(tmp_path: Path):
    assert problems(tmp_path / "nope.toml") == [f"{tmp_path}/nope.toml: no such file"]
    (tmp_path / "bin.toml").write_bytes(b"\xff\xfe")
    assert problems(tmp_path / "bin.toml") == [f"{tmp_path}/bin.toml: not UTF-8 text"]


def settings_with_apps(tmp_path: Path, apps: dict[str, str], numbers: str) -> Settings:
    folder = tmp_path / "apps"
    folder.mkdir()
    for name, text in apps.items():
        (folder / f"{name}.xml").write_text(text)
    return load_settings(write(tmp_path, numbers), {})


def test_check_reports_missing_and_invalid_apps(tmp_path: Path):
    settings = settings_with_apps(
        tmp_path,
        {
            "first": '<Response><Dial action="app:gone">1</Dial><Redirect>second.xml</Redirect></Response>',
            "second": "<Response>\n<Speak>hi</Speak></Response>",
            "orphan": "<Response><Hangup>",
        },
        '[[numbers]]\nnumber = "1"\nvoice_url = "app:first"\nrefer_url = "app:missing"\n',
    )
    apps = tmp_path / "apps"
    assert sorted(check_settings(settings)) == sorted(
        [
            f"numbers[0].refer_url: app:missing: no such app file {apps}/missing.xml",
            f"{apps}/first.xml: app:gone: no such app file {apps}/gone.xml",
            f"invalid RCML from {apps}/second.xml, line 2: unsupported verb <Speak>",
            f"invalid RCML from {apps}/orphan.xml, line 1: not well-formed XML: "
            "Premature end of data in tag Hangup line 1 (column 19)",
        ]
    )


def test_check_substitutes_placeholders(tmp_path: Path):
    settings = settings_with_apps(
        tmp_path,
        {
            "refer": '<Response><Dial timeout="$core_Timeout" action="$core_Next">'
            "<Number>$core_ReferTarget</Number></Dial><Play>$core_Nope</Play></Response>"
        },
        '[[numbers]]\nnumber = "1"\nvoice_url = "https://app.test/v"\nrefer_url = "app:refer"\n',
    )
    assert check_settings(settings) == []


def test_check_reports_a_missing_apps_folder_once(tmp_path: Path):
    text = "".join(f'[[numbers]]\nnumber = "{n}"\nvoice_url = "app:a{n}"\n' for n in (1, 2))
    settings = load_settings(write(tmp_path, text), {})
    assert check_settings(settings) == [
        f"apps folder {tmp_path}/apps does not exist (routing.apps_dir; needed by numbers[0].voice_url)"
    ]


def test_check_without_local_apps_needs_no_folder(tmp_path: Path):
    settings = load_settings(write(tmp_path, '[[numbers]]\nnumber = "1"\nvoice_url = "http://a.test/"\n'), {})
    assert check_settings(settings) == []
    assert local_apps(settings) == []
