"""Refusing untrusted ONNX files whose external-data paths reach outside the model's folder.

An ONNX model may keep its weights in side files named by relative paths inside the model. A
hostile model could name ``../../home/user/.ssh/id_rsa`` or ``/etc/shadow`` and have their bytes
loaded as weights, or reach them through a symbolic link inside its folder. Every external-data
location must be a plain relative path (no NUL, no ``..``, not absolute) that stays inside the
model's own folder both as written and with every symbolic link resolved (``os.path.realpath``
on the folder and the target): loaders join and normalise paths in their own ways, so the
location must be safe under either reading. This holds whatever the installed onnxruntime checks
itself, and any odd location is one :class:`ModelError` line, never a traceback.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

from siamese.core.errors import ModelError

#: Longest external-data location considered (bytes of UTF-8); no real file name is longer.
MAX_LOCATION_BYTES = 4096


def _tensors(graph) -> Iterator:  # onnx.GraphProto; untyped so onnx is imported only when checking
    """Every tensor of a graph, recursively: initializers, sparse initializers, node attributes."""
    yield from graph.initializer
    for sparse in graph.sparse_initializer:
        yield sparse.values
        yield sparse.indices
    for node in graph.node:
        for attribute in node.attribute:
            if attribute.HasField("t"):
                yield attribute.t
            yield from attribute.tensors
            if attribute.HasField("g"):
                yield from _tensors(attribute.g)
            for subgraph in attribute.graphs:
                yield from _tensors(subgraph)


def _inside(folder: str, target: str) -> bool:
    """Whether ``target`` is ``folder`` or lies below it (both absolute and normalised)."""
    try:
        return os.path.commonpath([folder, target]) == folder and target != folder
    except ValueError:  # different drives (Windows): not inside
        return False


def location_problem(folder: str, location: str) -> str | None:
    """Why ``location`` (an external-data path from a model in ``folder``) is refused, or None.

    ``folder`` must already be resolved (``os.path.realpath``). Never raises: NUL bytes, lone
    surrogates, over-long names and symbolic-link loops are reasons, not exceptions.
    """
    if not location:
        return "empty"
    if "\0" in location:
        return "it holds a NUL byte"
    try:
        size = len(location.encode("utf-8"))
    except UnicodeEncodeError:
        return "not valid UTF-8"
    if size > MAX_LOCATION_BYTES:
        return f"{size} bytes long, at most {MAX_LOCATION_BYTES}"
    if os.path.isabs(location) or location.startswith(("/", "\\")):
        return "an absolute path"
    if ".." in location.replace("\\", "/").split("/"):
        return "it climbs with '..'"
    written = os.path.normpath(os.path.join(folder, location))
    if not _inside(folder, written):
        return "not below the folder"
    try:  # every symbolic link resolved, folder links included; a loop is an error, not a path
        resolved = os.path.realpath(written, strict=True)
    except FileNotFoundError:  # missing (or a dangling link): resolve what exists
        resolved = os.path.realpath(written)
    except (OSError, ValueError, RuntimeError) as exc:
        return f"it cannot be resolved: {getattr(exc, 'strerror', None) or exc}"
    if not _inside(folder, resolved):
        return f"through symbolic links it is {resolved}"
    return None


def check_external_data(model_path: str | os.PathLike[str]) -> None:
    """Refuse a model whose external data would be read from outside its folder.

    Raises:
        ModelError: one line naming the model, the tensor, the offending location and why.
    """
    import onnx

    path = Path(model_path)
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception:  # noqa: BLE001 - not protobuf at all: onnxruntime refuses it next, in its words
        return
    try:
        folder = os.path.realpath(path.parent if str(path.parent) else ".")
    except (OSError, ValueError, RuntimeError) as exc:
        raise ModelError(f"{path}: refused: its folder cannot be resolved ({exc})") from None
    for tensor in _tensors(model.graph):
        if tensor.data_location != onnx.TensorProto.EXTERNAL:
            continue
        location = next(
            (entry.value for entry in tensor.external_data if entry.key == "location"), ""
        )
        problem = location_problem(folder, location)
        if problem is not None:
            shown = location if len(location) <= 200 else location[:200] + "…"
            raise ModelError(
                f"{path}: refused: tensor {tensor.name!r} takes its data from {shown!r} "
                f"({problem}), outside the model's folder {folder}; "
                "only models whose external data sits beside them are loaded"
            )
