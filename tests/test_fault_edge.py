"""An edge (``townhall edge run``: varnishd in front of a real node) killed with SIGKILL (the
whole process group: the CLI and varnishd) and restarted on the same port while a listener
(``townhall.listen.follow``) plays through it.

Kept and asserted: the listener goes on by itself after a few retried requests, positions
strictly increasing (no rewind), with a gap of a few seconds at most; it hears the speaker
before and after.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from conftest import TOWNHALL, Node, free_port, start_node
from test_live_path import auth, new_space, publish, wait_heard
from townhall.listen import PartReceived, RetryPolicy, follow

pytestmark = pytest.mark.slow


class Edge:
    def __init__(self, origin: Node, port: int, log: Path) -> None:
        self.origin, self.port, self.log = origin, port, log
        self.name = f"fault{port}"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        ready_before = self.log.read_text().count("ready on") if self.log.exists() else 0
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                [*TOWNHALL, "edge", "run", "--origin", self.origin.url, "--name", self.name]
                + ["--listen", f"127.0.0.1:{self.port}"]
                + ["--keys", str(self.origin.data / "keys.json")],
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: varnishd dies with it
            )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.log.read_text()
            if self.log.read_text().count("ready on") > ready_before:
                return
            time.sleep(0.1)
        raise AssertionError("edge did not start: " + self.log.read_text())

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(5)
        for leftover in Path(tempfile.gettempdir()).glob(f"townhall-edge-{self.name}-*"):
            shutil.rmtree(leftover, ignore_errors=True)  # SIGKILL left its work dir

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                pass
        self.kill()


@pytest.fixture
def shared(tmp_path: Path) -> Iterator[Node]:
    node = start_node(tmp_path / "data")
    try:
        yield node
    finally:
        node.stop()


@pytest.fixture
def host_key(shared: Node) -> str:
    return shared.add_user("hana")


@pytest.fixture
async def http(shared: Node) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=shared.url, timeout=15, trust_env=False) as c:
        yield c


@pytest.fixture
def edge(shared: Node, tmp_path: Path) -> Iterator[Edge]:
    if shutil.which("varnishd") is None:
        pytest.skip("varnishd is not installed")
    e = Edge(shared, free_port(), tmp_path / "edge.log")
    e.start()
    try:
        yield e
    finally:
        e.stop()


def port_closed(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return False
    except OSError:
        return True


async def test_listener_rides_out_an_edge_restart(
    shared: Node, host_key: str, http: httpx.AsyncClient, edge: Edge
) -> None:
    space = await new_space(http, host_key)
    sid, host_token = space["id"], space["host_token"]
    speaker = await publish(shared.url, sid, host_token, 440)
    received: list[PartReceived] = []
    stop = asyncio.Event()
    try:
        await http.post(f"/api/spaces/{sid}/stage/unmute", headers=auth(host_token))
        await wait_heard(http, sid, {"user:hana"})
        joined = (await http.post(f"/api/spaces/{sid}/join")).json()
        via_edge = joined["playlist_url"].replace(shared.url, f"http://127.0.0.1:{edge.port}")
        listener = asyncio.create_task(
            follow(
                via_edge,
                seconds=None,
                on_part=received.append,
                stop=stop,
                retry=RetryPolicy(attempts=8, backoff=0.25, max_backoff=1.0),
            )
        )
        await asyncio.sleep(3.0)
        assert received, "nothing through the edge"
        edge.kill()
        deadline = time.monotonic() + 5  # the group's processes die a moment after the signal
        while not port_closed(edge.port):
            assert time.monotonic() < deadline, "the edge still listens after SIGKILL"
            await asyncio.sleep(0.05)
        killed = len(received)
        await asyncio.sleep(1.0)
        edge.start()
        await asyncio.sleep(4.0)
        assert len(received) > killed + 6, "the listener did not come back through the edge"
    finally:
        stop.set()
        await speaker.close()
    report = await asyncio.wait_for(listener, 15)
    order = [(p.msn, p.part if p.part is not None else -1) for p in received]
    assert order == sorted(order) and len(set(order)) == len(order)
    arrivals = [p.received_at for p in received]
    gap = max(b - a for a, b in zip(arrivals, arrivals[1:], strict=False))
    assert gap < 6.0, gap  # 1 s down + the restart (varnishd start, ~2 s) + a retry
    assert report.errors <= 10, report.errors
    print(f"\nedge restart: listener gap {gap:.2f} s, {report.errors} failed requests retried")
