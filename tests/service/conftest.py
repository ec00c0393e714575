"""Service fixtures: a private copy of the test gallery per test, a running app on it, and the
page tests' browser version, printed at the end of the run."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from siamese.service import ServiceConfig, ServiceState, create_app

BROWSERS = pytest.StashKey[dict[str, str]]()


@pytest.fixture(scope="session")
def browser_versions(pytestconfig: pytest.Config) -> dict[str, str]:
    """Where the page tests record the browsers they launch: executable → version.

    pytest_terminal_summary below prints them once at the end of the run, so a log says which
    browser build the page tests ran against.
    """
    return pytestconfig.stash.setdefault(BROWSERS, {})


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    browsers = config.stash.get(BROWSERS, {})
    if browsers:
        terminalreporter.section("browser of the page tests", sep="-")
        for executable, version in browsers.items():
            terminalreporter.write_line(f"chromium: {version} ({executable})")


@pytest.fixture()
def service_gallery(gallery_dir: Path, tmp_path: Path) -> Path:
    """A copy of the session gallery (4 unseen identities × 6 images) this test may change."""
    return Path(shutil.copytree(gallery_dir, tmp_path / "gallery"))


@pytest.fixture()
def make_client(service_gallery: Path) -> Iterator[Callable[..., TestClient]]:
    """Factory: a TestClient (lifespan started) of a service on the private gallery.

    Keyword arguments override the service config.
    """
    clients: list[TestClient] = []

    def make(**overrides: Any) -> TestClient:
        config = ServiceConfig(gallery_dir=service_gallery, device="cpu", **overrides)
        client = TestClient(create_app(ServiceState.open(config)), raise_server_exceptions=False)
        client.__enter__()
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.__exit__(None, None, None)


@pytest.fixture()
def client(make_client: Callable[..., TestClient]) -> TestClient:
    """A service with default settings on a private gallery."""
    return make_client()


@pytest.fixture()
def image_of() -> Callable[[Path, str, int], Path]:
    """Factory: the n-th image file (sorted by name) of an identity in an ImageFolder."""
    return lambda dataset, identity, index=0: sorted((dataset / identity).iterdir())[index]
