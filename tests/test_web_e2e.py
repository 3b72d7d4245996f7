"""The web app end to end in Debian's Chromium: host console → WHIP from the browser →
LL-HLS listener pages (hls.js) → request to speak → recording.

Each browser process gets its own fake microphone (a WAV tone made here), and the pages
expose ``window.townhallProbe(freqs)``: an AnalyserNode on what the <audio> element plays.
"""

from __future__ import annotations

import re
import time
import wave
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from conftest import ROOT, Node, start_node

pytestmark = [pytest.mark.browser, pytest.mark.slow]

sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright==1.65.2")

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = ROOT / "test-artifacts"
SCREENSHOTS = ROOT / "docs" / "screenshots"
VENDOR = ROOT / "src" / "townhall" / "web" / "static" / "vendor" / "hls.min.mjs"
HOST_HZ = 440.0
GUEST_HZ = 660.0

if not CHROMIUM.exists():
    pytest.skip("Debian's chromium is not installed", allow_module_level=True)
if not VENDOR.exists():
    pytest.fail("hls.js is not vendored: run web/build.sh", pytrace=False)


def tone_wav(path: Path, hz: float, seconds: float = 20.0, rate: int = 48000) -> Path:
    """A mono 16-bit tone, -12 dBFS, beeping 0.8 s on / 0.2 s off so speech-oriented noise
    suppression keeps it (a perfectly steady tone looks like background noise)."""
    t = np.arange(int(seconds * rate)) / rate
    gate = ((t % 1.0) < 0.8).astype(np.float64)
    ramp = np.minimum(1.0, np.minimum(t % 1.0, 0.8 - (t % 1.0)).clip(0) / 0.01)
    signal = 0.25 * np.sin(2 * np.pi * hz * t) * gate * ramp
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes((signal * 32767).astype("<i2").tobytes())
    return path


def chromium_args(wav: Path) -> list[str]:
    return [
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--use-fake-ui-for-media-stream",
        "--use-fake-device-for-media-stream",
        f"--use-file-for-fake-audio-capture={wav}",
        "--allow-loopback-in-peer-connection",
        "--disable-features=WebRtcHideLocalIpsWithMdns",
        "--autoplay-policy=no-user-gesture-required",
    ]


_CANDIDATE = re.compile(r"^a=candidate:\S+ \d+ \S+ \d+ (\S+) \d+ typ", re.MULTILINE)


def loopback_only(sdp: str) -> str:
    """Keep only 127.0.0.1 ICE candidates: Chromium also offers the machine's other
    interfaces, and no packet of this test may leave loopback."""
    kept = [
        line
        for line in sdp.splitlines(keepends=True)
        if not line.startswith("a=candidate:")
        or (_CANDIDATE.match(line) and _CANDIDATE.match(line).group(1) == "127.0.0.1")  # type: ignore[union-attr]
    ]
    return "".join(kept)


class Browsers:
    def __init__(self, playwright: Any, tmp: Path) -> None:
        self.playwright = playwright
        self.tmp = tmp
        self.browsers: list[Any] = []
        self.offers: list[str] = []
        self.raw_offers: list[str] = []
        self.failures: list[tuple[int, str, str]] = []

    def launch(self, hz: float) -> Any:
        wav = tone_wav(self.tmp / f"tone-{int(hz)}.wav", hz)
        browser = self.playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=chromium_args(wav)
        )
        self.browsers.append(browser)
        return browser

    def page(self, browser: Any, *, width: int = 390, height: int = 844) -> Any:
        context = browser.new_context(viewport={"width": width, "height": height})
        context.route(re.compile(r".*/api/spaces/[^/]+/whip$"), self._filter_offer)
        page = context.new_page()
        page.set_default_timeout(20_000)
        page.on("dialog", lambda dialog: dialog.accept())
        page.on(
            "console", lambda m: m.type in ("error", "warning") and print(f"[console] {m.text}")
        )
        page.on("pageerror", lambda e: print(f"[pageerror] {e}"))
        page.on("response", self._record_failure)
        return page

    def _record_failure(self, response: Any) -> None:
        """Log refused requests with their address (the console names neither)."""
        if response.status >= 400:
            path = httpx.URL(response.url).path
            self.failures.append((response.status, response.request.method, path))
            print(f"[http {response.status}] {response.request.method} {path[:120]}")

    def _filter_offer(self, route: Any) -> None:
        request = route.request
        if request.method != "POST":
            route.continue_()
            return
        offer = loopback_only(request.post_data or "")
        self.raw_offers.append(request.post_data or "")
        self.offers.append(offer)
        route.continue_(post_data=offer)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Node]:
    node = start_node(tmp_path / "data")
    try:
        yield node
    finally:
        node.stop()


@pytest.fixture
def browsers(tmp_path: Path) -> Iterator[Browsers]:
    with sync_api.sync_playwright() as pw:
        b = Browsers(pw, tmp_path)
        try:
            yield b
        finally:
            for browser in b.browsers:
                browser.close()


def wait_for(what: str, check: Callable[[], Any], timeout: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(0.25)
    raise AssertionError(f"timed out waiting for {what} (last: {last!r})")


def hears(page: Any, hz: float, *, dominant: bool = True, probe: str = "townhallProbe") -> Any:
    """True once the page's probe finds ``hz`` loud (and, if asked, the loudest tone)."""
    m = page.evaluate(f"() => window.{probe} ? window.{probe}([{hz}]) : null")
    if not m:
        return None
    loud = m["levels"].get(str(int(hz)), -200) > -60
    near = abs(m["frequency"] - hz) < 15
    return m if loud and (near or not dominant) else None


def shot(page: Any, name: str, *, docs: bool = False) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)
    if docs:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=False)


def test_host_speaker_listener_replay(server: Node, browsers: Browsers) -> None:
    key = server.add_user("alice")
    host_browser = browsers.launch(HOST_HZ)
    guest_browser = browsers.launch(GUEST_HZ)

    # 1. the host keeps the key, creates a space (live at once) in the console
    host = browsers.page(host_browser, width=1000, height=1400)
    host.goto(server.url + "/host")
    host.get_by_label("API key", exact=True).fill(key)
    host.get_by_role("button", name="Keep key").click()
    host.get_by_label("Title", exact=True).fill("Browser test space")
    host.get_by_role("button", name="Create and go live").click()
    host.locator("#c-badge", has_text="live").wait_for()
    space_id = host.locator("#c-share").input_value().rsplit("/", 1)[1]

    # 2. the host publishes the 440 Hz tone over WHIP from the console
    host.get_by_role("button", name="Speak: publish microphone").click()
    host.get_by_text("Connected: you are on the stage.").wait_for()
    assert browsers.offers and all(
        a == "127.0.0.1" for a in _CANDIDATE.findall(browsers.offers[-1])
    ), browsers.offers
    pair = host.evaluate("() => window.townhallHost.publisher.selectedPair()")
    assert pair is None or pair["remote"] == "127.0.0.1", pair

    # 3. a listener (another browser, 660 Hz microphone) hears 440 Hz; the count rises
    guest = browsers.page(guest_browser)
    guest.goto(f"{server.url}/s/{space_id}")
    guest.locator("#badge", has_text="Live").wait_for()
    m = wait_for("the host's tone at the listener", lambda: hears(guest, HOST_HZ), 25)
    print("listener hears", m)
    wait_for(
        "the listener count",
        lambda: int(guest.locator("#listeners").get_attribute("data-count") or 0) >= 1,
    )
    assert "1 listener" in guest.locator("#listeners").inner_text()
    wait_for("the console's count", lambda: host.locator("#c-listeners").inner_text() != "0")
    guest.get_by_role("button", name=re.compile("React 👏")).click()
    wait_for(
        "the reaction total",
        lambda: guest.locator("[data-emoji='👏'] .count").inner_text() == "1",
    )
    shot(guest, "listener", docs=True)

    # 4. the listener asks to speak; the host accepts; their 660 Hz reaches a second listener
    guest.get_by_role("button", name="Request to speak").click()
    request = host.locator("#c-requests-list li")
    request.wait_for()
    shot(host, "host-console", docs=True)
    request.get_by_role("button", name=re.compile("^Accept")).click()
    guest.get_by_role("heading", name="You are on stage").wait_for()
    guest.get_by_role("button", name="Join with microphone").click()
    # the WHIP session is up (the page keeps Unmute disabled until then), and muted
    guest.get_by_text("Connected. You are muted: unmute to speak.").wait_for()
    guest.get_by_role("button", name="Unmute", exact=True).click()
    # the stage's answer: the label, the pressed state and the status line all agree
    guest.get_by_role("button", name="Mute", exact=True, pressed=True).wait_for()
    guest.get_by_text("You are unmuted: everyone hears you.").wait_for()
    assert guest.evaluate("() => window.townhall.muted") is False
    refused = [f for f in browsers.failures if f[0] == 401 or (f[0] == 403 and "/api/" in f[2])]
    assert not refused, refused  # every request so far carried the right credential
    # the speaker hears the stage minus themselves (the N-1 return): the host's tone
    wait_for(
        "the host's tone in the speaker's return",
        lambda: hears(guest, HOST_HZ, probe="townhallReturnProbe"),
    )
    shot(guest, "speaker", docs=True)
    host.get_by_role("button", name="Mute", exact=True).click()  # now only the guest's tone
    second = browsers.page(host_browser)
    second.goto(f"{server.url}/s/{space_id}")
    m = wait_for("the guest's tone at a second listener", lambda: hears(second, GUEST_HZ), 25)
    print("second listener hears", m)
    wait_for(
        "two listeners",
        lambda: int(second.locator("#listeners").get_attribute("data-count") or 0) >= 2,
    )

    # 5. the host ends the space; the listener page offers the recording and it plays
    host.get_by_role("button", name="End space").click()
    second.get_by_role("heading", name="This space has ended").wait_for()
    second.get_by_role("button", name="Play the recording").click()
    wait_for(
        "the recording playing",
        lambda: second.evaluate("() => document.querySelector('#audio').currentTime") > 1,
        20,
    )
    m = wait_for("a tone in the recording", lambda: hears(second, HOST_HZ, dominant=False), 20)
    print("recording", m)
    shot(second, "ended")

    replay = browsers.page(host_browser)
    replay.goto(f"{server.url}/s/{space_id}/replay")
    replay.get_by_role("button", name="Play", exact=True).click()
    wait_for("replay duration", lambda: replay.locator("#duration").inner_text() != "--:--")
    replay.get_by_role("button", name="Forward 15 seconds").click()
    wait_for(
        "the seek",
        lambda: replay.evaluate("() => document.querySelector('#audio').currentTime") >= 3,
    )
    replay.get_by_role("button", name="Clip the 30 s before the playhead").click()
    clip = replay.locator("#clip-status")
    wait_for("the clip answer", lambda: clip.inner_text() not in ("", "Making the clip…"))
    clip_api = httpx.post(f"{server.url}/api/spaces/{space_id}/clips", json={"seconds": 5})
    if clip_api.status_code in (404, 405):
        assert clip.inner_text() == "Clips are not available on this server yet."
    elif clip_api.status_code == 201:
        href = clip.get_by_role("link").get_attribute("href")
        assert href and httpx.get(httpx.URL(server.url).join(href)).status_code == 200
    shot(replay, "replay", docs=True)

    home = browsers.page(host_browser)
    home.goto(server.url + "/")
    home.get_by_role("heading", name="Live audio spaces").wait_for()
    shot(home, "home", docs=True)


def test_countdown_waiting_room_then_live(server: Node, browsers: Browsers) -> None:
    """Before the start: a countdown and the one tap; a gate's 202 shows the waiting room
    and is polled as asked; then the space plays by itself."""
    key = server.add_user("bob")
    auth = {"Authorization": f"Bearer {key}"}
    start = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    created = httpx.post(
        f"{server.url}/api/spaces",
        json={"title": "Scheduled chat", "scheduled_start": start},
        headers=auth,
    )
    assert created.status_code == 201, created.text
    space_id = created.json()["id"]
    page = browsers.page(browsers.launch(HOST_HZ))
    gate_answers: list[float] = []

    def gate(route: Any) -> None:
        if len(gate_answers) < 2:
            gate_answers.append(time.monotonic())
            body = {"position": 3 - len(gate_answers), "eta_seconds": 42, "poll_after": 1}
            route.fulfill(status=202, json=body)
        else:
            route.continue_()

    page.route(re.compile(r".*/api/spaces/[^/]+/join$"), gate)
    page.goto(f"{server.url}/s/{space_id}")
    page.get_by_role("heading", name="Starts soon").wait_for()
    assert re.fullmatch(r"(00:)?59:\d\d", page.locator("#countdown").inner_text())
    page.get_by_role("button", name="Play when it starts").click()
    shot(page, "countdown", docs=True)

    home = browsers.page(browsers.browsers[0])
    home.goto(server.url + "/")
    home.locator("#upcoming [data-start]").wait_for()
    assert "in " in home.locator("#upcoming [data-start]").inner_text()

    started = httpx.post(f"{server.url}/api/spaces/{space_id}/start", headers=auth)
    assert started.status_code == 200, started.text
    page.get_by_role("heading", name="Waiting room").wait_for()
    assert page.locator("#waiting-position").inner_text() in ("#2", "#1")
    assert page.locator("#waiting-eta").inner_text() == "~00:42"
    shot(page, "waiting-room")
    page.locator("#listen").wait_for()
    assert page.locator("#waiting").is_hidden()
    assert len(gate_answers) == 2 and gate_answers[1] - gate_answers[0] >= 0.85  # polite
    wait_for(
        "playback",
        lambda: page.evaluate("() => !document.querySelector('#audio').paused"),
    )
