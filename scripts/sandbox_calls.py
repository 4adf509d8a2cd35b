"""What scripts/demo.py and scripts/bench_refer.py share: Asterisk in the sandbox, the app, sipp phones, their logs.

Stdlib only. Meant to run inside scripts/in-private-net (a private network and PID namespace), as root.
Every file sipp writes must lie inside the repository: only the repository is visible in the chroot.
"""

from __future__ import annotations

import base64
import json
import os
import re
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SANDBOX = REPO / "scripts" / "asterisk-sandbox"
SIPP_DIR = Path("tests/e2e/sipp")  # relative to REPO: sipp runs in the chroot, in the repository
ASTERISK_SIP = "127.0.0.1:5060"
ARI_BASE = "http://127.0.0.1:8088/ari"
ARI_AUTH = "Basic " + base64.b64encode(b"asterisk:asterisk").decode()
PHONE_PORTS = {"alice": 5071, "bob": 5072, "carol": 5073}


class RigError(Exception):
    """Something the run needs did not happen (one line, no traceback)."""


def sandbox_root() -> Path:
    return Path(os.environ.get("RCML_SANDBOX_DIR") or REPO / ".cache/asterisk-sandbox/root")


def sandbox(*args: str, check: bool = True, timeout: float = 60) -> str:
    """Run scripts/asterisk-sandbox ARGS; its stdout (its notes go to our stderr)."""
    done = subprocess.run(
        [str(SANDBOX), *args], cwd=REPO, stdout=subprocess.PIPE, text=True, timeout=timeout, check=False
    )
    if check and done.returncode != 0:
        raise RigError(f"scripts/asterisk-sandbox {' '.join(args)} failed (exit {done.returncode})")
    return done.stdout


def stop_asterisk() -> None:
    """scripts/asterisk-sandbox stop, then make sure ARI is really gone (a later start must get a fresh one)."""
    sandbox("stop", check=False)
    for _ in range(40):
        try:
            ari_get("/asterisk/info")
        except (urllib.error.URLError, OSError):
            return
        time.sleep(0.1)
    pidfile = sandbox_root() / "run/rcml-sandbox/asterisk.pid"
    ps = subprocess.run(["ps", "-eo", "pid,args"], capture_output=True, text=True, check=False).stdout
    running = [line.strip() for line in ps.splitlines() if "asterisk -f" in line]
    raise RigError(
        f"Asterisk still answers after 'asterisk-sandbox stop' (pid file {pidfile}: "
        f"{pidfile.read_text().strip() if pidfile.exists() else 'gone'}; running: {running})"
    )


def asterisk_pid() -> int:
    return int((sandbox_root() / "run/rcml-sandbox/asterisk.pid").read_text().strip())


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process, in seconds (from /proc/PID/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine_cpu() -> tuple[int, int, int]:
    """The machine's CPU time so far, in clock ticks, from /proc/stat: (all, idle with iowait, steal)."""
    # cpu  user nice system idle iowait irq softirq steal ... (guest time is counted in user already)
    fields = [int(value) for value in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    return sum(fields), fields[3] + fields[4], fields[7]


CORE_DIALPLAN = """
; scripts/bench-refer and bench-load, core mode: Asterisk's own blind transfer runs the target in the
; transferer's context
[bench-core]
exten => 1001,1,Dial(PJSIP/bob,20)
 same => n,Hangup()
exten => 1002,1,Dial(PJSIP/carol,20)
 same => n,Hangup()
"""


def use_core_transfer() -> None:
    """Core mode: endpoints without ari-only, in a context that dials the phones; then reload (Asterisk runs).

    Changes the sandbox's copy of the config only: the next ``asterisk-sandbox start`` reinstalls the repository's.
    """
    etc = sandbox_root() / "etc/asterisk"
    pjsip = (etc / "pjsip.conf").read_text()
    if "PJSIP_TRANSFER_HANDLING()=ari-only" not in pjsip or "context=rcml" not in pjsip:
        raise RigError(f"{etc}/pjsip.conf has no ari-only template to turn into core mode")
    pjsip = pjsip.replace("set_var=PJSIP_TRANSFER_HANDLING()=ari-only", "; (bench: core transfer handling)")
    (etc / "pjsip.conf").write_text(pjsip.replace("context=rcml", "context=bench-core"))
    with (etc / "extensions.conf").open("a") as dialplan:
        dialplan.write(CORE_DIALPLAN)
    for command in ("module load app_dial.so", "dialplan reload", "module reload res_pjsip.so"):
        sandbox("cli", command)
    shown = sandbox("cli", "pjsip show endpoint bob")
    if "bench-core" not in shown or "ari-only" in shown:
        raise RigError("core mode: the bob endpoint did not pick up the bench configuration")


def caller_id_from_phone(endpoint: str) -> None:
    """Let the ``endpoint``'s phone set its caller ID (From display name): drop its ``callerid=`` and reload.

    The shipped pjsip.conf gives each sample phone a fixed caller ID, which Asterisk uses instead of the From
    header; the load bench needs the name Alice's phone puts in From (one per call) on Bob's and Carol's INVITEs.
    Changes the sandbox's copy of the config only, like :func:`use_core_transfer`.
    """
    etc = sandbox_root() / "etc/asterisk"
    pjsip = (etc / "pjsip.conf").read_text()
    section = re.compile(rf"^(\[{re.escape(endpoint)}\]\(phone\)\n(?:[^\[\n].*\n|\n)*?)callerid=.*\n", re.MULTILINE)
    pjsip, found = section.subn(r"\1", pjsip)
    if not found:
        raise RigError(f"{etc}/pjsip.conf: no callerid= in the [{endpoint}](phone) endpoint")
    (etc / "pjsip.conf").write_text(pjsip)
    sandbox("cli", "module reload res_pjsip.so")
    shown = sandbox("cli", f"pjsip show endpoint {endpoint}")
    if not re.search(r"^\s*callerid\s*:\s*<unknown>", shown, re.MULTILINE):
        raise RigError(f"the {endpoint} endpoint still has a caller ID after the reload")


def quiet_asterisk() -> None:
    """No SIP message logging, no verbose or debug output: a load run measures calls, not log writes."""
    for command in ("pjsip set logger off", "core set verbose 0", "core set debug 0"):
        sandbox("cli", command)


# -- ARI ---------------------------------------------------------------------------------------------------


def ari(method: str, path: str, timeout: float = 2.0) -> object:
    request = urllib.request.Request(ARI_BASE + path, method=method, headers={"Authorization": ARI_AUTH})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        body = response.read()
    return json.loads(body) if body else None


def ari_get(path: str) -> object:
    return ari("GET", path)


def wait_for_ari_app(app: str, timeout: float, proc: subprocess.Popen[bytes] | None = None) -> None:
    """Until the Stasis app ``app`` has its websocket open (ARI knows an app only while it is connected)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RigError(f"the app exited (code {proc.returncode}) before it connected to ARI")
        try:
            ari_get(f"/applications/{app}")
            return
        except (urllib.error.URLError, OSError):
            time.sleep(0.05)
    raise RigError(f"the Stasis app {app!r} did not connect to ARI within {timeout:g} s")


# -- processes ---------------------------------------------------------------------------------------------


def udp_bound(port: int) -> bool:
    hexport = f":{port:04X} "
    try:
        return any(hexport in line for line in Path("/proc/net/udp").read_text().splitlines()[1:])
    except OSError:
        return False


def wait_udp(ports: Sequence[int], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not all(udp_bound(port) for port in ports):
        if time.monotonic() > deadline:
            raise RigError(f"sipp did not bind UDP {', '.join(map(str, ports))} within {timeout:g} s")
        time.sleep(0.02)


def stop_process(proc: subprocess.Popen[bytes], grace: float = 5.0) -> int | None:
    """SIGTERM, then SIGKILL after ``grace`` seconds; the exit code."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(2)
    return proc.returncode


@dataclass
class Phone:
    """A sipp desk phone; its files are ``<out>/<name>_msgs.log`` (-trace_msg) and ``<name>_logs.log``."""

    name: str
    scenario: str
    out: Path  # inside REPO
    args: list[str] = field(default_factory=list)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def msgs(self) -> Path:
        return self.out / f"{self.name}_msgs.log"

    @property
    def logs(self) -> Path:
        return self.out / f"{self.name}_logs.log"

    def start(self) -> None:
        rel = self.out.relative_to(REPO)
        for path in (self.msgs, self.logs, self.out / f"{self.name}.out"):
            path.unlink(missing_ok=True)
        cmd = [
            str(SANDBOX), "sipp", "-sf", str(SIPP_DIR / self.scenario),
            "-i", "127.0.0.1", "-p", str(PHONE_PORTS[self.name]), "-nostdin",
            "-trace_msg", "-message_file", str(rel / self.msgs.name),
            "-trace_logs", "-log_file", str(rel / self.logs.name),
            *self.args, ASTERISK_SIP,
        ]  # fmt: skip
        with (self.out / f"{self.name}.out").open("wb") as sink:
            self.proc = subprocess.Popen(cmd, cwd=REPO, stdin=subprocess.DEVNULL, stdout=sink, stderr=sink)

    def wait(self, timeout: float) -> int | None:
        assert self.proc is not None
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc, grace=2.0)

    def log_lines(self) -> list[str]:
        try:
            return [line.strip() for line in self.logs.read_text().splitlines() if line.strip()]
        except OSError:
            return []


def start_app(config: Path, out: Path, log_level: str, event_log: Path | None) -> subprocess.Popen[bytes]:
    """``python -m stasis_app run`` from the project venv, its output in ``out/app.log``."""
    cmd = [str(REPO / ".venv/bin/python"), "-m", "stasis_app", "run", "--config", str(config), "--log-level", log_level]
    if event_log is not None:
        event_log.unlink(missing_ok=True)
        cmd += ["--event-log", str(event_log)]
    return _start_logged(cmd, out)


def start_floor_app(out: Path) -> subprocess.Popen[bytes]:
    """``scripts/floor_app.py`` (bench-load's floor mode), its output in ``out/app.log``."""
    return _start_logged([str(REPO / ".venv/bin/python"), str(REPO / "scripts/floor_app.py")], out)


def _start_logged(cmd: list[str], out: Path) -> subprocess.Popen[bytes]:
    with (out / "app.log").open("wb") as sink:
        return subprocess.Popen(cmd, cwd=REPO, stdin=subprocess.DEVNULL, stdout=sink, stderr=subprocess.STDOUT)


def app_has_event_log() -> bool:
    """Whether this version of the CLI has ``run --event-log``."""
    done = subprocess.run(
        [str(REPO / ".venv/bin/python"), "-m", "stasis_app", "run", "--help"],
        cwd=REPO, capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    return "--event-log" in done.stdout


# -- sipp message logs -------------------------------------------------------------------------------------

_STAMP = re.compile(r"^-{10,} (\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+)Z?\s*$")
_DIRECTION = re.compile(r"^\w+ message (sent|received)")


@dataclass
class SipMessage:
    ts: float  # Unix time
    sent: bool  # by this phone
    first_line: str
    headers: dict[str, str]
    body: str
    retransmission: bool = False

    @property
    def is_request(self) -> bool:
        return not self.first_line.startswith("SIP/2.0")

    @property
    def method(self) -> str:
        """The request's method, or the method a response answers (from CSeq)."""
        return self.headers.get("cseq", " ").split()[-1]

    @property
    def status(self) -> int:
        return 0 if self.is_request else int(self.first_line.split()[1])

    @property
    def call_id(self) -> str:
        return self.headers.get("call-id", "")


def parse_sipp_messages(path: Path) -> list[SipMessage]:
    """The messages of a sipp ``-trace_msg`` file, in order, retransmissions marked."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return []
    messages: list[SipMessage] = []
    seen: set[tuple[bool, str, str, str]] = set()
    blocks: list[tuple[float, list[str]]] = []
    for line in text.splitlines():
        match = _STAMP.match(line)
        if match:
            stamp = datetime.fromisoformat(match.group(1) + "+00:00")  # sipp writes UTC
            blocks.append((stamp.timestamp(), []))
        elif blocks:
            blocks[-1][1].append(line.rstrip("\r"))
    for ts, lines in blocks:
        direction = next((m for m in map(_DIRECTION.match, lines[:2]) if m), None)
        if direction is None:
            continue
        rest = lines[lines.index(direction.string) + 1 :]
        while rest and not rest[0].strip():
            rest.pop(0)
        if not rest:
            continue
        first, in_body = rest[0].strip(), False
        headers: dict[str, str] = {}
        body_lines: list[str] = []
        for line in rest[1:]:
            if in_body:
                body_lines.append(line)
            elif not line.strip():
                in_body = True
            elif ":" in line:
                name, value = line.split(":", 1)
                headers.setdefault(name.strip().lower(), value.strip())
        message = SipMessage(ts, direction.group(1) == "sent", first, headers, "\n".join(body_lines).strip())
        key = (message.sent, first, message.call_id, headers.get("cseq", ""))
        message.retransmission = key in seen
        seen.add(key)
        messages.append(message)
    return messages
