"""The web page in a real browser: Debian's headless Chromium driven by Playwright (no browser download).

CI (.ci/run) installs /usr/bin/chromium, so there a missing browser is a failure; on a developer
machine without it (and without $CI) the test is skipped with the reason.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from siamese.service import ServiceConfig, ServiceState, create_app
from siamese.service.server import background_server

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"]


def _require_browser() -> None:
    if CHROMIUM.exists():
        return
    message = f"{CHROMIUM} is missing: install Debian's chromium package (apt-get install -y chromium), as .ci/run does"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


def test_search_and_add_in_the_browser(
    service_gallery: Path,
    unseen_dataset: Path,
    tiny_dataset: Path,
    tmp_path: Path,
    image_of: Callable[..., Path],
) -> None:
    _require_browser()
    from playwright.sync_api import expect, sync_playwright

    state = ServiceState.open(
        ServiceConfig(gallery_dir=service_gallery, device="cpu", refresh_s=0.1)
    )
    query = image_of(unseen_dataset, "id_003", 4)
    with background_server(create_app(state)) as url, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 900})
            page.goto(url + "/")
            expect(page.locator("#gallery-table tbody tr")).to_have_count(4)
            expect(page.locator("#summary")).to_contain_text("24 images of 4 identities")

            page.set_input_files("#file-input", str(query))
            first = page.locator("#results .match").first
            expect(first.locator(".identity")).to_have_text("id_003")
            expect(first.locator(".distance")).to_contain_text("distance 0.000")
            expect(page.locator("#results .match img").first).to_have_js_property("complete", True)
            screenshot = tmp_path / "search.png"
            page.screenshot(path=str(screenshot), full_page=True)
            assert screenshot.is_file() and screenshot.stat().st_size > 0

            page.fill("#add-identity", "visitor")
            page.set_input_files(
                "#add-files", [str(image_of(tiny_dataset, "id_006", i)) for i in range(2)]
            )
            page.click("#add-form button[type=submit]")
            expect(page.locator("#add-status")).to_contain_text("added 2 image(s)")
            expect(page.locator("#gallery-table tbody tr")).to_have_count(5)
            expect(page.locator("#gallery-table")).to_contain_text("visitor")

            from siamese.index import Gallery

            Gallery.set_threshold(
                service_gallery, 1e-6
            )  # calibrated elsewhere while serving: picked up by the service
            deadline = time.monotonic() + 10
            while (
                httpx.get(f"{url}/v1/gallery").json()["threshold"] is None
                and time.monotonic() < deadline
            ):
                time.sleep(0.05)
            page.set_input_files(
                "#file-input", str(image_of(tiny_dataset, "id_007", 0))
            )  # nobody in the gallery
            expect(page.locator("#verdict")).to_contain_text("Unknown")
            expect(page.locator("#summary")).to_contain_text("unknown beyond distance")
            expect(page.locator("#results .match .badge").first).to_have_text("beyond threshold")
            page.screenshot(path=str(tmp_path / "unknown.png"), full_page=True)
        finally:
            browser.close()
