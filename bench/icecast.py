"""Icecast 2.4 (Debian ``icecast2``) as an unprivileged child with a generated configuration on
a free loopback port, fed a 64 kb/s MP3 stream by Debian's ffmpeg; and the progressive-HTTP
listeners of :mod:`townhall.loadgen.progressive` against it."""

from __future__ import annotations

import json
import logging
import os
import pwd
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from .common import LOOPBACK, free_port
from .edge import stop_process

logger = logging.getLogger(__name__)

FFMPEG = "/usr/bin/ffmpeg"
MOUNT = "/live"
BITRATE = 64_000
RUN_AS = "nobody"
"""Icecast refuses to run as root; as root we start it as this user."""

CONFIG = """<icecast>
  <location>bench</location>
  <admin>bench@localhost</admin>
  <limits>
    <clients>{clients}</clients>
    <sources>2</sources>
    <queue-size>524288</queue-size>
    <client-timeout>30</client-timeout>
    <header-timeout>15</header-timeout>
    <source-timeout>10</source-timeout>
    <burst-on-connect>1</burst-on-connect>
    <burst-size>65535</burst-size>
  </limits>
  <authentication>
    <source-password>{password}</source-password>
    <relay-password>{password}</relay-password>
    <admin-user>admin</admin-user>
    <admin-password>{password}</admin-password>
  </authentication>
  <hostname>{host}</hostname>
  <listen-socket>
    <port>{port}</port>
    <bind-address>{host}</bind-address>
  </listen-socket>
  <fileserve>1</fileserve>
  <paths>
    <basedir>/usr/share/icecast2</basedir>
    <logdir>{logdir}</logdir>
    <webroot>/usr/share/icecast2/web</webroot>
    <adminroot>/usr/share/icecast2/admin</adminroot>
    <alias source="/" destination="/status.xsl"/>
  </paths>
  <logging>
    <accesslog>access.log</accesslog>
    <errorlog>error.log</errorlog>
    <loglevel>2</loglevel>
    <logsize>10000</logsize>
  </logging>
  <security>
    <chroot>0</chroot>
  </security>
</icecast>
"""


@dataclass(frozen=True)
class Icecast:
    """A running Icecast with a live mount."""

    url: str
    """Stream URL (``http://127.0.0.1:P/live``)."""
    pid: int
    """The icecast2 process (all its threads)."""
    source_pid: int
    """The ffmpeg source client."""
    version: str
    """``icecast2 -v``."""


def _as_user() -> dict[str, Any]:
    if os.geteuid() != 0:
        return {}
    user = pwd.getpwnam(RUN_AS)
    return {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": []}


@contextmanager
def running_icecast(clients: int) -> Iterator[Icecast]:
    """Icecast on a free loopback port with ``clients`` listener slots and a 64 kb/s MP3 mount
    fed by ffmpeg (a 440 Hz sine); both stopped on exit."""
    binary = shutil.which("icecast2")
    if binary is None:
        raise RuntimeError("icecast2 is not installed (apt-get install icecast2)")
    version = subprocess.run([binary, "-v"], capture_output=True, text=True).stdout.strip()
    with tempfile.TemporaryDirectory(prefix="bench-icecast-") as tmp:
        os.chmod(tmp, 0o755)
        logdir = Path(tmp) / "log"
        logdir.mkdir()
        user = _as_user()
        if user:
            os.chown(logdir, user["user"], user["group"])
        port = free_port()
        password = secrets.token_hex(8)
        conf = Path(tmp) / "icecast.xml"
        conf.write_text(
            CONFIG.format(
                clients=clients, password=password, host=LOOPBACK, port=port, logdir=logdir
            )
        )
        os.chmod(conf, 0o644)
        server = subprocess.Popen(
            [binary, "-c", str(conf)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            **user,
        )
        source: subprocess.Popen[bytes] | None = None
        try:
            _wait_port(port, server)
            source = subprocess.Popen(
                [FFMPEG, "-nostdin", "-hide_banner", "-loglevel", "error", "-re"]
                + ["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100"]
                + ["-ac", "1", "-c:a", "libmp3lame", "-b:a", "64k", "-f", "mp3"]
                + ["-content_type", "audio/mpeg"]
                + [f"icecast://source:{password}@{LOOPBACK}:{port}{MOUNT}"],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            url = f"http://{LOOPBACK}:{port}{MOUNT}"
            _wait_mount(url, source)
            yield Icecast(url, server.pid, source.pid, version)
        finally:
            if source is not None:
                stop_process(source, "ffmpeg source")
            stop_process(server, "icecast2")
            errors = (
                (logdir / "error.log").read_text(errors="replace")[-1500:]
                if (logdir / "error.log").exists()
                else ""
            )
            if "EROR" in errors:
                logger.info("icecast error log tail:\n%s", errors)


def _wait_port(port: int, proc: subprocess.Popen[bytes], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"icecast2 exited with status {proc.returncode}")
        try:
            httpx.get(f"http://{LOOPBACK}:{port}/status-json.xsl", timeout=1, trust_env=False)
            return
        except httpx.HTTPError:
            time.sleep(0.1)
    raise RuntimeError("icecast2 did not listen in time")


def _wait_mount(url: str, source: subprocess.Popen[bytes], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if source.poll() is not None:
            raise RuntimeError(f"ffmpeg source exited with status {source.returncode}")
        try:
            with httpx.stream("GET", url, timeout=2, trust_env=False) as r:
                if r.status_code == 200:
                    return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError("the Icecast mount did not go live in time")


def progressive(
    url: str, listeners: int, ramp: float, duration: float, sources: str = "127.2.0.0/16"
) -> dict[str, Any]:
    """Run :mod:`townhall.loadgen.progressive` in its own process; its JSON summary."""
    with tempfile.TemporaryDirectory(prefix="bench-progressive-") as tmp:
        out = Path(tmp) / "run.json"
        proc = subprocess.Popen(
            [sys.executable, "-m", "townhall.loadgen.progressive", "--url", url]
            + ["--listeners", str(listeners), "--ramp", str(ramp), "--duration", str(duration)]
            + ["--sources", sources, "--bitrate", str(BITRATE), "--json", str(out)],
        )
        try:
            proc.wait(duration + 60)
        except subprocess.TimeoutExpired:
            logger.warning("progressive generator overran; stopping it")
        finally:
            stop_process(proc, "progressive generator")
        if proc.returncode != 0 or not out.exists():
            raise RuntimeError(f"progressive generator failed (status {proc.returncode})")
        summary: dict[str, Any] = json.loads(out.read_text())
        return summary
