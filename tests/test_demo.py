"""``townhall demo`` as a user runs it: a real embedded server, two synthetic speakers, the
URLs, the replay; and no child process left behind, whether it ends by time or by Ctrl-C."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

pytestmark = pytest.mark.slow

TOWNHALL = [sys.executable, "-m", "townhall"]


def leftovers(data: Path) -> list[int]:
    """Processes carrying the demo's marker for this data folder in their environment."""
    marker = f"TOWNHALL_DEMO={data.resolve()}".encode()
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            env = Path(f"/proc/{entry}/environ").read_bytes()
            state = Path(f"/proc/{entry}/stat").read_text().split(") ", 1)[1][0]
        except OSError:
            continue
        if marker in env.split(b"\0") and state != "Z":
            found.append(int(entry))
    return found


def check_output(text: str, data: Path) -> str:
    sid_match = re.search(r"/api/spaces/([A-Za-z0-9_-]+)/state", text)
    assert sid_match, text
    sid = sid_match.group(1)
    base = re.search(r"(http://127\.0\.0\.1:\d+)/s/" + sid, text)
    assert base, text
    url = base.group(1)
    for needle in (
        f"{url}/s/{sid}",
        f"{url}/host",
        f"{url}/hls/{sid}/live.m3u8",
        f"{url}/api/spaces/{sid}/state",
        f"replay: {url}/hls/{sid}/replay.m3u8",
    ):
        assert needle in text, (needle, text)
    assert (data / "spaces" / sid / "hls" / "replay.m3u8").exists()
    return sid


def test_demo_runs_for_its_duration_and_cleans_up(tmp_path: Path) -> None:
    data = tmp_path / "demo"
    env = {**os.environ, "COLUMNS": "200"}
    proc = subprocess.run(
        [*TOWNHALL, "demo", "--duration", "15", "--port", "0", "--data", str(data)],
        capture_output=True,
        text=True,
        timeout=90,
        env=env,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr
    sid = check_output(proc.stdout, data)
    # both speakers were heard live (levels printed while running)
    assert re.search(r"Demo Host [-\d.]+ dBFS", proc.stdout), proc.stdout
    assert re.search(r"Listener \w+ [-\d.]+ dBFS", proc.stdout), proc.stdout
    replay = (data / "spaces" / sid / "hls" / "replay.m3u8").read_text()
    assert replay.count("#EXTINF") >= 5  # about 15 s of programme, 2 s segments
    assert leftovers(data) == []


def test_ctrl_c_ends_the_space_and_stops_every_child(tmp_path: Path) -> None:
    data = tmp_path / "demo"
    env = {**os.environ, "COLUMNS": "200"}
    proc = subprocess.Popen(
        [*TOWNHALL, "demo", "--data", str(data)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    assert proc.stdout is not None
    lines: list[str] = []
    try:
        deadline = time.monotonic() + 60
        for line in proc.stdout:
            lines.append(line)
            if "until Ctrl-C" in line or time.monotonic() > deadline:
                break
        assert leftovers(data), "the demo's children should be running now"
        time.sleep(1.0)
        proc.send_signal(signal.SIGINT)
        rest, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    text = "".join(lines) + rest
    assert proc.returncode == 0, text
    check_output(text, data)
    assert leftovers(data) == []
    with pytest.raises(httpx.HTTPError):  # the server is gone too
        url = re.search(r"(http://127\.0\.0\.1:\d+)/host", text)
        assert url
        httpx.get(url.group(1) + "/healthz", timeout=1)
