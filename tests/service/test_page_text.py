"""The web page's text box: shown for a text → image pair's gallery only, and it searches.

Debian's headless Chromium driven by Playwright, as tests/service/test_page.py does (skipped with
the reason where /usr/bin/chromium is missing, a failure under $CI).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from siamese.service import ServiceConfig, ServiceState, create_app
from siamese.service.server import background_server

CHROMIUM = Path("/usr/bin/chromium")
ARGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"]
TIMEOUT_MS = 15_000


@pytest.fixture(scope="module")
def browser(browser_versions: dict[str, str]) -> Iterator[Any]:
    if not CHROMIUM.exists():
        message = f"{CHROMIUM} is missing: install Debian's chromium package"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        browser_versions[str(CHROMIUM)] = launched.version  # printed at the end of the run
        try:
            yield launched
        finally:
            launched.close()


def _open(browser: Any, url: str) -> Any:
    from playwright.sync_api import expect

    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.set_default_timeout(TIMEOUT_MS)
    expect.set_options(timeout=TIMEOUT_MS)
    page.goto(url + "/")
    return page


def test_text_box_searches_a_pair_gallery(
    browser: Any, text_pair_gallery: Path, tmp_path: Path
) -> None:
    from playwright.sync_api import expect

    gallery = Path(shutil.copytree(text_pair_gallery, tmp_path / "gallery"))
    config = ServiceConfig(gallery_dir=gallery, device="cpu")
    with background_server(create_app(ServiceState.open(config))) as url:
        page = _open(browser, url)
        expect(page.locator("#text-form")).to_be_visible()
        page.fill("#text-query", "a big red disc at the top left")
        page.select_option("#k", "3")
        page.click("#text-search")
        expect(page.locator("#results li")).to_have_count(3)
        expect(page.locator("#query-name")).to_have_text("“a big red disc at the top left”")
        expect(page.locator("#query-image")).to_be_hidden()
        expect(page.locator("#verdict")).to_contain_text("Best match: id_")
        page.close()


def test_no_text_box_for_a_single_model_gallery(
    browser: Any, gallery_dir: Path, tmp_path: Path
) -> None:
    from playwright.sync_api import expect

    gallery = Path(shutil.copytree(gallery_dir, tmp_path / "gallery"))
    config = ServiceConfig(gallery_dir=gallery, device="cpu")
    with background_server(create_app(ServiceState.open(config))) as url:
        page = _open(browser, url)
        expect(page.locator("#summary")).to_contain_text("images of")
        expect(page.locator("#text-form")).to_be_hidden()
        page.close()
