"""The web page in a real browser.

Debian's headless Chromium driven by Playwright (no browser download).

Each test starts the service on a private copy of the test gallery and drives the page as a
person would: searches that succeed and fail, the k selector, threshold badges, the add form's
states, the identity view with removals, the drop zone by keyboard, phone and desktop widths,
the API documentation with the network unreachable, and axe-core's accessibility rules.

CI (.ci/run) installs /usr/bin/chromium, so there a missing browser is a failure; on a developer
machine without it (and without $CI) the tests are skipped with the reason. Set
$SIAMESE_PAGE_SCREENSHOTS to a folder to keep the screenshots the tests take.
"""

from __future__ import annotations

import os
import re
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import httpx
import pytest

from siamese.service import ServiceConfig, ServiceState, create_app
from siamese.service.server import background_server

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"]
AXE = Path(__file__).parent / "assets" / "axe.min.js"  # axe-core 4.14.1 (MPL-2.0), test-only
DESKTOP = {"width": 1280, "height": 900}
PHONES = ({"width": 390, "height": 844}, {"width": 320, "height": 640})
TIMEOUT_MS = 15_000

ImageOf = Callable[..., Path]


def _require_browser() -> None:
    if CHROMIUM.exists():
        return
    message = (
        f"{CHROMIUM} is missing: install Debian's chromium package "
        "(apt-get install -y chromium), as .ci/run does"
    )
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="module")
def browser(browser_versions: dict[str, str]) -> Iterator[Any]:
    """One headless Chromium for the module (each test opens its own pages)."""
    _require_browser()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        browser_versions[str(CHROMIUM)] = launched.version  # printed at the end of the run
        try:
            yield launched
        finally:
            launched.close()


@contextmanager
def _serving(gallery: Path, **overrides: Any) -> Iterator[str]:
    config = ServiceConfig(gallery_dir=gallery, device="cpu", refresh_s=0.1, **overrides)
    with background_server(create_app(ServiceState.open(config))) as url:
        yield url


def _page(browser: Any, url: str, viewport: dict[str, int] = DESKTOP, **options: Any) -> Any:
    from playwright.sync_api import expect

    page = browser.new_page(viewport=viewport, **options)
    page.set_default_timeout(TIMEOUT_MS)
    expect.set_options(timeout=TIMEOUT_MS)
    failures: list[str] = []
    page.on("response", lambda r: r.status >= 400 and failures.append(f"{r.status} {r.url}"))
    page.failures = failures  # requests that failed (a favicon 404 would show here)
    page.on("dialog", lambda dialog: dialog.accept())  # removals ask for confirmation
    page.goto(url + "/")
    return page


def _screenshot(page: Any, tmp_path: Path, name: str) -> None:
    path = tmp_path / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    keep = os.environ.get("SIAMESE_PAGE_SCREENSHOTS")
    if keep:
        Path(keep).mkdir(parents=True, exist_ok=True)
        shutil.copy(path, Path(keep) / path.name)


def _wait_threshold(url: str, value: float) -> None:
    deadline = time.monotonic() + 10
    while httpx.get(f"{url}/v1/gallery").json()["threshold"] != value:
        assert time.monotonic() < deadline, "the service did not pick up the threshold"
        time.sleep(0.05)


def _query(url: str, path: Path, k: int = 5) -> dict[str, Any]:
    with path.open("rb") as handle:
        return httpx.post(f"{url}/v1/query?k={k}", files={"file": handle}).json()


def _luminance(rgb: tuple[float, ...]) -> float:
    def channel(c: float) -> float:
        c = c / 255
        return c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4

    r, g, b = (channel(c) for c in rgb[:3])
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def _contrast(css_a: str, css_b: str) -> float:
    """WCAG contrast ratio of two opaque CSS rgb() colours."""
    a, b = (tuple(float(x) for x in re.findall(r"[\d.]+", c)[:3]) for c in (css_a, css_b))
    high, low = sorted((_luminance(a), _luminance(b)), reverse=True)
    return (high + 0.05) / (low + 0.05)


def _style(page: Any, selector: str, prop: str) -> str:
    return page.eval_on_selector(selector, f"e => getComputedStyle(e).{prop}")


def test_search_states_badges_and_add_form(
    browser: Any,
    service_gallery: Path,
    unseen_dataset: Path,
    tiny_dataset: Path,
    tmp_path: Path,
    image_of: ImageOf,
) -> None:
    from playwright.sync_api import expect

    query = image_of(unseen_dataset, "id_003", 4)  # in the gallery: distance 0 to itself
    stranger = image_of(tiny_dataset, "id_007", 0)  # nobody in the gallery
    not_an_image = tmp_path / "notes.txt"
    not_an_image.write_text("this is not a picture\n")
    with _serving(service_gallery) as url:
        page = _page(browser, url)
        expect(page.locator("#gallery-table tbody tr")).to_have_count(4)
        expect(page.locator("#summary")).to_contain_text("24 images of 4 identities")

        page.set_input_files("#file-input", str(query))
        cards = page.locator("#results .match")
        expect(cards).to_have_count(4)  # k=5, but the gallery holds 4 identities
        expect(page.locator("#verdict")).to_have_text(
            re.compile(r"^Best match: id_003 \(100% similar")
        )
        expect(cards.first.locator(".distance")).to_have_text("distance 0.000")
        expect(page.locator("#query-image")).to_have_js_property("complete", True)
        expect(page.locator("#legend")).to_contain_text("Lower distance = more alike")

        page.select_option("#k", "3")  # re-runs the search
        expect(cards).to_have_count(3)
        page.select_option("#k", "5")
        expect(cards).to_have_count(4)

        page.set_input_files("#file-input", str(not_an_image))  # a failed search after a good one
        expect(page.locator("#search-error")).to_be_visible()
        expect(page.locator("#search-error")).to_contain_text("notes.txt")
        assert page.get_attribute("#search-error", "role") == "alert"
        expect(page.locator("#verdict")).to_be_hidden()
        expect(page.locator("#verdict")).to_have_text("")
        expect(cards).to_have_count(0)
        expect(page.locator("#query-image")).not_to_have_attribute("src", re.compile("."))
        expect(page.locator("#query-view")).to_be_hidden()

        # A threshold between the query's own identity and the next: every farther card is badged.
        near, far = _query(url, query), _query(url, stranger)
        threshold = 0.99 * min(near["identities"][1]["distance"], far["identities"][0]["distance"])
        from siamese.index import Gallery

        Gallery.set_threshold(service_gallery, threshold)  # as `siamese index threshold` would
        _wait_threshold(url, threshold)
        page.set_input_files("#file-input", str(query))
        expect(cards).to_have_count(4)
        expect(page.locator("#verdict")).to_have_class("known")
        distances = [float(d) for d in cards.evaluate_all("cs => cs.map(c => c.dataset.distance)")]
        badged = cards.evaluate_all("cs => cs.map(c => !!c.querySelector('.badge'))")
        assert badged == [d > threshold for d in distances] and badged.count(True) == 3
        _screenshot(page, tmp_path, "search-desktop")
        page.set_viewport_size(PHONES[0])
        _screenshot(page, tmp_path, "search-phone")
        page.set_viewport_size(DESKTOP)

        page.set_input_files("#file-input", str(stranger))
        expect(page.locator("#verdict")).to_have_text(re.compile("^Unknown: even the nearest"))
        expect(page.locator("#verdict")).to_have_class("unknown")
        expect(cards).to_have_count(4)
        expect(page.locator("#results .match .badge")).to_have_count(4)
        expect(page.locator("#results .match .badge").first).to_have_text("beyond threshold")
        _screenshot(page, tmp_path, "unknown-desktop")
        page.set_viewport_size(PHONES[0])
        _screenshot(page, tmp_path, "unknown-phone")
        page.set_viewport_size(DESKTOP)

        # The add form: an error looks like an error, a success like a success; the button waits.
        page.evaluate(
            """() => { window.buttonStates = [];
            const b = document.querySelector('#add-form button');
            new MutationObserver(() => window.buttonStates.push(b.disabled))
              .observe(b, {attributes: true, attributeFilter: ['disabled']}); }"""
        )
        page.fill("#add-identity", ".hidden")
        page.set_input_files("#add-files", str(image_of(tiny_dataset, "id_006", 0)))
        page.click("#add-form button[type=submit]")
        error = page.locator("#add-error")
        expect(error).to_be_visible()
        expect(error).to_contain_text("cannot be used")
        expect(error).to_have_attribute("role", "alert")
        expect(page.locator("#add-status")).to_be_hidden()
        assert page.input_value("#add-identity") == ".hidden"  # kept, to be corrected
        error_colour = _style(page, "#add-error", "color")

        page.fill("#add-identity", "visitor")
        duplicate = image_of(unseen_dataset, "id_001", 0)  # already in the gallery as id_001
        page.set_input_files(
            "#add-files", [str(image_of(tiny_dataset, "id_006", 1)), str(duplicate)]
        )
        page.click("#add-form button[type=submit]")
        status = page.locator("#add-status")
        expect(status).to_contain_text("Added 2 images to “visitor”")
        expect(error).to_be_hidden()
        expect(page.locator("#add-warning")).to_contain_text(
            f"{duplicate.name} is already in the gallery as id_001"
        )
        assert _style(page, "#add-status", "color") != error_colour
        assert "error" in (error.get_attribute("class") or "") and "success" in (
            status.get_attribute("class") or ""
        )
        assert (
            page.input_value("#add-identity") == ""
            and page.eval_on_selector("#add-files", "e => e.files.length") == 0
        )
        # The button comes back once the gallery list is refreshed, just after the status shows.
        expect(page.locator("#add-form button[type=submit]")).to_be_enabled()
        assert page.evaluate("window.buttonStates") == [
            True,
            False,
            True,
            False,
        ]  # disabled while adding
        expect(page.locator("#add-form button")).to_be_enabled()
        expect(page.locator("#gallery-table")).to_contain_text("visitor")
        # The failed search and the refused add, and nothing else (no favicon 404, no thumbnail
        # error).
        statuses = [f"{f.split()[0]} {urlparse(f.split()[1]).path}" for f in page.failures]
        assert statuses == ["415 /v1/query", "400 /v1/items"], page.failures
        page.close()


def test_phone_and_desktop_widths(
    browser: Any, service_gallery: Path, unseen_dataset: Path, image_of: ImageOf
) -> None:
    from playwright.sync_api import expect

    with _serving(service_gallery) as url:
        for viewport in (DESKTOP, *PHONES):
            page = _page(browser, url, viewport)
            page.set_input_files("#file-input", str(image_of(unseen_dataset, "id_000", 1)))
            cards = page.locator("#result-grid .card")  # the query, then its 4 matches
            expect(cards).to_have_count(5)
            expect(page.locator("#results .match img").last).to_have_js_property("complete", True)
            widths = page.evaluate(
                "() => [document.documentElement.scrollWidth, document.documentElement.clientWidth]"
            )
            assert widths[0] <= widths[1], f"horizontal scroll at {viewport['width']} px: {widths}"
            boxes = [cards.nth(i).bounding_box() for i in range(5)]
            assert all(b["x"] >= 0 and b["x"] + b["width"] <= viewport["width"] for b in boxes)
            per_row = sum(1 for b in boxes if abs(b["y"] - boxes[0]["y"]) < 1)
            if viewport["width"] <= 390:
                assert per_row == 2, f"{per_row} cards per row at {viewport['width']} px"
            else:
                assert per_row == 5, f"{per_row} cards per row at {viewport['width']} px"
            page.close()


def test_drop_zone_by_keyboard(
    browser: Any, service_gallery: Path, unseen_dataset: Path, image_of: ImageOf
) -> None:
    from playwright.sync_api import expect

    with _serving(service_gallery) as url:
        page = _page(browser, url)
        # Playwright turns on file-chooser interception when the first listener arrives, and asks
        # the browser asynchronously: listen from the start so no key press beats it.
        choosers: list[Any] = []
        page.on("filechooser", lambda chooser: choosers.append(chooser))
        page.evaluate("1")
        for _ in range(10):  # Tab from the top until the drop zone's file input has focus
            page.keyboard.press("Tab")
            if page.evaluate("document.activeElement.id") == "file-input":
                break
        assert page.evaluate("document.activeElement.closest('#drop') !== null")
        assert _style(page, "#drop", "outlineStyle") == "solid"  # focus is visible
        assert float(_style(page, "#drop", "outlineWidth").rstrip("px")) >= 2
        for key, identity in (("Enter", "id_002"), ("Space", "id_001")):
            seen = len(choosers)
            page.keyboard.press(key)
            deadline = time.monotonic() + 10
            while len(choosers) == seen:
                assert time.monotonic() < deadline, f"{key} opened no file chooser"
                page.wait_for_timeout(20)
            choosers[-1].set_files(str(image_of(unseen_dataset, identity, 3)))
            expect(page.locator("#verdict")).to_contain_text(f"Best match: {identity}")
        page.close()


def test_identity_view_filter_and_removal(
    browser: Any,
    service_gallery: Path,
    unseen_dataset: Path,
    tiny_dataset: Path,
    tmp_path: Path,
    image_of: ImageOf,
) -> None:
    from playwright.sync_api import expect

    with _serving(service_gallery, api_key="sesame") as url:
        for n in range(18):  # 22 identities: more than one page of the list (20)
            with image_of(tiny_dataset, f"id_00{n % 8}", n // 8).open("rb") as handle:
                added = httpx.post(
                    f"{url}/v1/items",
                    files={"files": handle},
                    data={"identity": f"guest {n:02d}"},
                    headers={"X-API-Key": "sesame"},
                )
            assert added.status_code == 201, added.text
        page = _page(browser, url)
        rows = page.locator("#gallery-table tbody tr")
        expect(rows).to_have_count(20)
        expect(page.locator("#page-info")).to_have_text("1–20 of 22")
        page.click("#next-page")
        expect(rows).to_have_count(2)
        expect(page.locator("#page-info")).to_have_text("21–22 of 22")
        expect(page.locator("#next-page")).to_be_disabled()
        page.fill("#filter", "ID_00")
        expect(rows).to_have_count(4)
        expect(page.locator("#page-info")).to_have_text("1–4 of 4 matching (of 22)")
        page.fill("#filter", "")

        page.set_input_files("#file-input", str(image_of(unseen_dataset, "id_003", 0)))
        page.locator("#results .match a.open").first.click()  # a match opens its identity
        expect(page.locator("#identity-title")).to_have_text("id_003")
        expect(page.locator("#identity-count")).to_have_text("6 images in the gallery")
        items = page.locator("#identity-items .card")
        expect(items).to_have_count(6)
        # Every thumbnail loads (waits for all of them: they arrive in any order under load).
        # Polled from Python: wait_for_function evals its predicate in the page, which the
        # page's Content-Security-Policy (no 'unsafe-eval') refuses whenever it has to poll.
        loaded = (
            "[...document.querySelectorAll('#identity-items img')]"
            ".every(i => i.complete && i.naturalWidth > 0)"
        )
        deadline = time.monotonic() + 30
        while not page.evaluate(loaded):
            assert time.monotonic() < deadline, "identity thumbnails did not load within 30 s"
            page.wait_for_timeout(50)
        _screenshot(page, tmp_path, "identity-desktop")
        page.set_viewport_size(PHONES[0])
        _screenshot(page, tmp_path, "identity-phone")
        page.set_viewport_size(DESKTOP)

        first = items.first.get_attribute("data-id")
        items.first.locator("button").click()  # no key yet: refused, shown as an error
        expect(page.locator("#identity-error")).to_contain_text("missing API key")
        expect(page.locator("#identity-error")).to_contain_text("Enter the API key at the top")
        expect(items).to_have_count(6)
        page.fill("#api-key", "sesame")
        items.first.locator("button").click()
        expect(page.locator("#identity-status")).to_contain_text(f"Removed item {first}")
        expect(items).to_have_count(5)
        expect(page.locator("#identity-count")).to_have_text("5 images in the gallery")

        page.click("#remove-identity")
        expect(page.locator("#identity-view")).to_be_hidden()
        expect(page.locator("#overview-status")).to_contain_text("Removed id_003 (5 images)")
        page.fill("#filter", "id_")
        expect(rows).to_have_count(3)
        expect(page.locator("#gallery-table")).not_to_contain_text("id_003")
        assert "id_003" not in httpx.get(f"{url}/v1/identities").text

        page.goto(url + "/#identity=guest%2005")  # an identity link opens its view directly
        expect(page.locator("#identity-count")).to_have_text("1 image in the gallery")
        page.close()


def test_accessibility_and_contrast(
    browser: Any,
    service_gallery: Path,
    unseen_dataset: Path,
    tiny_dataset: Path,
    image_of: ImageOf,
) -> None:
    from playwright.sync_api import expect

    from siamese.index import Gallery

    Gallery.set_threshold(service_gallery, 1e-6)  # every answer but an exact copy is unknown
    with _serving(service_gallery) as url:
        found: dict[str, list[str]] = {}
        for viewport in (DESKTOP, PHONES[0]):
            page = _page(browser, url, viewport, bypass_csp=True)  # axe arrives as an inline script
            page.add_script_tag(path=str(AXE))
            states = {
                "known": image_of(unseen_dataset, "id_002", 0),
                "unknown": image_of(tiny_dataset, "id_007", 0),
            }
            for state, image in states.items():
                page.set_input_files("#file-input", str(image))
                expect(page.locator("#verdict")).to_have_class(state)
                verdict = _contrast(_style(page, "#verdict", "color"), "rgb(255, 255, 255)")
                assert verdict >= 4.5, f"{state} verdict contrast {verdict:.2f}:1"
                found[f"{state} at {viewport['width']} px"] = _axe(page)
            border = _contrast(
                _style(page, "#drop", "borderTopColor"), _style(page, "#drop", "backgroundColor")
            )
            assert border >= 3, f"drop-zone border contrast {border:.2f}:1"
            page.set_input_files("#add-files", str(image_of(tiny_dataset, "id_006", 0)))
            page.fill("#add-identity", "x/y")  # refused: an error on screen while axe looks
            page.click("#add-form button[type=submit]")
            expect(page.locator("#add-error")).to_be_visible()
            found[f"add error at {viewport['width']} px"] = _axe(page)
            page.locator("#results .match a.open").first.click()
            expect(page.locator("#identity-items .card").first).to_be_visible()
            found[f"identity view at {viewport['width']} px"] = _axe(page)
            page.close()
    assert all(not problems for problems in found.values()), found


def _axe(page: Any) -> list[str]:
    """axe-core's serious and critical violations on the page as it stands."""
    report = page.evaluate("async () => await axe.run(document, {resultTypes: ['violations']})")
    assert len(report["passes"]) >= 20, "axe-core checked next to nothing"  # it really ran
    return [
        f"{v['id']} ({v['impact']}): {v['help']} — {[n['target'] for n in v['nodes']][:3]}"
        for v in report["violations"]
        if v["impact"] in ("serious", "critical")
    ]


def test_api_docs_render_offline(browser: Any, service_gallery: Path) -> None:
    from playwright.sync_api import expect

    with _serving(service_gallery) as url:
        page = browser.new_page(viewport=DESKTOP)
        page.set_default_timeout(TIMEOUT_MS)
        outside: list[str] = []

        def offline(route: Any) -> None:  # the network beyond this machine is unreachable
            if urlparse(route.request.url).hostname == "127.0.0.1":
                route.continue_()
            else:
                outside.append(route.request.url)
                route.abort("internetdisconnected")

        page.route("**/*", offline)
        page.goto(url + "/")
        page.click("header nav a:text('API docs')")
        expect(page).to_have_url(url + "/docs")
        expect(page.locator(".swagger-ui .info .title")).to_contain_text(
            "siamese search service", timeout=TIMEOUT_MS
        )
        expect(page.locator(".opblock-summary-path[data-path='/v1/query']")).to_be_visible()
        page.goto(url + "/redoc")
        expect(page.locator("h1")).to_contain_text("siamese search service", timeout=TIMEOUT_MS)
        expect(page.get_by_text("/v1/identities/{identity}").first).to_be_attached()
        assert outside == [], f"requests beyond 127.0.0.1: {outside}"
        page.close()


def _thumbnails_loaded(page: Any, selector: str) -> None:
    """Wait until every image under ``selector`` has loaded (polled from Python, see above)."""
    loaded = (
        f"[...document.querySelectorAll('{selector} img')]"
        ".every(i => i.complete && i.naturalWidth > 0)"
    )
    deadline = time.monotonic() + 30
    while not page.evaluate(loaded):
        assert time.monotonic() < deadline, f"{selector} thumbnails did not load within 30 s"
        page.wait_for_timeout(50)


def test_page_with_reads_protected(
    browser: Any,
    service_gallery: Path,
    unseen_dataset: Path,
    tiny_dataset: Path,
    image_of: ImageOf,
) -> None:
    """--protect reads: the page asks for the key, then searches, browses and adds with it."""
    from playwright.sync_api import expect

    with _serving(service_gallery, api_key="sesame", protect="reads") as url:
        assert httpx.get(f"{url}/v1/identities").status_code == 401  # really protected
        page = _page(browser, url)
        summary = page.locator("#summary")
        expect(summary).to_contain_text("enter the API key above")
        expect(page.locator("#key-field")).to_be_visible()
        expect(page.locator("#key-label")).to_contain_text("search and browse")
        page.fill("#api-key", "guess")
        page.press("#api-key", "Enter")
        expect(summary).to_contain_text("not accepted")
        page.fill("#api-key", "sesame")
        page.press("#api-key", "Enter")
        expect(summary).to_contain_text("24 images of 4 identities")
        expect(page.locator("#gallery-table tbody tr")).to_have_count(4)

        page.set_input_files("#file-input", str(image_of(unseen_dataset, "id_001", 2)))
        expect(page.locator("#verdict")).to_contain_text("Best match: id_001")
        expect(page.locator("#results .match")).to_have_count(4)
        _thumbnails_loaded(page, "#results")  # fetched with the key, shown as blob: URLs
        assert page.eval_on_selector("#results img", "i => i.src.startsWith('blob:')")

        page.locator("#results .match a.open").first.click()
        expect(page.locator("#identity-count")).to_have_text("6 images in the gallery")
        _thumbnails_loaded(page, "#identity-items")
        page.click("a:text('← back to search')")

        page.fill("#add-identity", "visitor")
        page.set_input_files("#add-files", str(image_of(tiny_dataset, "id_006", 0)))
        page.click("#add-form button[type=submit]")
        expect(page.locator("#add-status")).to_contain_text("Added 1 image to “visitor”")

        page.reload()  # the key is kept for the tab
        expect(summary).to_contain_text("25 images of 5 identities")
        refused = [urlparse(f.split()[1]).path for f in page.failures]
        assert refused == ["/v1/gallery", "/v1/gallery"], page.failures  # before the key only
        page.close()


class _Elsewhere:
    """Another web site: serves one blank page on its own port (a page the service never made)."""

    def __enter__(self) -> int:
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        class Blank(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body = b"<!doctype html><title>elsewhere</title><p>another site</p>"
                self.send_response(200)
                self.send_header("Content-Type", "text/html")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Blank)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self.server.server_address[1]

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


#: Run in a page: a classic CSRF form post (multipart, into a frame) and a no-cors fetch, both
#: adding an image to the service. Returns once both have had their answer.
_ATTACK = """async ([target, png]) => {
  const bytes = new Uint8Array(png);
  const body = new FormData();
  body.append("identity", "intruder");
  body.append("files", new Blob([bytes], {type: "image/png"}), "x.png");
  await fetch(target + "/v1/items", {method: "POST", mode: "no-cors", body});
  const frame = document.createElement("iframe");
  frame.name = "sink";
  document.body.append(frame);
  const form = document.createElement("form");
  Object.assign(form, {method: "POST", action: target + "/v1/items", target: "sink",
                       enctype: "multipart/form-data"});
  const name = document.createElement("input");
  Object.assign(name, {name: "identity", value: "intruder"});
  const file = document.createElement("input");
  Object.assign(file, {type: "file", name: "files"});
  const files = new DataTransfer();
  files.items.add(new File([bytes], "x.png", {type: "image/png"}));
  file.files = files.files;
  form.append(name, file);
  document.body.append(form);
  const sent = new Promise((resolve) => frame.addEventListener("load", resolve, {once: true}));
  form.submit();
  await sent;
}"""


def _adds(url: str, status: int) -> float:
    """POST /v1/items answered with ``status`` so far, as the service's /metrics counts them."""
    from prometheus_client.parser import text_string_to_metric_families

    return sum(
        sample.value
        for family in text_string_to_metric_families(httpx.get(f"{url}/metrics").text)
        for sample in family.samples
        if sample.name == "siamese_http_requests_total"
        and sample.labels == {"method": "POST", "route": "/v1/items", "status": str(status)}
    )


def test_a_page_elsewhere_cannot_add_to_the_gallery(
    browser: Any, service_gallery: Path, tiny_dataset: Path, image_of: ImageOf
) -> None:
    """No key at all: a page on another site (or another port) still cannot change the gallery."""
    png = list(image_of(tiny_dataset, "id_006", 0).read_bytes())
    with _serving(service_gallery) as url, _Elsewhere() as port:
        service_port = urlparse(url).port
        # localhost:PORT is another site than 127.0.0.1 (cross-site); 127.0.0.1:PORT is the same
        # site on another port (same-site): both refused, by Sec-Fetch-Site and by Origin.
        for elsewhere in (f"http://localhost:{port}/", f"http://127.0.0.1:{port}/"):
            page = browser.new_page()
            page.set_default_timeout(TIMEOUT_MS)
            page.goto(elsewhere)
            page.evaluate(_ATTACK, [f"http://127.0.0.1:{service_port}", png])
            page.close()
        assert _adds(url, 403) == 4  # the browser sent all four; the service refused them
        assert _adds(url, 201) == 0
        assert httpx.get(f"{url}/v1/gallery").json()["count"] == 24
        assert httpx.get(f"{url}/v1/identities/intruder").status_code == 404

        # The same requests from the service's own page go through: the check is the origin.
        page = _page(browser, url)
        page.evaluate(_ATTACK, [url, png])
        page.close()
        assert _adds(url, 403) == 4 and _adds(url, 201) == 2
        assert httpx.get(f"{url}/v1/identities/intruder").json()["count"] == 1  # the same image
