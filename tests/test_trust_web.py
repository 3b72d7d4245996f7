"""The labels people see: the warning on a flagged space and the verified badge (Chromium)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from conftest import Node

pytestmark = [pytest.mark.browser]

sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright==1.65.2")

CHROMIUM = Path("/usr/bin/chromium")
if not CHROMIUM.exists():
    pytest.skip("Debian's chromium is not installed", allow_module_level=True)


def create(node: Node, key: str, title: str) -> dict[str, Any]:
    at = (datetime.now(UTC) + timedelta(hours=2)).isoformat()
    r = httpx.post(
        f"{node.url}/api/spaces",
        json={"title": title, "scheduled_start": at},
        headers={"Authorization": f"Bearer {key}"},
    )
    assert r.status_code == 201, r.text
    return dict(r.json())


def test_warning_banner_and_verified_badge(node: Node) -> None:
    elon = node.add_user("elonmusk", "--verified", "--display-name", "Elon Musk")
    fake = node.add_user("fan42", "--display-name", "Еlon Musk")  # Cyrillic Е
    real = create(node, elon, "Elon Musk AMA")
    faked = create(node, fake, "Free bitcoin: scan the QR code")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True)
        try:
            page = browser.new_page()
            page.goto(f"{node.url}/s/{faked['id']}")
            banner = page.get_by_role("region", name="Be careful with this space")
            banner.wait_for(state="visible", timeout=10_000)
            text = banner.inner_text()
            assert "Possible impersonation of verified host Elon Musk" in text
            assert "This space matches known scam patterns" in text
            assert page.locator("#host .verified-badge").count() == 0

            page.goto(f"{node.url}/s/{real['id']}")
            page.locator("#host .verified-badge").wait_for(state="visible", timeout=10_000)
            assert page.locator("#host").inner_text().endswith("✓ Verified")
            assert page.locator("#trust-warning").is_hidden()

            page.goto(f"{node.url}/")
            cards = page.locator("#upcoming li")
            cards.first.wait_for(timeout=10_000)
            flagged = cards.filter(has_text="Free bitcoin")
            assert "Possible impersonation of verified host Elon Musk" in flagged.inner_text()
            mine = cards.filter(has_text="Elon Musk AMA")
            assert mine.locator(".verified-badge").inner_text().strip() == "✓ Verified"
            assert mine.locator(".trust-note").count() == 0
        finally:
            browser.close()
