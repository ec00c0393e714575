"""Export a pseudo-siamese pair: two ONNX files, each self-describing, bound by a pair fingerprint.

``export_pair(run_dir, "model.onnx")`` writes ``model.query.onnx`` and ``model.gallery.onnx``
beside each other (:func:`pair_paths`). An image tower is exported exactly as a single tower is
(uint8 pixels in, normalisation in the graph, its input spec in the metadata); a text tower takes
``input_ids`` and ``attention_mask`` and carries its tokenizer JSON in the metadata
(siamese/contracts/model_card.py). Both files record ``siamese.pair`` (pair_card.py): the pair
fingerprint, the file's role, its own and its partner's tower fingerprint, the partner's kind and
file name. Each file passes onnx.checker and its own parity check against PyTorch before either
is published; nothing is written when one fails.

A shared-weight run (``--share-weights``) is one tower and is exported by ``export_onnx`` as
today.
"""

from __future__ import annotations

import contextlib
import io
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import onnx
import torch
from torch import nn

from siamese import __version__
from siamese.contracts.model_card import (
    OUTPUT_NAME,
    TEXT_INPUTS,
    ModelCard,
    ModelInfo,
    TextModelInfo,
)
from siamese.contracts.pair_card import PairInfo
from siamese.core.errors import ModelError, ParityError
from siamese.core.files import atomic_path, sha256_file
from siamese.core.progress import progress_bar
from siamese.data.text import load_tokenizer
from siamese.export.onnx_export import DEFAULT_OPSET, ExportReport, tower_to_onnx
from siamese.export.parity import ParityReport, check_parity, check_text_parity
from siamese.training.pair_run import PairRun, RunSide, load_pair_run


@dataclass(frozen=True)
class PairExportReport:
    """Both files, their reports and the pair fingerprint binding them."""

    fingerprint: str
    query: ExportReport
    gallery: ExportReport

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return {
            "pair_fingerprint": self.fingerprint,
            "query": self.query.to_dict(),
            "gallery": self.gallery.to_dict(),
        }


def pair_paths(out_path: str | os.PathLike[str]) -> tuple[Path, Path]:
    """``dir/NAME.onnx`` → (``dir/NAME.query.onnx``, ``dir/NAME.gallery.onnx``)."""
    out_path = Path(out_path)
    stem = out_path.name.removesuffix(".onnx")
    return out_path.with_name(f"{stem}.query.onnx"), out_path.with_name(f"{stem}.gallery.onnx")


def text_tower_to_onnx(tower: nn.Module, max_length: int, opset: int = DEFAULT_OPSET):
    """The text tower as ONNX: ``input_ids``, ``attention_mask`` int64 [N, max_length] in."""
    batch = torch.export.Dim("batch", min=1, max=1 << 16)
    example = (
        torch.ones((2, max_length), dtype=torch.int64),
        torch.ones((2, max_length), dtype=torch.int64),
    )
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(
            tower.eval().cpu(),
            example,
            input_names=list(TEXT_INPUTS),
            output_names=[OUTPUT_NAME],
            dynamic_shapes=({0: batch}, {0: batch}),
            opset_version=opset,
            dynamo=True,
            external_data=False,
        )
    model = program.model_proto
    for value in (*model.graph.input, *model.graph.output):
        value.type.tensor_type.shape.dim[0].dim_param = "N"
    return model


def _pair_info(run: PairRun, side: RunSide, partner: RunSide, partner_file: str) -> PairInfo:
    return PairInfo(
        fingerprint=run.fingerprint,
        role=side.role,
        own=side.fingerprint,
        partner=partner.fingerprint,
        partner_kind=partner.kind,
        partner_file=partner_file,
    )


def _side_model(side: RunSide, pair: PairInfo, opset: int) -> tuple[Any, ModelCard]:
    tower = side.record["tower"]
    facts: dict[str, Any] = {
        "tower": {"name": tower["name"], "options": tower.get("options", {})},
        "embedding_dim": int(tower["embedding_dim"]),
        "normalized": bool(tower["normalized"]),
        "run_fingerprint": side.fingerprint,
        "siamese_version": __version__,
        "pair": pair,
    }
    info: ModelCard
    if side.kind == "text":
        assert side.tokenizer_json is not None
        max_length = int(tower["options"]["max_length"])
        model = text_tower_to_onnx(side.tower, max_length, opset)
        info = TextModelInfo(tokenizer_json=side.tokenizer_json, max_length=max_length, **facts)
    else:
        assert side.spec is not None
        model = tower_to_onnx(side.tower, side.spec, opset)
        info = ModelInfo(input_spec=side.spec, **facts)
    onnx.helper.set_model_props(model, info.to_metadata())
    model.producer_name, model.producer_version = "siamese", __version__
    return model, info


def _parity(side: RunSide, path: Path, batch_sizes: Sequence[int]) -> ParityReport:
    if side.kind == "text":
        assert side.tokenizer_json is not None
        tokenizer = load_tokenizer(side.tokenizer_json, "tokenizer")
        options = side.record["tower"]["options"]
        return check_text_parity(
            side.tower, path, int(options["max_length"]), tokenizer.get_vocab_size(), batch_sizes
        )
    assert side.spec is not None
    return check_parity(side.tower, path, side.spec, batch_sizes)


def export_pair(
    run_dir: str | os.PathLike[str],
    out_path: str | os.PathLike[str],
    *,
    opset: int = DEFAULT_OPSET,
    batch_sizes: Sequence[int] = (1, 2, 7, 32),
    progress: bool = False,
) -> PairExportReport:
    """Export both towers of a pair run beside ``out_path`` (see :func:`pair_paths`).

    Raises:
        RunError: not a pair run, or its files are incomplete.
        ModelError: onnx.checker rejects a graph.
        ParityError: onnxruntime disagrees with PyTorch for either tower (nothing is written).
    """
    paths = dict(zip(("query", "gallery"), pair_paths(out_path)))
    with progress_bar("exporting pair", 5, progress) as ticker:
        run = load_pair_run(run_dir)
        ticker.advance()
        sides = {"query": (run.query, run.gallery), "gallery": (run.gallery, run.query)}
        staged: dict[str, tuple[Any, ModelCard, ParityReport]] = {}
        with contextlib.ExitStack() as stack:
            temporary: dict[str, Path] = {}
            for role, (side, partner) in sides.items():
                pair = _pair_info(run, side, partner, paths[partner.role].name)
                model, info = _side_model(side, pair, opset)
                try:
                    onnx.checker.check_model(model, full_check=True)
                except onnx.checker.ValidationError as exc:
                    raise ModelError(f"{paths[role]}: exported graph fails onnx.checker ({exc})")
                tmp = stack.enter_context(atomic_path(paths[role]))
                onnx.save_model(model, str(tmp))
                parity = _parity(side, tmp, batch_sizes)
                if not parity.passed:
                    raise ParityError(
                        f"{paths[role]}: not written, the {role} tower's ONNX output differs "
                        f"from PyTorch; {parity.summary()}"
                    )
                staged[role], temporary[role] = (model, info, parity), tmp
                ticker.advance()
                ticker.advance()
        # Both passed: leaving the stack published each file atomically (gallery, then query).
    reports = {
        role: ExportReport(
            path,
            sha256_file(path),
            path.stat().st_size,
            staged[role][1],  # type: ignore[arg-type]
            staged[role][2],
        )
        for role, path in paths.items()
    }
    return PairExportReport(run.fingerprint, reports["query"], reports["gallery"])
