"""End-to-end rig: the real Asterisk sandbox, sipp desk phones, a customer web app and the app as a process.

- :class:`Sandbox` starts/stops Asterisk (``scripts/asterisk-sandbox``) and reads its state over ARI;
- :class:`WebApp` is the customer's web app on 127.0.0.1: RCML per path, every request recorded;
- :class:`RcmlProcess` runs ``python -m stasis_app run --event-log`` with a config written for one test;
- :class:`Phones` starts sipp scenarios (``tests/e2e/sipp``) and reads what each phone saw.

Every wait here is bounded; whatever a test leaves running is killed on teardown.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import parse_qsl, urlsplit

import httpx

REPO = Path(__file__).resolve().parents[2]
SANDBOX = REPO / "scripts" / "asterisk-sandbox"
SCENARIOS = Path("tests/e2e/sipp")  # relative: sipp runs in the chroot with the repository at its own path
CAPTURES = REPO / "tests" / "captures"
# sipp writes its logs relative to its working directory, which must be inside the repository (only it is
# visible in the chroot); .cache/ is git-ignored.
RUNS = REPO / ".cache" / "e2e"
ARI = "http://127.0.0.1:8088/ari"
ARI_AUTH = ("asterisk", "asterisk")
ARI_PORT = 8088
ASTERISK_SIP = "127.0.0.1:5060"


def chroot_dir() -> Path:
    return Path(os.environ.get("RCML_SANDBOX_DIR") or REPO / ".cache" / "asterisk-sandbox" / "root")


def unavailable() -> str | None:
    """Why the e2e tests cannot run here (one line), or None."""
    if reason := os.environ.get("RCML_E2E_UNAVAILABLE"):
        return f"e2e: {reason}"
    if os.geteuid() != 0:
        return "e2e: needs root (chroot, mount and network namespaces); run scripts/test as root"
    if not (chroot_dir() / "usr" / "sbin" / "asterisk").exists():
        return f"e2e: no Asterisk sandbox at {chroot_dir()} (run scripts/asterisk-sandbox setup)"
    if os.environ.get("RCML_IN_PRIVATE_NET") != "1":
        return "e2e: not inside scripts/in-private-net (run scripts/test)"
    return None


# -- Asterisk ---------------------------------------------------------------------------------------------------


class Sandbox:
    """The running sandbox Asterisk, seen through ARI (basic auth on 127.0.0.1:8088)."""

    def __init__(self) -> None:
        self.http = httpx.Client(base_url=ARI, auth=ARI_AUTH, timeout=5.0, trust_env=False)
        self.version = ""

    @staticmethod
    def run(*args: str, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(SANDBOX), *args], cwd=REPO, capture_output=True, text=True, timeout=timeout, check=False
        )

    def cli(self, command: str) -> str:
        """What ``asterisk -rx COMMAND`` prints."""
        return self.run("cli", command, timeout=30).stdout

    def start(self) -> None:
        done = self.run("start")
        if done.returncode != 0:
            raise RuntimeError(f"scripts/asterisk-sandbox start failed: {done.stderr.strip()[-2000:]}")
        info = self.http.get("/asterisk/info").json()
        self.version = str(info["system"]["version"])

    def stop(self) -> None:
        self.http.close()
        self.run("stop")

    @property
    def version_tuple(self) -> tuple[int, int, int]:
        match = re.match(r"(\d+)\.(\d+)\.(\d+)", self.version)
        assert match, self.version
        return int(match[1]), int(match[2]), int(match[3])

    def channels(self) -> list[dict[str, Any]]:
        return list(self.http.get("/channels").json())

    def bridges(self) -> list[dict[str, Any]]:
        return list(self.http.get("/bridges").json())

    def app_registered(self, app: str = "rcml") -> bool:
        try:
            return self.http.get(f"/applications/{app}").status_code == 200
        except httpx.HTTPError:
            return False

    def leftovers(self, settle: float = 5.0) -> list[str]:
        """Channels and bridges still there after up to ``settle`` seconds (empty: all clean)."""
        deadline = time.monotonic() + settle
        while True:
            left = [f"channel {c['name']} ({c['state']})" for c in self.channels()]
            left += [f"bridge {b['id']} with {len(b['channels'])} channels" for b in self.bridges()]
            if not left or time.monotonic() > deadline:
                return left
            time.sleep(0.1)

    def clean_up(self) -> None:
        """Hang up and destroy whatever is left, so one failed test does not poison the next."""
        for channel in self.channels():
            self.http.delete(f"/channels/{channel['id']}")
        for bridge in self.bridges():
            self.http.delete(f"/bridges/{bridge['id']}")

    def names_by_bridge(self) -> list[set[str]]:
        """For each bridge, the short names of its channels: ``alice``, ``carol``, ``Local;1``, ``Local;2``."""
        names = {c["id"]: short_name(c["name"]) for c in self.channels()}
        return [{names.get(cid, cid) for cid in b["channels"]} for b in self.bridges()]


def short_name(name: str) -> str:
    """``PJSIP/alice-0000001`` -> ``alice``; ``Local/1002@rcml-00000001;2`` -> ``Local;2``."""
    if name.startswith("Local/"):
        return "Local;" + name.rsplit(";", 1)[1]
    return name.split("/", 1)[1].rsplit("-", 1)[0]


# -- the customer's web app ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class WebRequest:
    method: str
    path: str
    params: dict[str, str]


class WebApp:
    """RCML per path over HTTP on 127.0.0.1, recording every request (method, path, query + form params)."""

    def __init__(self) -> None:
        self.routes: dict[str, str] = {}
        self.files: dict[str, tuple[bytes, str]] = {}  # path -> (body, content type): media for <Play>
        self.requests: list[WebRequest] = []
        self._lock = threading.Lock()
        web = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self._serve(b"")

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                self._serve(self.rfile.read(length))

            def _serve(self, body: bytes) -> None:
                url = urlsplit(self.path)
                params = dict(parse_qsl(url.query, keep_blank_values=True))
                params |= dict(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))
                with web._lock:
                    web.requests.append(WebRequest(self.command, url.path, params))
                    rcml = web.routes.get(url.path)
                    file = web.files.get(url.path)
                if file is not None:
                    payload, kind = file
                else:
                    payload = (rcml if rcml is not None else "not found").encode()
                    kind = "text/xml" if rcml is not None else "text/plain"
                self.send_response(200 if rcml is not None or file is not None else 404)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, format: str, *args: Any) -> None:
                pass  # the recorded requests are the log

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="e2e-web", daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def reset(self) -> None:
        with self._lock:
            self.routes.clear()
            self.files.clear()
            self.requests.clear()

    def xml(self, path: str, rcml: str) -> None:
        with self._lock:
            self.routes[path] = rcml

    def file(self, path: str, body: bytes, content_type: str = "audio/wav") -> None:
        with self._lock:
            self.files[path] = (body, content_type)

    def calls(self, path: str) -> list[dict[str, str]]:
        with self._lock:
            return [r.params for r in self.requests if r.path == path]

    def paths(self) -> list[str]:
        with self._lock:
            return [r.path for r in self.requests]


# -- the app under test -----------------------------------------------------------------------------------------


@dataclass
class Number:
    number: str
    voice_url: str
    refer_url: str | None = None


class RcmlProcess:
    """``python -m stasis_app run`` with a config of its own, in ``workdir``."""

    def __init__(self, sandbox: Sandbox, workdir: Path) -> None:
        self.sandbox = sandbox
        self.workdir = workdir
        self.config = workdir / "config.toml"
        self.event_log = workdir / "events.jsonl"
        self.output = workdir / "app.log"
        self.capture: str | None = None
        self._proc: subprocess.Popen[bytes] | None = None

    def start(
        self,
        numbers: Iterable[Number],
        *,
        apps: dict[str, str] | None = None,
        clients: Iterable[str] = (),
        ari_rest: str = "auto",
        our_numbers: str = "in-process",
    ):
        self.our_numbers = our_numbers
        apps_dir = self.workdir / "apps"
        shutil.copytree(REPO / "examples" / "apps", apps_dir, dirs_exist_ok=True)
        for name, rcml in (apps or {}).items():
            (apps_dir / f"{name}.xml").write_text(rcml, encoding="utf-8")
        lines = [
            "[ari]",
            'url = "http://127.0.0.1:8088"',
            'username = "asterisk"',
            'password = "asterisk"',
            'app = "rcml"',
            f'rest = "{ari_rest}"',
            "[routing]",
            'apps_dir = "apps"',
            f'our_numbers = "{our_numbers}"',
            f"clients = {json.dumps(list(clients))}",
            "[webhooks]",
            "timeout = 5.0",
        ]
        for entry in numbers:
            lines += ["[[numbers]]", f'number = "{entry.number}"', f'voice_url = "{entry.voice_url}"']
            if entry.refer_url is not None:
                lines.append(f'refer_url = "{entry.refer_url}"')
        self.config.write_text("\n".join(lines) + "\n", encoding="utf-8")
        command = [str(REPO / ".venv" / "bin" / "python"), "-m", "stasis_app", "run"]
        command += ["--config", str(self.config), "--event-log", str(self.event_log)]
        connects = self.log().count("connected to Asterisk")  # a restart appends to the killed run's log
        with self.output.open("ab") as out:
            self._proc = subprocess.Popen(command, cwd=REPO, stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 10
        # Asterisk keeps an application registered (GET /applications/rcml answers 200) after its websocket
        # closed, "not active": the previous test's app would pass for this one. The app's own line says when
        # its websocket is open.
        while not (self.sandbox.app_registered() and self.log().count("connected to Asterisk") > connects):
            if self._proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"the app did not connect to ARI:\n{self.log()}")
            time.sleep(0.05)

    def ari_connections(self) -> int:
        """The app's established TCP connections to Asterisk's HTTP port (the events websocket is one)."""
        return len(self._ari_ports())

    def cut_ari(self) -> int:
        """Abort the app's TCP connections to Asterisk's HTTP port (``ss -K``), as a network fault would; returns
        how many were cut. Asterisk sees the connection reset and the app a dead socket."""
        ports = self._ari_ports()
        for port in ports:
            subprocess.run(
                ["ss", "-K", "dst", "127.0.0.1", "dport", "=", str(ARI_PORT), "sport", "=", str(port)],
                capture_output=True,
                timeout=10,
                check=False,
            )
        return len(ports)

    def kill(self) -> None:
        """SIGKILL: the app dies on the spot, ending nothing."""
        proc, self._proc = self._proc, None
        assert proc is not None
        proc.kill()
        proc.wait(timeout=5)

    def _ari_ports(self) -> list[int]:
        """The local ports of the app's established connections to Asterisk's HTTP port."""
        assert self._proc is not None
        inodes = set()
        fds = Path(f"/proc/{self._proc.pid}/fd")
        for fd in fds.iterdir():
            with contextlib.suppress(OSError):
                link = os.readlink(fd)
                if link.startswith("socket:["):
                    inodes.add(link[8:-1])
        ports = []
        for table in ("/proc/net/tcp", "/proc/net/tcp6"):
            for line in Path(table).read_text().splitlines()[1:]:
                fields = line.split()
                remote_port = int(fields[2].rsplit(":", 1)[1], 16)
                if fields[3] == "01" and remote_port == ARI_PORT and fields[9] in inodes:
                    ports.append(int(fields[1].rsplit(":", 1)[1], 16))
        return ports

    def log(self) -> str:
        return self.output.read_text(errors="replace") if self.output.exists() else ""

    def events(self) -> list[dict[str, Any]]:
        """The ARI websocket messages the app received so far (the ``event`` of each --event-log line)."""
        if not self.event_log.exists():
            return []
        return [json.loads(line)["event"] for line in self.event_log.read_text().splitlines()]

    def stop(self) -> int | None:
        """SIGTERM, then up to 10 s for a clean exit; returns the exit status (None: had to be killed)."""
        proc, self._proc = self._proc, None
        if proc is None:
            return 0
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:
            return proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)
            return None

    def save_capture(self) -> None:
        """With RCML_RECAPTURE=1, keep this run's event stream as tests/captures/<capture>.jsonl."""
        if self.capture and os.environ.get("RCML_RECAPTURE") == "1":
            CAPTURES.mkdir(exist_ok=True)
            shutil.copyfile(self.event_log, CAPTURES / f"{self.capture}.jsonl")


# -- sipp phones ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SipMessage:
    """One SIP message a phone received: its first line, CSeq and, for a sipfrag body, the fragment's status."""

    first: str
    cseq: str
    sipfrag: int | None
    call_id: str = ""


@dataclass
class PhoneResult:
    """What one sipp phone saw: its exit status, its ``<log>`` lines and the SIP messages it received."""

    name: str
    returncode: int | None  # None: it had to be killed
    lines: list[str]
    messages: list[SipMessage] = field(default_factory=list)  # received, in order, retransmissions included

    def value(self, key: str) -> str | None:
        """The last ``key=value`` log line's value (``final_sipfrag``, ``hangup``, ``refer_response``...)."""
        found = [line.split("=", 1)[1] for line in self.lines if line.startswith(f"{key}=")]
        return found[-1] if found else None

    @property
    def received(self) -> list[str]:
        return [message.first for message in self.messages]

    @property
    def sipfrags(self) -> list[int]:
        """The sipfrag of each distinct NOTIFY (by CSeq: a retransmission counts once), in order, within the
        calls this phone was called in. A NOTIFY of an earlier test's dialog, which Asterisk retransmits to the
        same port until its transaction times out (32 s), is not this phone's."""
        own = {m.call_id for m in self.messages if m.first.startswith("INVITE ")}
        seen: dict[tuple[str, str], int] = {}
        for message in self.messages:
            notify = message.first.startswith("NOTIFY ") and message.sipfrag is not None
            if notify and (not own or message.call_id in own):
                seen.setdefault((message.call_id, message.cseq), message.sipfrag)
        return list(seen.values())

    def count(self, method: str) -> int:
        """Distinct received requests of ``method`` (by CSeq and first line: retransmissions count once)."""
        return len({(m.first, m.cseq) for m in self.messages if m.first.startswith(f"{method} ")})

    def __str__(self) -> str:
        return f"{self.name}: rc={self.returncode} log={self.lines} received={self.received}"


def _parse_messages(text: str) -> list[SipMessage]:
    """The received messages of a sipp ``-trace_msg`` file."""
    messages = []
    for block in text.split("----------------------------------------------- ")[1:]:
        lines = [line.strip() for line in block.splitlines()]
        if len(lines) < 4 or "received" not in lines[1]:
            continue
        cseq = next((line.split(":", 1)[1].strip() for line in lines if line.lower().startswith("cseq:")), "")
        call_id = next((line.split(":", 1)[1].strip() for line in lines if line.lower().startswith("call-id:")), "")
        # A sipfrag body is a status line after the blank line that ends the headers.
        body = lines[lines.index("", 3) + 1 :] if "" in lines[3:] else []
        frag = next((line for line in body if line.startswith("SIP/2.0 ")), None)
        messages.append(SipMessage(lines[3], cseq, int(frag.split()[1]) if frag else None, call_id))
    return messages


class Phone:
    def __init__(self, name: str, proc: asyncio.subprocess.Process, run_dir: Path) -> None:
        self.name = name
        self.proc = proc
        self.run_dir = run_dir

    @property
    def _logs(self) -> Path:
        return self.run_dir / f"{self.name}_logs.log"

    @property
    def _msgs(self) -> Path:
        return self.run_dir / f"{self.name}_msgs.log"

    def invite_text(self) -> str:
        """The first INVITE this phone received, as received (headers and body)."""
        text = self._msgs.read_text(errors="replace") if self._msgs.exists() else ""
        start = text.find("INVITE sip:")
        if start < 0:
            return ""
        end = text.find("-----", start)
        return text[start : end if end > 0 else None]

    def lines(self) -> list[str]:
        text = self._logs.read_text(errors="replace") if self._logs.exists() else ""
        return [line.strip() for line in text.splitlines() if line.strip()]

    async def result(self, timeout: float) -> PhoneResult:
        """Wait up to ``timeout`` s for the scenario to end (then kill it) and read what it logged."""
        try:
            returncode: int | None = await asyncio.wait_for(self.proc.wait(), timeout)
        except TimeoutError:
            self.kill()
            await asyncio.wait_for(self.proc.wait(), 5)
            returncode = None
        messages = _parse_messages(self._msgs.read_text(errors="replace")) if self._msgs.exists() else []
        return PhoneResult(self.name, returncode, self.lines(), messages)

    def kill(self) -> None:
        if self.proc.returncode is None:
            try:
                self.proc.kill()
            except ProcessLookupError:
                pass


def _udp_bound(port: int) -> bool:
    """Whether something listens on UDP 127.0.0.1:``port`` (in this network namespace)."""
    wanted = f"0100007F:{port:04X}"
    try:
        table = Path("/proc/net/udp").read_text()
    except OSError:
        return False
    return any(line.split()[1] == wanted for line in table.splitlines()[1:] if len(line.split()) > 1)


class Phones:
    """sipp phones for one test; their logs land in .cache/e2e/<test>/."""

    PORTS: ClassVar[dict[str, int]] = {"alice": 5071, "bob": 5072, "carol": 5073, "dave": 5074, "trunk": 5080}

    def __init__(self, test_name: str) -> None:
        self.run_dir = RUNS / re.sub(r"[^A-Za-z0-9_.-]+", "_", test_name)
        shutil.rmtree(self.run_dir, ignore_errors=True)
        self.run_dir.mkdir(parents=True)
        self.started: list[Phone] = []

    async def start(
        self,
        name: str,
        scenario: str,
        *,
        service: str | None = None,
        calls: int = 1,
        rate: float | None = None,
        limit: int | None = None,
        label: str | None = None,
        auth: tuple[str, str] | None = None,
        **variables: str | int,
    ) -> Phone:
        """Start ``scenario`` as ``name``'s phone (its port from PORTS); returns once it listens.

        ``calls`` is sipp's -m; a calling phone places them at ``rate`` per second (-r), ``limit`` at most at once
        (-l; sipp's default is 3 x rate x its average call length). ``auth``: (username, password) for a
        scenario's ``[authentication]`` (sipp ``-au`` / ``-ap``)."""
        port = self.PORTS[name]
        label = label or name
        for suffix in ("logs", "msgs", "err"):
            (self.run_dir / f"{label}_{suffix}.log").unlink(missing_ok=True)
        rel = self.run_dir.relative_to(REPO)
        args = [str(SANDBOX), "sipp", "-sf", str(SCENARIOS / scenario), "-i", "127.0.0.1", "-p", str(port)]
        args += ["-m", str(calls), "-nostdin", "-timeout", "60s"]
        if rate is not None:
            args += ["-r", f"{rate:g}"]
        if limit is not None:
            args += ["-l", str(limit)]
        args += ["-trace_msg", "-message_file", f"{rel}/{label}_msgs.log"]
        args += ["-trace_logs", "-log_file", f"{rel}/{label}_logs.log"]
        args += ["-trace_err", "-error_file", f"{rel}/{label}_err.log"]
        for key, value in variables.items():
            args += ["-set", key, str(value)]
        if service is not None:
            args += ["-s", service]
        if auth is not None:
            args += ["-au", auth[0], "-ap", auth[1]]
        args.append(ASTERISK_SIP)
        with (self.run_dir / f"{label}_stderr.log").open("wb") as err:
            proc = await asyncio.create_subprocess_exec(
                *args, cwd=REPO, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL, stderr=err
            )
        phone = Phone(label, proc, self.run_dir)
        self.started.append(phone)
        deadline = time.monotonic() + 5
        while not _udp_bound(port):
            if proc.returncode is not None or time.monotonic() > deadline:
                stderr = (self.run_dir / f"{label}_stderr.log").read_text(errors="replace")
                raise AssertionError(f"sipp {label} did not start listening on {port}: {stderr[-1000:]}")
            await asyncio.sleep(0.02)
        return phone

    async def port_free(self, name: str, timeout: float = 10.0) -> None:
        """Wait until nothing listens on ``name``'s port (a finished sipp has let go of it)."""
        deadline = time.monotonic() + timeout
        while _udp_bound(self.PORTS[name]):
            assert time.monotonic() < deadline, f"port {self.PORTS[name]} still taken"
            await asyncio.sleep(0.02)

    async def close(self) -> None:
        for phone in self.started:
            phone.kill()
        for phone in self.started:
            try:
                await asyncio.wait_for(phone.proc.wait(), 5)
            except TimeoutError:
                pass


async def eventually(predicate: Callable[[], Any], timeout: float, what: str) -> Any:
    """Poll ``predicate`` until it returns something truthy; AssertionError naming ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(0.05)
