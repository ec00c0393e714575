"""GET /v1/audit: the gallery audit over HTTP, behind the API key, paths for the key holder only."""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from siamese.service import ServiceConfig, ServiceState, create_app
from siamese.service.server import background_server

KEY = "audit-key-123"


def test_audit_needs_the_key_when_the_service_has_one(
    make_client: Callable[..., TestClient],
) -> None:
    client = make_client(api_key=KEY)
    missing = client.get("/v1/audit")
    assert missing.status_code == 401
    assert missing.json()["error"]["code"] == "unauthorized"
    assert client.get("/v1/audit", headers={"X-API-Key": "wrong"}).status_code == 401
    answer = client.get("/v1/audit", headers={"Authorization": f"Bearer {KEY}"})
    assert answer.status_code == 200, answer.text
    report = answer.json()
    assert report["count"] == 24 and report["identities"] == 4
    assert set(report["totals"]) == {
        "exact_duplicate",
        "near_duplicate",
        "mislabel",
        "overlap",
        "loose",
    }
    assert report["calibration"]["identity_distance"] > 0
    items = [i for found in report["findings"].values() for f in found for i in f["items"]]
    for item in items:  # the key holder sees paths, everyone thumbnails
        assert item["path"] and item["thumbnail"] == f"/v1/items/{item['id']}/image"


def test_audit_without_a_key_hides_paths_and_follows_new_generations(
    make_client: Callable[..., TestClient], image_of: Callable, unseen_dataset
) -> None:
    client = make_client()
    first = client.get("/v1/audit", params={"k": 5})
    assert first.status_code == 200, first.text
    assert "/" not in first.json()["gallery"]
    first_name, other = sorted(p.name for p in unseen_dataset.iterdir())[:2]
    copy = image_of(unseen_dataset, first_name, 0)
    with open(copy, "rb") as handle:  # the same file, added under another identity
        added = client.post(
            "/v1/items", files={"files": ("copy.png", handle)}, data={"identity": other}
        )
    assert added.status_code == 201, added.text
    second = client.get("/v1/audit", params={"k": 5}).json()
    assert second["generation"] > first.json()["generation"]
    groups = second["findings"]["exact_duplicate"]
    assert (
        len(groups) == 1 and other in groups[0]["identities"] and len(groups[0]["identities"]) == 2
    )
    assert all("path" not in item for item in groups[0]["items"])


def test_audit_refuses_bad_settings(make_client: Callable[..., TestClient]) -> None:
    client = make_client()
    assert client.get("/v1/audit", params={"k": 0}).status_code == 422
    assert client.get("/v1/audit", params={"duplicate_distance": -1}).status_code == 422
    page = client.get("/static/audit.html")
    assert page.status_code == 200 and "audit.js" in page.text


CHROMIUM = Path("/usr/bin/chromium")


def test_audit_page_in_a_real_browser(
    browser_versions: dict[str, str],
    service_gallery: Path,
    unseen_dataset: Path,
    image_of: Callable,
) -> None:
    """The page with reads protected: a wrong key is refused, the right one draws the sheets."""
    if not CHROMIUM.exists():
        if os.environ.get("CI"):
            pytest.fail(f"{CHROMIUM} is missing (apt-get install -y chromium)")
        pytest.skip(f"{CHROMIUM} is missing: install Debian's chromium package")
    from playwright.sync_api import expect, sync_playwright

    config = ServiceConfig(
        gallery_dir=service_gallery, device="cpu", api_key=KEY, protect="reads", refresh_s=0.1
    )
    first_name, other = sorted(p.name for p in unseen_dataset.iterdir())[:2]
    with background_server(create_app(ServiceState.open(config))) as url:
        with image_of(unseen_dataset, first_name, 0).open("rb") as handle:
            added = httpx.post(
                f"{url}/v1/items",
                files={"files": ("copy.png", handle)},
                data={"identity": other},
                headers={"X-API-Key": KEY},
            )
        assert added.status_code == 201, added.text
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path=str(CHROMIUM), args=["--headless=new", "--no-sandbox"]
            )
            browser_versions[str(CHROMIUM)] = browser.version
            try:
                page = browser.new_page()
                page.set_default_timeout(15_000)
                page.goto(f"{url}/static/audit.html")
                page.fill("#api-key", "wrong")
                page.click("#run")
                expect(page.locator("#audit-error")).to_contain_text("wrong API key")
                page.fill("#api-key", KEY)
                page.click("#run")
                group = page.locator("#kind-exact_duplicate .finding").first
                expect(group).to_contain_text("under different identities")
                expect(group.locator("li.other")).to_have_count(1)
                expect(page.locator("#totals")).to_be_visible()
                loaded = page.locator("#kind-exact_duplicate img").first
                expect(loaded).to_have_attribute("src", re.compile("^blob:"))
                page.wait_for_function(
                    "document.querySelector('#kind-exact_duplicate img').naturalWidth > 0"
                )
            finally:
                browser.close()
