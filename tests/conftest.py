"""Shared fixtures: a real ``townhall serve`` process on a free loopback port."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import httpx
import pytest

from redis_fixture import redis_url  # noqa: F401

ROOT = Path(__file__).resolve().parent.parent
TOWNHALL = [sys.executable, "-m", "townhall"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run_cli(
    *args: str, data: Path | None = None, check: bool = True
) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    if data is not None:
        env["TOWNHALL_DATA"] = str(data)
    proc = subprocess.run([*TOWNHALL, *args], capture_output=True, text=True, timeout=120, env=env)
    if check and proc.returncode != 0:
        raise AssertionError(f"townhall {' '.join(args)} failed: {proc.stderr}\n{proc.stdout}")
    return proc


@dataclass
class Node:
    """A running townhall server."""

    url: str
    data: Path
    process: subprocess.Popen[bytes]

    def add_user(self, name: str, *flags: str) -> str:
        out = run_cli("user", "add", name, *flags, "--json", "--data", str(self.data))
        return str(json.loads(out.stdout)["api_key"])

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)


def start_node(data: Path, *extra: str, port: int | None = None) -> Node:
    port = port or free_port()
    data.mkdir(parents=True, exist_ok=True)
    with open(data.parent / f"node-{port}.log", "wb") as log:
        proc = _spawn(data, port, log, extra)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"server exited: {(data.parent / f'node-{port}.log').read_text()}")
        try:
            if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                return Node(url, data, proc)
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    proc.kill()
    raise AssertionError("server did not come up in 30 s")


@pytest.fixture
def node(tmp_path: Path) -> Iterator[Node]:
    n = start_node(tmp_path / "data")
    try:
        yield n
    finally:
        n.stop()


@pytest.fixture
def client(node: Node) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=node.url, timeout=10) as c:
        yield c


def _spawn(
    data: Path, port: int, log: IO[bytes], extra: tuple[str, ...]
) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [
            *TOWNHALL,
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--data",
            str(data),
            "--rtc-address",
            "127.0.0.1",
            *extra,
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
