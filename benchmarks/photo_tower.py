"""Photo tower suite: a trained tower through the engine on real photographs, and its int8.

    siamese bench photo_tower -O run=RUN_DIR [-O photos=FOLDER] [-O images=600] [-O rounds=3]

For the photo recipe's tower (EfficientNet-Lite0 at 128 px on a CPU), measured in interleaved
rounds on the same photographs: decoding and resizing alone, inference alone on the resized
uint8 batches, and ``Embedder.embed_paths`` end to end (decode threads overlapped with
inference; fp32, and the exported int8), set against min(decode, inference), the most an
overlapped pipeline can reach.
Then int8 variants, each judged as ``siamese export --precision int8`` judges its own (cosine to
fp32 and leave-one-out top-1 on calibration photos) and timed beside fp32:

- ``export``: what ``siamese export --precision int8`` writes (every operator onnxruntime runs in
  int8, so activations stay int8 from one convolution to the next);
- ``convs``: every convolution but the first, and nothing else (what the export used to write,
  less the first convolution): each convolution dequantises into a float32 activation;
- ``pointwise``: only the 1×1 and full convolutions, depthwise ones and the head left in fp32.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np
from _harness import BenchSettings
from _speed_measure import rate

GROCERY_IMAGES = Path(__file__).resolve().parents[2] / "shared" / "data" / "grocery" / "images"

#: The -O keys this suite reads; the harness refuses any other.
OPTIONS = ("run", "photos", "images", "rounds", "batch")


def _photos(folder: Path, count: int) -> list[Path]:
    from siamese.data.image_folder import scan_image_folder

    items = scan_image_folder(folder)
    picks = np.random.default_rng(0).choice(len(items), size=min(count, len(items)), replace=False)
    return [Path(items[i].path) for i in sorted(picks)]


def _variants(fp32: Path, work: Path, calibration: Any) -> dict[str, Path]:
    """The int8 variants named in the module docstring, written into ``work``."""
    import onnx
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from siamese.export.variants import _Reader, quantize_int8

    written = {"export": work / "export.onnx"}
    quantize_int8(fp32, written["export"], calibration)
    prepared = work / "prepared.onnx"
    quant_pre_process(str(fp32), str(prepared), skip_symbolic_shape=True)
    convs = [n for n in onnx.load(str(prepared)).graph.node if n.op_type == "Conv"]
    depthwise = [n.name for n in convs if any(a.name == "group" and a.i > 1 for a in n.attribute)]
    first = [convs[0].name]
    for name, excluded in (("convs", first), ("pointwise", first + depthwise)):
        written[name] = work / f"{name}.onnx"
        quantize_static(
            str(prepared),
            str(written[name]),
            _Reader(calibration.images),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            op_types_to_quantize=["Conv"],
            nodes_to_exclude=excluded,
        )
    return written


def _round(
    paths: list[Path], fp32: Any, int8: dict[str, Any], tensors: np.ndarray
) -> dict[str, float]:
    figures = {
        "decode_preprocess": rate(
            len(paths), lambda: sum(len(b.paths) for b in fp32.iter_preprocessed(paths))
        ),
        "end_to_end_fp32": rate(len(paths), lambda: fp32.embed_paths(paths)),
        "end_to_end_int8": rate(len(paths), lambda: int8["export"].embed_paths(paths)),
    }
    for name, engine in {"fp32": fp32, **int8}.items():
        figures[f"inference_{name}"] = rate(
            len(tensors),
            lambda engine=engine: [
                engine.embed_batch(tensors[i : i + engine.batch_size])
                for i in range(0, len(tensors), engine.batch_size)
            ],
        )
    return figures


def run(settings: BenchSettings) -> dict[str, Any]:
    """Rates on photographs, the end-to-end fraction of the limit, and the int8 variants."""
    from siamese.core.errors import ConfigError
    from siamese.engine import Embedder
    from siamese.export import export_onnx
    from siamese.export.variants import compare_variant, load_calibration

    if "run" not in settings.options:
        raise ConfigError("bench photo_tower: -O run=RUN_DIR names the trained tower to measure")
    run_dir = Path(settings.options["run"])
    photos = Path(settings.option("photos", str(GROCERY_IMAGES)))
    count = settings.option("images", 96 if settings.quick else 600, int)
    rounds = settings.option("rounds", 1 if settings.quick else 3, int)
    batch = settings.option("batch", 32, int)
    work = Path(tempfile.mkdtemp(prefix="photo-tower-", dir=settings.work_dir))
    fp32_path = export_onnx(run_dir, work / "fp32.onnx").path
    fp32 = Embedder(fp32_path, device="cpu", batch_size=batch)
    calibration = load_calibration(photos, fp32.spec, max_images=256 if not settings.quick else 64)
    variants = _variants(fp32_path, work, calibration)
    checks = {
        name: compare_variant(fp32_path, path, "int8", calibration).to_dict()
        for name, path in variants.items()
    }
    int8 = {name: Embedder(path, device="cpu", batch_size=batch) for name, path in variants.items()}
    paths = _photos(photos, count)
    tensors = np.concatenate([b.images.copy() for b in fp32.iter_preprocessed(paths)])
    measured = [_round(paths, fp32, int8, tensors) for _ in range(rounds)]
    median = {k: round(statistics.median(r[k] for r in measured), 1) for k in measured[0]}
    limit = min(median["decode_preprocess"], median["inference_fp32"])
    int8_limit = min(median["decode_preprocess"], median["inference_export"])
    return {
        "run": str(run_dir),
        "input": f"{fp32.spec.height}px",
        "photos": {"folder": str(photos), "images": len(paths)},
        "batch_size": batch,
        "rounds": measured,
        "images_per_s": median,
        "end_to_end_fraction_of_min_limit": round(median["end_to_end_fp32"] / limit, 3),
        "end_to_end_fraction_of_serial_limit": round(
            median["end_to_end_fp32"]
            / (1 / (1 / median["decode_preprocess"] + 1 / median["inference_fp32"])),
            3,
        ),
        "end_to_end_int8_fraction_of_min_limit": round(median["end_to_end_int8"] / int8_limit, 3),
        "int8": {
            name: {
                **checks[name],
                "inference_speedup": round(
                    median[f"inference_{name}"] / median["inference_fp32"], 3
                ),
            }
            for name in variants
        },
    }
