"""Mutation fuzzing of the decoder: damaged JPEG and PNG files never crash it or half-decode.

Files are damaged at random.

The default run damages a few thousand files in a few seconds; SIAMESE_FUZZ_SCALE=20 runs twenty
times more. Every input must end decoded or refused with ImageDecodeError; anything else is a crash.
A file that was only cut short must never decode to pixels different from the intact file's.
"""

from __future__ import annotations

import io
import os
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

from siamese.contracts.spec import InputSpec
from siamese.core.errors import ImageDecodeError
from siamese.data.images import load_pixels

# Scale up the run (e.g. SIAMESE_FUZZ_SCALE=20) to hunt longer;
# the default keeps the suite to minutes.
FUZZ_SCALE = max(1, int(os.environ.get("SIAMESE_FUZZ_SCALE", "1")))

SPEC = InputSpec.create(24, 3)
Mutation = Callable[[bytes, np.random.Generator], bytes]


def _seeds() -> dict[str, bytes]:
    """Small valid files covering the decoder paths.

    Baseline/progressive/grey JPEG, EXIF, PNG modes.
    """
    rng = np.random.default_rng(7)
    colour = Image.fromarray(rng.integers(0, 256, (40, 40, 3), dtype=np.uint8))
    grey = Image.fromarray(rng.integers(0, 256, (32, 48), dtype=np.uint8))
    exif = Image.Exif()
    exif[0x0112] = 8
    variants = {
        "baseline.jpg": (colour, {"format": "JPEG", "quality": 85}),
        "progressive.jpg": (colour, {"format": "JPEG", "quality": 70, "progressive": True}),
        "grey.jpg": (grey, {"format": "JPEG"}),
        "exif.jpg": (colour, {"format": "JPEG", "exif": exif.tobytes()}),
        "rgb.png": (colour, {"format": "PNG"}),
        "interlaced.png": (colour, {"format": "PNG", "interlace": 1}),
        "palette.png": (colour.convert("P"), {"format": "PNG"}),
        "rgba.png": (colour.convert("RGBA"), {"format": "PNG"}),
        "grey16.png": (Image.fromarray(np.asarray(grey, np.uint16) * 257), {"format": "PNG"}),
    }
    seeds = {}
    for name, (image, options) in variants.items():
        buffer = io.BytesIO()
        image.save(buffer, **options)
        seeds[name] = buffer.getvalue()
    return seeds


def _flip(data: bytes, rng: np.random.Generator) -> bytes:
    out = bytearray(data)
    for position in rng.integers(0, len(out), size=rng.integers(1, 9)):
        out[position] ^= 1 << int(rng.integers(0, 8))
    return bytes(out)


def _truncate(data: bytes, rng: np.random.Generator) -> bytes:
    return data[: int(rng.integers(0, len(data)))]


def _insert(data: bytes, rng: np.random.Generator) -> bytes:
    at = int(rng.integers(0, len(data)))
    return (
        data[:at]
        + rng.integers(0, 256, int(rng.integers(1, 64)), dtype=np.uint8).tobytes()
        + data[at:]
    )


def _delete(data: bytes, rng: np.random.Generator) -> bytes:
    at = int(rng.integers(0, len(data)))
    return data[:at] + data[at + int(rng.integers(1, 64)) :]


def _duplicate(data: bytes, rng: np.random.Generator) -> bytes:
    at, length = int(rng.integers(0, len(data))), int(rng.integers(1, 256))
    return data[: at + length] + data[at : at + length] + data[at + length :]


def _overwrite(data: bytes, rng: np.random.Generator) -> bytes:
    at, length = int(rng.integers(0, len(data))), int(rng.integers(1, 32))
    value = bytes([int(rng.choice([0x00, 0xFF, 0x7F]))]) * length
    return (data[:at] + value + data[at + length :])[: len(data)]


def _splice(data: bytes, rng: np.random.Generator) -> bytes:
    other = rng.permutation(np.frombuffer(data, np.uint8)).tobytes()
    at = int(rng.integers(0, len(data)))
    return data[:at] + other[at:]


MUTATIONS: dict[str, Mutation] = {
    "flip": _flip,
    "truncate": _truncate,
    "insert": _insert,
    "delete": _delete,
    "duplicate": _duplicate,
    "overwrite": _overwrite,
    "splice": _splice,
}


def fuzz(tmp_path: Path, inputs: int, seed: int) -> Counter:
    """Damage ``inputs`` files and decode each; return the tally and assert the rules as it goes."""
    rng = np.random.default_rng(seed)
    seeds = _seeds()
    intact = {}
    for name, data in seeds.items():
        (tmp_path / name).write_bytes(data)
        intact[name] = load_pixels(tmp_path / name, SPEC)
    names, kinds = sorted(seeds), sorted(MUTATIONS)
    tally: Counter = Counter()
    crashes: list[str] = []
    for n in range(inputs):
        name, kind = names[n % len(names)], kinds[int(rng.integers(0, len(kinds)))]
        damaged = MUTATIONS[kind](seeds[name], rng)
        path = tmp_path / f"fuzz{n % 16}{Path(name).suffix}"
        path.unlink(
            missing_ok=True
        )  # a fresh file: rewriting one in place makes ext4 flush on every write
        path.write_bytes(damaged)
        tally["inputs"] += 1
        try:
            pixels = load_pixels(path, SPEC)
        except ImageDecodeError:
            tally["rejected"] += 1
            continue
        except Exception as exc:  # noqa: BLE001 - anything but a refusal is the bug this test hunts
            tally["crashes"] += 1
            crashes.append(f"{kind} of {name}: {type(exc).__name__}: {exc}")
            continue
        tally["decoded"] += 1
        if kind == "truncate" and not np.array_equal(pixels, intact[name]):
            tally["half_decoded"] += 1
            crashes.append(
                f"truncate of {name} to {len(damaged)}/{len(seeds[name])} bytes "
                "decoded different pixels"
            )
    print(
        f"\nfuzz: inputs {tally['inputs']}, decoded {tally['decoded']}, "
        f"rejected {tally['rejected']}, "
        f"crashes {tally['crashes']}, half-decoded {tally['half_decoded']}"
    )
    assert not crashes, crashes[:5]
    return tally


def test_fuzz_damaged_files(tmp_path: Path) -> None:
    inputs = 3000 * FUZZ_SCALE
    tally = fuzz(tmp_path, inputs, seed=FUZZ_SCALE)
    assert tally["inputs"] == inputs and tally["decoded"] + tally["rejected"] == inputs
    assert (
        tally["rejected"] > inputs // 6 and tally["decoded"] > inputs // 30
    )  # the mutations really do damage, and not everything
