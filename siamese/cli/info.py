"""`siamese info`: what a model or a gallery says about itself, and what onnxruntime runs on."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from siamese.cli.index import index_info
from siamese.cli.support import Device, print_facts
from siamese.cli.support import friendly_errors as _friendly_errors
from siamese.core.errors import SiameseError


def _model_info(path: Path) -> dict[str, Any]:
    from siamese.engine import open_query_embedder

    embedder = open_query_embedder(path, device="cpu")
    session_input = embedder.session.get_inputs()[0]
    return {
        "kind": "model",
        "path": str(path),
        "fingerprint": embedder.fingerprint,
        "size_bytes": path.stat().st_size,
        "embeds": embedder.kind,
        "input": {"name": session_input.name, "shape": [str(d) for d in session_input.shape]},
        **embedder.info.to_dict(),
        **({"pair": embedder.pair.to_dict()} if embedder.pair is not None else {}),
    }


def _providers_info(model: Path | None, device: str) -> dict[str, Any]:
    """The onnxruntime build and its providers; with a model, the provider its session runs on.

    The model is opened as `query`, `serve` and `index build` open it (same provider options,
    same TensorRT › CUDA › CPU order under "auto"), so the answer is the one they would get.
    """
    from siamese.engine import open_query_embedder
    from siamese.engine.providers import runtime_report

    facts: dict[str, Any] = runtime_report()
    if model is None:
        return facts
    embedder = open_query_embedder(model, device=device)
    facts.update(
        model=str(model),
        device_asked=device,
        runs_on=embedder.device,
        session_providers=embedder.session.get_providers(),
        passed_over=getattr(embedder, "passed_over", {}),
    )
    return facts


def _flat(facts: dict[str, Any]) -> dict[str, Any]:
    """The providers report as rows of text: one per device, lists comma-joined."""
    rows: dict[str, Any] = {}
    for key, value in facts.items():
        if key in ("devices", "passed_over"):
            label = "device" if key == "devices" else "passed over"
            rows.update({f"{label} {name}": reason for name, reason in value.items()})
        elif isinstance(value, dict):
            rows[key] = ", ".join(f"{name} {version}" for name, version in value.items()) or "none"
        elif isinstance(value, list):
            rows[key] = ", ".join(value)
        else:
            rows[key] = value
    return rows


@_friendly_errors
def info(
    path: Annotated[
        Path | None,
        typer.Argument(
            help="A model.onnx or a gallery directory (optional with --providers).",
            show_default=False,
        ),
    ] = None,
    providers: Annotated[
        bool,
        typer.Option(
            "--providers",
            help=(
                "Show the onnxruntime build and its execution providers; given a model, the "
                "provider its session runs on."
            ),
        ),
    ] = False,
    device: Annotated[
        Device,
        typer.Option(help="With --providers and a model: the device to open it on."),
    ] = Device.auto,
    as_json: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False,
) -> None:
    """Show what a model or a gallery holds (a gallery as `siamese index info` shows it)."""
    if providers:
        if path is not None and not path.is_file():
            raise SiameseError(f"{path}: --providers takes a model.onnx file (or nothing)")
        facts = _providers_info(path, device.value)
        print_facts(facts if as_json else _flat(facts), as_json)
    elif path is None:
        raise typer.BadParameter("give a model.onnx or a gallery directory", param_hint="PATH")
    elif path.is_dir():
        index_info(gallery_arg=path, as_json=as_json)
    elif path.is_file():
        print_facts(_model_info(path), as_json)
    else:
        raise SiameseError(
            f"{path}: no such file or folder (expected a model.onnx or a gallery directory)"
        )
