"""Refusing untrusted ONNX files whose external-data paths reach outside the model's folder.

An ONNX model may keep its weights in side files named by relative paths inside the model. A
hostile model could name ``../../home/user/.ssh/id_rsa`` or ``/etc/shadow`` and have their bytes
loaded as weights. Every external-data location must resolve (symlinks included) inside the
model's own folder; this holds whatever the installed onnxruntime checks itself.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

from siamese.errors import ModelError


def _tensors(graph) -> Iterator:  # onnx.GraphProto; untyped so onnx is imported only when checking
    """Every tensor of a graph: initializers, sparse initializers, and node attributes, recursively."""
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


def check_external_data(model_path: str | os.PathLike[str]) -> None:
    """Refuse a model whose external data would be read from outside its folder.

    Raises:
        ModelError: naming the model, the tensor and the offending location.
    """
    import onnx

    path = Path(model_path)
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception:  # not protobuf at all: onnxruntime refuses it next, in its own words
        return
    folder = path.resolve().parent
    for tensor in _tensors(model.graph):
        if tensor.data_location != onnx.TensorProto.EXTERNAL:
            continue
        location = next(
            (entry.value for entry in tensor.external_data if entry.key == "location"), ""
        )
        target = (folder / location).resolve()
        if (
            not location
            or "\0" in location
            or os.path.isabs(location)
            or not target.is_relative_to(folder)
        ):
            raise ModelError(
                f"{path}: refused: tensor {tensor.name!r} takes its data from {location!r}, outside the model's folder {folder}; "
                "only models whose external data sits beside them are loaded"
            )
