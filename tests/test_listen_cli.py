"""``townhall listen`` as a user runs it: a subprocess against a real in-test LL-HLS origin."""

from __future__ import annotations

import asyncio
import json
import socket
import sys
import time
import wave
from pathlib import Path

from test_listen_live import RATE, Origin, live_origin, serving

KEYS = {
    "seconds",
    "parts",
    "bytes",
    "latency_p50",
    "latency_p95",
    "latency_max",
    "playout_latency_p50",
    "stalls",
    "stall_seconds",
    "errors",
    "ended",
}


async def townhall(*args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "townhall",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 25)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_listen_json_and_wav(tmp_path: Path) -> None:
    wav_path = tmp_path / "f.wav"
    async with live_origin(tmp_path / "prog") as (_, base):
        code, out, err = await townhall(
            "listen", f"{base}/hls/s1/live.m3u8", "--seconds", "3", "--json", "--out", str(wav_path)
        )
    assert code == 0, err
    report = json.loads(out)
    assert KEYS <= report.keys()
    assert report["seconds"] >= 3.0 and report["parts"] >= 6 and report["bytes"] > 10_000
    assert 0 < report["latency_p50"] < 1.5 and report["stalls"] == 0 and report["errors"] == 0
    assert report["ended"] is False and report["stopped"] == "seconds"
    with wave.open(str(wav_path), "rb") as wav:
        assert wav.getframerate() == RATE and wav.getnchannels() == 1
        assert wav.getnframes() == 3 * RATE
    assert "Traceback" not in err


async def test_listen_replay_prints_a_summary(tmp_path: Path) -> None:
    origin = Origin(tmp_path / "prog")
    await origin.push_seconds(3.0, time.time() - 30)
    await origin.finish()
    async with serving(origin.app) as base:
        code, out, err = await townhall("listen", f"{base}/hls/s1/replay.m3u8")
    assert code == 0, err
    assert "replay" in out and "EXT-X-ENDLIST" in out and "2 (2 whole segments)" in out
    assert "latency" not in out


async def test_unreachable_url_is_a_clean_error() -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    code, out, err = await townhall(
        "listen", f"http://127.0.0.1:{port}/hls/s1/live.m3u8", "--seconds", "1"
    )
    assert code == 1
    assert "error:" in err and "ConnectError" in err and "gave up" in err
    assert "Traceback" not in err + out


async def test_bad_url_and_bad_options(tmp_path: Path) -> None:
    code, _, err = await townhall("listen", "not a url")
    assert code == 1 and "not an http(s) URL" in err and "Traceback" not in err
    code, _, err = await townhall("listen", "http://127.0.0.1:1/x.m3u8", "--seconds", "0")
    assert code == 1 and "--seconds must be positive" in err


async def test_ticketed_space_json_error(tmp_path: Path) -> None:
    origin = Origin(tmp_path / "prog")
    origin.ticketed = True
    async with serving(origin.app) as base:
        code, out, err = await townhall("listen", f"{base}/hls/s1/live.m3u8", "--json")
    assert code == 1
    assert "ticketed" in err and "join" in err and "Traceback" not in err
    assert "ticketed" in json.loads(out)["error"]
