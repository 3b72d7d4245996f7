"""``townhall demo``: an embedded node with a live space and two synthetic speakers.

Starts ``townhall serve`` as a child process, creates an account and a space scheduled a
minute ahead, starts it, publishes two locally synthesized voices (a lower and a higher
"speaker": formant-filtered buzz in syllables, no downloads) with ``townhall speak``,
brings the second one on stage the way a listener would (join, request, host accepts, speak
token, unmute), follows the programme as a listener (``townhall listen`` when available),
and prints the URLs to open. Ctrl-C or ``--duration`` ends the space and prints the replay URL.
Every child process is stopped on every way out.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import importlib.util
import json
import logging
import os
import re
import secrets
import signal
import subprocess
import sys
import tempfile
import threading
import time
import wave
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, Any

import httpx
import numpy as np
import numpy.typing as npt
import typer
from rich.console import Console
from rich.live import Live
from rich.panel import Panel
from rich.table import Table

from .common import fail

logger = logging.getLogger(__name__)

out = Console(soft_wrap=True)  # URLs stay whole when piped
SAMPLE_RATE = 48000
DEMO_ENV = "TOWNHALL_DEMO"
"""Set in every child's environment (to the data folder) so leftovers can be found."""

LISTEN_ROUND = 5
"""Seconds of audio per ``townhall listen`` round."""
_LISTENING = re.compile(r"townhall listening on (http://\S+)")


# -- synthetic voices ---------------------------------------------------------------------

VOWELS: dict[str, tuple[tuple[float, float], ...]] = {
    # (formant Hz, bandwidth Hz), roughly an adult voice
    "a": ((730.0, 90.0), (1090.0, 110.0), (2440.0, 160.0)),
    "e": ((530.0, 60.0), (1840.0, 100.0), (2480.0, 160.0)),
    "i": ((270.0, 60.0), (2290.0, 100.0), (3010.0, 170.0)),
    "o": ((570.0, 70.0), (840.0, 80.0), (2410.0, 160.0)),
    "u": ((300.0, 60.0), (870.0, 80.0), (2240.0, 160.0)),
}


def synth_voice(f0: float, seconds: float, seed: int) -> npt.NDArray[np.int16]:
    """A speech-like signal: a harmonic buzz at about ``f0`` with intonation, shaped by vowel
    formants, cut into syllables (150–300 ms) grouped in words with pauses. Deterministic."""
    rng = np.random.default_rng(seed)
    n = int(seconds * SAMPLE_RATE)
    envelope = np.zeros(n, dtype=np.float64)
    pitch = np.full(n, f0, dtype=np.float64)
    formants = np.zeros((n, 3, 2), dtype=np.float64)
    formants[:] = VOWELS["a"]
    pos = int(0.15 * SAMPLE_RATE)
    names = list(VOWELS)
    while pos < n:
        for _ in range(int(rng.integers(2, 6))):  # a word of 2-5 syllables
            length = int(rng.uniform(0.15, 0.30) * SAMPLE_RATE)
            end = min(n, pos + length)
            if end <= pos:
                break
            t = np.linspace(0.0, 1.0, end - pos)
            envelope[pos:end] = np.sin(np.pi * t) ** 0.7 * rng.uniform(0.6, 1.0)
            glide = rng.uniform(-0.08, 0.12)
            pitch[pos:end] = f0 * (1.0 + glide * (1 - t) + 0.02 * np.sin(2 * np.pi * 5.5 * t))
            formants[pos:end] = VOWELS[names[int(rng.integers(len(names)))]]
            pos = end + int(rng.uniform(0.01, 0.05) * SAMPLE_RATE)
        pos += int(rng.uniform(0.15, 0.6) * SAMPLE_RATE)  # between words
    phase = 2 * np.pi * np.cumsum(pitch) / SAMPLE_RATE
    signal_ = np.zeros(n, dtype=np.float64)
    for k in range(1, int(4000 // f0) + 1):
        freq = k * pitch
        gain = np.zeros(n, dtype=np.float64)
        for j in range(3):
            centre, width = formants[:, j, 0], formants[:, j, 1]
            gain += 1.0 / (1.0 + ((freq - centre) / width) ** 2) / (j + 1)
        signal_ += (gain + 0.02) / k * np.sin(k * phase)
    signal_ *= envelope
    peak = float(np.max(np.abs(signal_))) or 1.0
    return np.round(signal_ / peak * 0.5 * 32767).astype(np.int16)


def write_wav(path: Path, pcm: npt.NDArray[np.int16]) -> Path:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(SAMPLE_RATE)
        w.writeframes(pcm.tobytes())
    return path


# -- child processes ------------------------------------------------------------------------


_LIBC = ctypes.CDLL(None) if sys.platform == "linux" else None
PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """Runs in the child between fork and exec: SIGTERM it if the demo dies (even SIGKILL).
    Only a ctypes call into an already loaded libc: no lock a thread could hold."""
    if _LIBC is not None:
        _LIBC.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


class Children:
    """The demo's child processes: each in its own process group (Ctrl-C reaches only the
    demo, which then ends the space in order), and stopped again on every way out."""

    def __init__(self, data: Path) -> None:
        self.data = data
        self.procs: list[tuple[str, subprocess.Popen[bytes]]] = []
        self._lock = threading.Lock()
        self._closed = False
        self.env = {**os.environ, DEMO_ENV: str(data.resolve()), "PYTHONUNBUFFERED": "1"}

    def spawn(self, name: str, *args: str, stdout: IO[bytes] | int) -> subprocess.Popen[bytes]:
        with self._lock:
            if self._closed:
                raise RuntimeError("the demo is stopping")
            return self._spawn(name, args, stdout)

    def _spawn(
        self, name: str, args: tuple[str, ...], stdout: IO[bytes] | int
    ) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(
            [sys.executable, "-m", "townhall", *args],
            stdout=stdout,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=self.env,
            start_new_session=True,
            preexec_fn=_die_with_parent if _LIBC is not None else None,
        )
        self.procs.append((name, proc))
        return proc

    def stop(self, name: str | None = None, timeout: float = 5.0) -> None:
        with self._lock:
            if name is None:
                self._closed = True
            chosen = [(n, p) for n, p in self.procs if name is None or n == name]
        for _, proc in chosen:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for n, proc in chosen:
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                logger.warning("%s did not stop; killing it", n)
                proc.kill()
                proc.wait(5)
        with self._lock:
            self.procs = [(n, p) for n, p in self.procs if (n, p) not in chosen]


# -- the demo ---------------------------------------------------------------------------------


class Demo:
    def __init__(self, data: Path, port: int, children: Children) -> None:
        self.data = data
        self.port = port
        self.children = children
        self.url = ""
        self.http = httpx.Client(timeout=15, trust_env=False)
        self.space: dict[str, Any] = {}
        self.host_key = ""
        self.host_token = ""
        self.guest_ticket = ""
        self.playlist_url = ""
        self.listen_report: dict[str, Any] | None = None
        self.stopping = threading.Event()
        self.ended = False

    # HTTP helpers
    def call(self, method: str, path: str, token: str | None = None, **kw: Any) -> Any:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        r = self.http.request(method, self.url + path, headers=headers, **kw)
        if r.status_code >= 400:
            raise RuntimeError(f"{method} {path} → {r.status_code}: {r.text[:300]}")
        return r.json() if r.content else None

    def create_user(self) -> None:
        from ..auth import hash_api_key, new_api_key
        from ..store import SqliteStore, User

        name = f"demo-host-{secrets.token_hex(2)}"
        key = new_api_key()
        user = User(
            name=name,
            key_hash=hash_api_key(key),
            display_name="Demo Host",
            verified=True,
            operator=False,
            created_at=time.time(),
        )

        async def run() -> None:
            store = SqliteStore(self.data / "townhall.db")
            try:
                await store.add_user(user)
            finally:
                await store.close()

        asyncio.run(run())
        self.host_key = key
        out.print(f"[green]✓[/] account [bold]{name}[/] created (API key {key[:10]}…)")

    def start_server(self) -> None:
        log = open(self.data / "server.log", "wb")  # noqa: SIM115 - the child keeps it
        proc = self.children.spawn(
            "server",
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--data",
            str(self.data),
            "--rtc-address",
            "127.0.0.1",
            "--log-level",
            "warning",
            stdout=subprocess.PIPE,
        )
        assert proc.stdout is not None
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            log.write(line)
            match = _LISTENING.search(line.decode(errors="replace"))
            if match:
                self.url = match.group(1)
                break
        if not self.url:
            log.close()
            raise RuntimeError(f"the server did not start; see {self.data / 'server.log'}")
        threading.Thread(target=_pump, args=(proc.stdout, log), daemon=True).start()
        for _ in range(100):
            with contextlib.suppress(httpx.HTTPError):
                if self.http.get(self.url + "/healthz").status_code == 200:
                    break
            time.sleep(0.1)
        out.print(f"[green]✓[/] server on [bold]{self.url}[/] (data in {self.data})")

    def create_space(self) -> None:
        at = (datetime.now(UTC) + timedelta(minutes=1)).replace(microsecond=0)
        body = {
            "title": "Townhall demo",
            "description": "Two synthetic speakers on a live stage",
            "scheduled_start": at.isoformat(),
        }
        self.space = self.call("POST", "/api/spaces", self.host_key, json=body)
        self.host_token = self.space["host_token"]
        sid = self.space["id"]
        out.print(f"[green]✓[/] space [bold]{sid}[/] scheduled for {at:%H:%M:%S} UTC")
        state = self.call("GET", f"/api/spaces/{sid}/state")
        shown = {k: state[k] for k in ("id", "status", "title", "scheduled_start", "speakers")}
        out.print(Panel(json.dumps(shown, indent=2), title="state document (before the start)"))

    def go_live(self) -> None:
        sid = self.space["id"]
        self.call("POST", f"/api/spaces/{sid}/start", self.host_token)
        out.print("[green]✓[/] started early by the host: the programme is live")

    def publish(self, name: str, wav: Path, token: str) -> None:
        log = open(self.data / f"{name}.log", "wb")  # noqa: SIM115 - the child keeps it
        self.children.spawn(
            name,
            "speak",
            str(wav),
            "--loop",
            "--server",
            self.url,
            "--token",
            token,
            "--rtc-address",
            "127.0.0.1",
            stdout=log,
        )

    def bring_guest(self) -> str:
        sid = self.space["id"]
        joined = self.call("POST", f"/api/spaces/{sid}/join")
        self.guest_ticket = joined["ticket"]
        self.playlist_url = joined["playlist_url"]
        guest = joined["listener_id"]
        self.call("POST", f"/api/spaces/{sid}/stage/request", self.guest_ticket)
        self.call(
            "POST", f"/api/spaces/{sid}/stage/accept", self.host_token, json={"target": guest}
        )
        token = self.call("POST", f"/api/spaces/{sid}/stage/token", self.guest_ticket)["token"]
        out.print(f"[green]✓[/] listener {guest} asked to speak, the host accepted")
        return str(token)

    def wait_on_stage(self, who: int, timeout: float = 20) -> None:
        sid = self.space["id"]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            state = self.call("GET", f"/api/spaces/{sid}/state")
            heard = [s for s in state["speakers"] if s.get("level_db") is not None]
            if len(heard) >= who:
                return
            time.sleep(0.3)
        out.print(f"[yellow]! only {len(heard)} of {who} speakers are heard so far")

    def start_listener(self) -> None:
        """A real listener process (``townhall listen``) in rounds of a few seconds; each
        round's JSON report gives the latency shown in the status line."""
        if importlib.util.find_spec("townhall.cli.listen") is None:
            out.print("[dim]townhall listen is not available: following the playlist instead")
            return
        threading.Thread(target=self._listen_rounds, daemon=True).start()

    def _listen_rounds(self) -> None:
        while not self.stopping.is_set():
            proc = self.children.spawn(
                "listen",
                "listen",
                self.playlist_url,
                "--seconds",
                str(LISTEN_ROUND),
                "--json",
                stdout=subprocess.PIPE,
            )
            stdout, _ = proc.communicate()
            try:
                report = json.loads(stdout.decode(errors="replace")[stdout.find(b"{") :])
            except ValueError:
                report = None
            if isinstance(report, dict) and report.get("latency_p50") is not None:
                self.listen_report = report
            elif not self.stopping.is_set():
                self.stopping.wait(1.0)

    def urls(self) -> Table:
        sid = self.space["id"]
        table = Table(title="open these", show_header=False, box=None)
        table.add_row("listener page", f"{self.url}/s/{sid}")
        table.add_row("host console", f"{self.url}/host")
        table.add_row("playlist", f"{self.url}/hls/{sid}/live.m3u8")
        table.add_row("state", f"{self.url}/api/spaces/{sid}/state")
        table.add_row("host token", self.host_token[:24] + "…")
        return table

    def snapshot(self) -> tuple[list[tuple[str, str, str, str]], str]:
        """Rows (speaker, muted, level, speaking) and a caption with the live edge."""
        sid = self.space["id"]
        try:
            state = self.call("GET", f"/api/spaces/{sid}/state")
            text = self.http.get(f"{self.url}/hls/{sid}/live.m3u8").text
        except (RuntimeError, httpx.HTTPError) as exc:
            return [], f"[red]{exc}"
        rows = []
        for s in state["speakers"]:
            level = s.get("level_db")
            rows.append(
                (
                    str(s["name"]),
                    "muted" if s["muted"] else "",
                    "—" if level is None else f"{level:.1f} dBFS",
                    "speaking" if s["speaking"] else "",
                )
            )
        caption = f"playlist edge: {playlist_edge(text)}"
        if self.listen_report is not None:
            caption += f" | townhall listen: {_describe_listen(self.listen_report)}"
        return rows, caption

    def status(self, started: float) -> Table:
        rows, caption = self.snapshot()
        table = Table(title=f"live for {time.monotonic() - started:4.0f} s", caption=caption)
        for col in ("speaker", "mic", "level", ""):
            table.add_column(col)
        for row in rows:
            table.add_row(*row)
        return table

    def status_line(self, started: float) -> str:
        """One line for logs and pipes: speakers' levels and the live edge."""
        rows, caption = self.snapshot()
        speakers = "; ".join(" ".join(x for x in row if x) for row in rows)
        return f"[{time.monotonic() - started:4.0f} s] {speakers} | {caption}"

    def end(self) -> None:
        if self.ended or not self.space:
            return
        sid = self.space["id"]
        self.ended = True
        self.call("POST", f"/api/spaces/{sid}/end", self.host_token)
        replay = f"{self.url}/hls/{sid}/replay.m3u8"
        for _ in range(50):
            if self.http.get(replay).status_code == 200:
                break
            time.sleep(0.1)
        out.print(f"[green]✓[/] space ended; replay: [bold]{replay}[/]")
        out.print(
            f"  (served while a node runs on this data folder: townhall serve --data {self.data}"
            f" --port {self.url.rsplit(':', 1)[1]}; or townhall export {sid} demo.m4a"
            f" --data {self.data})"
        )


def _pump(stream: IO[bytes], log: IO[bytes]) -> None:
    with log:
        for line in iter(stream.readline, b""):
            log.write(line)
            log.flush()


def playlist_edge(text: str) -> str:
    """``msn.part`` of the last part and how far its end is behind the wall clock."""
    last_pdt: datetime | None = None
    after = 0.0
    msn = int(m.group(1)) if (m := re.search(r"#EXT-X-MEDIA-SEQUENCE:(\d+)", text)) else 0
    seg_msn, part_idx = msn - 1, -1
    for line in text.splitlines():
        if line.startswith("#EXT-X-PROGRAM-DATE-TIME:"):
            last_pdt = datetime.fromisoformat(line.split(":", 1)[1].replace("Z", "+00:00"))
            after = 0.0
            seg_msn += 1
            part_idx = -1
        elif line.startswith("#EXT-X-PART:") and last_pdt is not None:
            dur = re.search(r"DURATION=([\d.]+)", line)
            after += float(dur.group(1)) if dur else 0.0
            part_idx += 1
    if last_pdt is None:
        return "no parts yet"
    behind = datetime.now(UTC).timestamp() - (last_pdt.timestamp() + after)
    return f"part {seg_msn}.{part_idx}, {behind:.2f} s behind real time"


def _describe_listen(report: dict[str, Any]) -> str:
    def ms(key: str) -> str:
        value = report.get(key)
        return "–" if value is None else f"{float(value) * 1000:.0f} ms"

    return (
        f"latency p50 {ms('latency_p50')} p95 {ms('latency_p95')}, "
        f"playout p50 {ms('playout_latency_p50')}, stalls {report.get('stalls', 0)}"
    )


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM and SIGINT both stop the demo cleanly. SIGINT is set explicitly: a process
    started in the background by a non-interactive shell inherits it ignored, and Python then
    installs no KeyboardInterrupt handler, so Ctrl-C (or ``kill -INT``) would do nothing."""

    def handler(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def demo(
    duration: float = typer.Option(None, "--duration", help="Seconds live, then end [Ctrl-C]."),
    port: int = typer.Option(0, "--port", help="Port of the embedded server; 0 picks a free one."),
    data: Path = typer.Option(None, "--data", help="Data folder [a new temporary folder]."),
) -> None:
    """An embedded server, a live space and two synthetic speakers; URLs to open."""
    if duration is not None and duration <= 0:
        fail("--duration must be positive")
    if not 0 <= port <= 65535:
        fail("--port must be 0..65535")
    folder = data if data is not None else Path(tempfile.mkdtemp(prefix="townhall-demo-"))
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        fail(f"cannot use {folder} as the data folder: {exc}")
    children = Children(folder)
    session = Demo(folder, port, children)
    code = 0
    with _sigterm_as_interrupt():
        try:
            _run(session, duration)
        except KeyboardInterrupt:
            out.print("\n[yellow]stopping…")
        except (RuntimeError, httpx.HTTPError, OSError) as exc:
            out.print(f"[bold red]error:[/] {exc}")
            code = 1
        finally:
            try:
                with contextlib.suppress(KeyboardInterrupt):
                    session.stopping.set()
                    children.stop("listen")
                    children.stop("host")
                    children.stop("guest")
                    if session.url:
                        try:
                            session.end()
                        except (RuntimeError, httpx.HTTPError) as exc:
                            out.print(f"[yellow]could not end the space: {exc}")
            finally:
                children.stop()
                session.http.close()
    if code:
        raise typer.Exit(code)


def _run(session: Demo, duration: float | None) -> None:
    out.rule("[bold]townhall demo")
    session.create_user()
    session.start_server()
    session.create_space()
    session.go_live()
    sid = session.space["id"]
    host_wav = write_wav(session.data / "voice-host.wav", synth_voice(220.0, 12.0, seed=1))
    guest_wav = write_wav(session.data / "voice-guest.wav", synth_voice(330.0, 12.0, seed=2))
    session.publish("host", host_wav, session.host_token)
    out.print("[green]✓[/] host publishing a 220 Hz synthetic voice over WHIP")
    guest_token = session.bring_guest()
    session.publish("guest", guest_wav, guest_token)
    out.print("[green]✓[/] guest publishing a 330 Hz synthetic voice (unmutes themselves)")
    session.wait_on_stage(2)
    out.print(session.urls())
    started = time.monotonic()
    session.start_listener()
    until = started + duration if duration is not None else None
    hint = f"for {duration:g} s" if duration is not None else "until Ctrl-C"
    out.print(f"live {hint}; space {sid}")
    if out.is_terminal:
        with Live(session.status(started), console=out, refresh_per_second=2) as live:
            while until is None or time.monotonic() < until:
                time.sleep(min(1.0, max(0.05, (until or 1e18) - time.monotonic())))
                live.update(session.status(started))
    else:
        last = 0.0
        while until is None or time.monotonic() < until:
            time.sleep(min(0.5, max(0.05, (until or 1e18) - time.monotonic())))
            if time.monotonic() - last >= 3:
                last = time.monotonic()
                out.print(session.status_line(started))
