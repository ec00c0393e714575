"""`siamese serve`: documented options, and refusals as one line on stderr with a non-zero exit."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from siamese.cli import app


def test_help_lists_the_options() -> None:
    # Wide enough that rich does not cut long option names out of the help table.
    result = CliRunner().invoke(app, ["serve", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    for option in (
        "--expose-paths",
        "--protect",
        "--gallery",
        "--model",
        "--host",
        "--port",
        "--api-key",
        "--max-batch",
        "--max-wait-ms",
        "--max-upload-mb",
        "--body-timeout",
        "--max-connections",
        "--max-per-client",
        "--device",
    ):
        assert option in result.output


def test_a_different_model_is_refused(
    service_gallery: Path, tiny_model_path: Path, tmp_path: Path
) -> None:
    import onnx

    model = onnx.load(str(tiny_model_path))
    entry = model.metadata_props.add()  # same network, different file: a different fingerprint
    entry.key, entry.value = "note", "another model"
    other = tmp_path / "other.onnx"
    onnx.save(model, str(other))
    result = CliRunner().invoke(
        app, ["serve", "--gallery", str(service_gallery), "--model", str(other), "--device", "cpu"]
    )
    assert result.exit_code == 1
    assert "built with model" in result.output and "other.onnx" in result.output
    assert "Traceback" not in result.output


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--max-batch", "0"], "max-batch"),
        (["--max-connections", "0"], "max-connections"),
        (["--max-per-client", "-1"], "max-per-client"),
        (["--body-timeout", "0"], "body-timeout"),
        (["--gallery", "/nonexistent/g"], "gallery folder not found"),
    ],
)
def test_bad_options(service_gallery: Path, args: list[str], says: str) -> None:
    result = CliRunner().invoke(app, ["serve", "--gallery", str(service_gallery), *args])
    assert result.exit_code != 0 and says in result.output


def test_serve_options_come_from_serviceconfig() -> None:
    """Every ServiceConfig field is a `siamese serve` option; sizes in the units people write."""
    from dataclasses import fields

    from typer.testing import CliRunner

    from siamese.cli import app
    from siamese.cli.fields import config_from_options, option_names
    from siamese.service.config import ServiceConfig

    shown = CliRunner().invoke(app, ["serve", "--help"], env={"COLUMNS": "160"}).output
    for names in option_names(ServiceConfig).values():
        assert names[0] in shown, names[0]
    assert set(option_names(ServiceConfig)) == {f.name for f in fields(ServiceConfig)}
    values = {f.name: f.default for f in fields(ServiceConfig)}
    values.update(gallery_dir="g", max_upload_bytes="1.5", max_pixels="2")
    config = config_from_options(ServiceConfig, values)
    assert (config.max_upload_bytes, config.max_pixels) == (int(1.5 * 2**20), 2_000_000)


def test_query_json_names_model_and_generation_as_the_service(
    client: TestClient, service_gallery: Path, unseen_dataset: Path
) -> None:
    """`siamese query --json` and the service name the same model and gallery generation."""
    import json

    image = next((unseen_dataset / "id_002").iterdir())
    result = CliRunner().invoke(
        app, ["query", str(image), "--gallery", str(service_gallery), "--device", "cpu", "--json"]
    )
    assert result.exit_code == 0, result.output
    printed = json.loads(result.stdout)
    served = client.post(
        "/v1/query", files={"file": (image.name, image.read_bytes(), "image/png")}
    ).json()
    assert printed["model_fingerprint"] == served["model"]["fingerprint"]
    assert printed["gallery_generation"] == served["gallery_generation"]
    assert printed["model_fingerprint"] == client.get("/v1/gallery").json()["model"]["fingerprint"]


def test_serve_protecting_reads_with_the_key_from_the_environment(service_gallery: Path) -> None:
    """A real `siamese serve` process: the key comes from $SIAMESE_API_KEY, reads need it."""
    import os
    import signal
    import socket
    import subprocess
    import sys
    import time

    import httpx

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [sys.executable, "-m", "siamese", "serve", "--gallery", str(service_gallery)]
    command += ["--device", "cpu", "--port", str(port), "--protect", "reads"]
    env = {**os.environ, "SIAMESE_API_KEY": "sesame"}
    server = subprocess.Popen(command, env=env, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert server.poll() is None, server.communicate()[1]
            try:
                if httpx.get(f"{url}/v1/health").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "siamese serve did not answer within 60 s"
            time.sleep(0.1)
        assert httpx.get(f"{url}/v1/gallery").status_code == 401
        assert httpx.get(f"{url}/metrics").status_code == 401
        scraped = httpx.get(f"{url}/metrics", headers={"X-API-Key": "sesame"})
        assert scraped.status_code == 200 and "siamese_gallery_items 24.0" in scraped.text
    finally:
        server.send_signal(signal.SIGINT)  # as Ctrl-C: drains, then stops
        _, stderr = server.communicate(timeout=30)
    assert "reads and writes need the API key" in stderr and "sesame" not in stderr
