"""A recorded space exported and clipped: ``townhall export``/``townhall clip`` on the data
folder (real subprocesses) and ``POST /api/spaces/{id}/clips`` on a real node; every file is
checked by decoding it with Debian's ffmpeg."""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import m3u8
import numpy as np
import numpy.typing as npt
import pytest

from conftest import Node, run_cli, start_node
from townhall.stage import RtcSettings, ToneTrack, WhipClient

pytestmark = pytest.mark.slow

RATE = 48000
PROBLEM = "application/problem+json"


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def decode(source: str | Path) -> npt.NDArray[np.float64]:
    proc = subprocess.run(
        ["/usr/bin/ffmpeg", "-nostdin", "-loglevel", "error", "-i", str(source)]
        + ["-f", "s16le", "-ac", "1", "-ar", str(RATE), "-"],
        capture_output=True,
        timeout=30,
    )
    assert proc.returncode == 0, proc.stderr.decode()
    return np.frombuffer(proc.stdout, np.int16).astype(np.float64)


def has_tone(x: npt.NDArray[np.float64], freq: float) -> bool:
    spec = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    freqs = np.fft.rfftfreq(len(x), 1 / RATE)
    peak = spec[(freqs > freq - 6) & (freqs < freq + 6)].max()
    return bool(peak > 50 * np.median(spec[(freqs > 100) & (freqs < 4000)]))


@dataclass
class Recorded:
    node: Node
    space_id: str
    host_token: str
    host_key: str
    seconds: float
    """Total of the replay playlist's EXTINF."""


async def _record(node: Node, key: str) -> tuple[str, str]:
    async with httpx.AsyncClient(base_url=node.url, timeout=15, trust_env=False) as c:
        r = await c.post("/api/spaces", json={"title": "Recorded"}, headers=auth(key))
        space = r.json()
        sid, token = space["id"], space["host_token"]
        client = WhipClient(
            f"{node.url}/api/spaces/{sid}/whip", token, RtcSettings(announced_address="127.0.0.1")
        )
        await client.publish(ToneTrack(440))
        await client.wait_connected(10)
        hls = node.data / "spaces" / sid / "hls"
        began = time.monotonic()
        while not (hls / "seg1.m4s").exists() and time.monotonic() - began < 10:
            await asyncio.sleep(0.05)
        await client.close()
        r = await c.post(f"/api/spaces/{sid}/end", headers=auth(token))
        assert r.status_code == 200, r.text
    return sid, token


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Recorded]:
    node = start_node(tmp_path_factory.mktemp("rec") / "data")
    try:
        key = node.add_user("hana")
        sid, token = asyncio.run(_record(node, key))
        replay = httpx.get(f"{node.url}/hls/{sid}/replay.m3u8").text
        total = sum(s.duration for s in m3u8.loads(replay).segments)
        yield Recorded(node, sid, token, key, total)
    finally:
        node.stop()


# -- CLI ---------------------------------------------------------------------------------------


def test_export_writes_the_whole_recording(recorded: Recorded, tmp_path: Path) -> None:
    out = tmp_path / "space.m4a"
    proc = run_cli("export", recorded.space_id, str(out), "--data", str(recorded.node.data))
    assert "wrote" in proc.stdout
    pcm = decode(out)
    assert abs(len(pcm) / RATE - recorded.seconds) < 0.1, (len(pcm) / RATE, recorded.seconds)
    assert recorded.seconds > 4
    assert has_tone(pcm[RATE : 2 * RATE], 440)


def test_clip_cli_last_seconds_and_range(recorded: Recorded, tmp_path: Path) -> None:
    data = str(recorded.node.data)
    last = tmp_path / "last.m4a"
    run_cli("clip", recorded.space_id, str(last), "--seconds", "2", "--data", data)
    assert abs(len(decode(last)) / RATE - 2.0) < 0.05
    ranged = tmp_path / "range.m4a"
    run_cli("clip", recorded.space_id, str(ranged), "--start", "1", "--end", "2.5", "--data", data)
    pcm = decode(ranged)
    assert abs(len(pcm) / RATE - 1.5) < 0.05
    assert has_tone(pcm, 440)


def test_cli_errors_are_clear(recorded: Recorded, tmp_path: Path) -> None:
    data = str(recorded.node.data)
    sid = recorded.space_id
    cases = [
        (("export", "nosuchspace", str(tmp_path / "a.m4a")), "no space"),
        (("export", sid, str(tmp_path / "missing" / "a.m4a")), "does not exist"),
        (("export", sid, str(tmp_path)), "is a directory"),
        (("clip", sid, str(tmp_path / "a.m4a"), "--seconds", "301"), "--seconds"),
        (("clip", sid, str(tmp_path / "a.m4a"), "--start", "500", "--end", "501"), "long"),
        (("export", sid, str(tmp_path / "a.m4a"), "--data", str(tmp_path)), "not a townhall"),
    ]
    for args, needle in cases:
        full = args if "--data" in args else (*args, "--data", data)
        proc = run_cli(*full, check=False)
        assert proc.returncode == 1, (args, proc.stdout, proc.stderr)
        assert needle in " ".join(proc.stderr.split()), (args, proc.stderr)  # rich wraps lines
        assert "Traceback" not in proc.stderr + proc.stdout
    assert not (tmp_path / "a.m4a").exists()


# -- API ---------------------------------------------------------------------------------------


def test_clip_api_on_an_ended_public_space(recorded: Recorded) -> None:
    sid = recorded.space_id
    with httpx.Client(base_url=recorded.node.url, timeout=15, trust_env=False) as c:
        r = c.post(f"/api/spaces/{sid}/clips", json={"seconds": 2})
        assert r.status_code == 201, r.text
        made = r.json()
        assert made["url"].startswith(f"/clips/{sid}/") and made["url"].endswith(".m4a")
        assert abs(made["seconds"] - 2.0) < 0.05
        name = made["url"].rsplit("/", 1)[1]
        assert (recorded.node.data / "spaces" / sid / "clips" / name).stat().st_size == made[
            "bytes"
        ]
        got = c.get(made["url"])
        assert got.status_code == 200 and got.headers["content-type"] == "audio/mp4"
        assert "immutable" in got.headers["cache-control"]
        assert len(got.content) == made["bytes"]
        pcm = decode(f"{recorded.node.url}{made['url']}")
        assert abs(len(pcm) / RATE - 2.0) < 0.05 and has_tone(pcm, 440)
        again = c.post(f"/api/spaces/{sid}/clips", json={"seconds": 2}).json()
        assert again["url"] == made["url"]  # an ended space: same range, same clip

        r = c.post(f"/api/spaces/{sid}/clips", json={"start": 0.5, "end": 1.5})
        assert r.status_code == 201 and abs(r.json()["seconds"] - 1.0) < 0.05

        bad = [
            ({"seconds": 301}, 422),
            ({"seconds": 0}, 422),
            ({"start": 10, "end": 400}, 422),
            ({"seconds": 2, "start": 0}, 422),
            ({"end": 3}, 422),
            ({"start": recorded.seconds + 1, "end": recorded.seconds + 2}, 422),
            ({"colour": "red"}, 422),
            ({"seconds": True}, 422),  # not read as 1.0 s
            ({"seconds": "2"}, 422),
            ({"start": False, "end": 1}, 422),
        ]
        for body, status in bad:
            r = c.post(f"/api/spaces/{sid}/clips", json=body)
            assert r.status_code == status, (body, r.text)
            assert r.headers["content-type"].startswith(PROBLEM) and "Traceback" not in r.text
        r = c.post(f"/api/spaces/{sid}/clips", json={"start": 0, "end": recorded.seconds + 5})
        assert r.status_code == 422 and r.json()["code"] == "out_of_range"
        assert c.post("/api/spaces/nosuch/clips", json={"seconds": 5}).status_code == 404
        assert c.get(f"/clips/{sid}/0123456789abcdef.m4a").status_code == 404
        assert c.get(f"/clips/{sid}/..%2Fhls%2Finit.mp4").status_code in (404, 422)


def test_clip_api_live_ticketed_and_scheduled(recorded: Recorded) -> None:
    key = recorded.host_key
    with httpx.Client(base_url=recorded.node.url, timeout=15, trust_env=False) as c:
        at = "2099-01-01T00:00:00+00:00"
        later = c.post(
            "/api/spaces", json={"title": "Later", "scheduled_start": at}, headers=auth(key)
        ).json()
        r = c.post(f"/api/spaces/{later['id']}/clips", json={"seconds": 5})
        assert r.status_code == 409 and r.headers["content-type"].startswith(PROBLEM)

        space = c.post(
            "/api/spaces", json={"title": "Members", "visibility": "ticketed"}, headers=auth(key)
        ).json()
        sid, host_token = space["id"], space["host_token"]
        r = c.post(f"/api/spaces/{sid}/clips", json={"seconds": 1})
        assert r.status_code == 401, r.text
        grant = c.post(
            f"/api/spaces/{sid}/grants", json={"grants": ["listen"]}, headers=auth(host_token)
        ).json()["token"]
        hls = recorded.node.data / "spaces" / sid / "hls"
        deadline = time.monotonic() + 6
        while not (hls / "seg0.m4s").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        r = c.post(f"/api/spaces/{sid}/clips", json={"seconds": 1}, headers=auth(grant))
        assert r.status_code == 201, r.text  # a live space's recording so far
        assert abs(r.json()["seconds"] - 1.0) < 0.05
        c.post(f"/api/spaces/{sid}/end", headers=auth(host_token))
