"""The tower's input specification: the one preprocessing definition shared by training and serving.

It is stored in a run's config.json, copied into the ONNX file's metadata at export, and read
back by the engine, so the pixels a model sees at query time are prepared exactly as in training.

Pixel normalisation is defined here once, torch-free: :func:`normalization_constants` gives the
per-channel shift and scale of ``(x - 255·mean) · 1/(255·std)`` (which is ``(x/255 - mean)/std``).
Training's normaliser (a torch module) and the exported graph's first layer hold these very
constants, and :func:`normalize_pixels` applies them on the host for the few callers that need
float pixels outside a model (raw-pixel baselines, old float-input models).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal, get_args

import numpy as np
from numpy.typing import NDArray

from siamese.core.errors import ConfigError

ResizeRule = Literal["stretch", "fit-crop"]
RESIZE_RULES: tuple[str, ...] = get_args(ResizeRule)
INTERPOLATIONS = ("bilinear", "bicubic", "nearest", "lanczos")


@dataclass(frozen=True)
class InputSpec:
    """How an image becomes the tower's input tensor.

    Attributes:
        height, width: pixel size of the tensor the tower consumes.
        channels: 1 (grey, Pillow mode "L") or 3 (RGB).
        mean, std: per-channel normalisation applied to pixel values scaled to [0, 1].
        resize: "stretch" resizes to exactly height×width (the seed's rule); "fit-crop" scales
            the shorter side to fit, then crops the centre, keeping the aspect ratio.
        interpolation: Pillow resampling filter used for resizing.
    """

    height: int = 100
    width: int = 100
    channels: int = 1
    mean: tuple[float, ...] = field(default=(0.0,))
    std: tuple[float, ...] = field(default=(1.0,))
    resize: str = "stretch"
    interpolation: str = "bilinear"

    def __post_init__(self) -> None:
        if self.channels not in (1, 3):
            raise ConfigError(f"channels must be 1 (grey) or 3 (RGB), got {self.channels}")
        if self.height < 8 or self.width < 8:
            raise ConfigError(f"input size must be at least 8×8, got {self.height}×{self.width}")
        if len(self.mean) != self.channels or len(self.std) != self.channels:
            raise ConfigError(
                f"mean and std need one value per channel ({self.channels}), "
                f"got mean={list(self.mean)} std={list(self.std)}"
            )
        if any(s <= 0 for s in self.std):
            raise ConfigError(f"std values must be positive, got {list(self.std)}")
        if self.resize not in RESIZE_RULES:
            raise ConfigError(
                f"resize must be one of {', '.join(RESIZE_RULES)}, got {self.resize!r}"
            )
        if self.interpolation not in INTERPOLATIONS:
            raise ConfigError(
                f"interpolation must be one of {', '.join(INTERPOLATIONS)}, got "
                f"{self.interpolation!r}"
            )

    @property
    def mode(self) -> str:
        """The Pillow mode images are converted to before resizing."""
        return "L" if self.channels == 1 else "RGB"

    @property
    def shape(self) -> tuple[int, int, int]:
        """The (C, H, W) shape of one preprocessed image."""
        return (self.channels, self.height, self.width)

    @classmethod
    def create(
        cls,
        size: int | tuple[int, int],
        channels: int,
        *,
        mean: tuple[float, ...] | None = None,
        std: tuple[float, ...] | None = None,
        resize: str = "stretch",
    ) -> InputSpec:
        """Build a spec from a size and channel count; no normalisation by default (as the seed)."""
        height, width = (size, size) if isinstance(size, int) else size
        return cls(
            height=height,
            width=width,
            channels=channels,
            mean=tuple(mean) if mean is not None else (0.0,) * channels,
            std=tuple(std) if std is not None else (1.0,) * channels,
            resize=resize,
        )

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        data = asdict(self)
        data["mean"] = list(self.mean)
        data["std"] = list(self.std)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> InputSpec:
        """Rebuild a spec from :meth:`to_dict` output, rejecting unknown keys."""
        known = {"height", "width", "channels", "mean", "std", "resize", "interpolation"}
        unknown = set(data) - known
        if unknown:
            raise ConfigError(f"unknown input spec keys: {', '.join(sorted(unknown))}")
        values = dict(data)
        for key in ("mean", "std"):
            if key in values:
                values[key] = tuple(float(v) for v in values[key])
        return cls(**values)


def normalization_constants(spec: InputSpec) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
    """Per-channel ``(shift, scale)``, float32 shaped (C,): ``normalised = (x - shift) * scale``.

    shift = 255·mean and scale = 1/(255·std), computed in float32 so that training, the graph's
    constants and the host path all hold bit-identical values.
    """
    shift = np.asarray(spec.mean, dtype=np.float32) * np.float32(255.0)
    scale = np.float32(1.0) / (np.asarray(spec.std, dtype=np.float32) * np.float32(255.0))
    return shift, scale


def normalize_pixels(pixels: NDArray[np.uint8], spec: InputSpec) -> NDArray[np.float32]:
    """uint8 C×H×W or N×C×H×W pixels → the tower's float32 values, as the graph's first layer.

    For callers that need float pixels outside a model: raw-pixel baselines, and the engine's
    host path for format-1 models (which take float32 input).
    """
    shift, scale = normalization_constants(spec)
    out = np.subtract(pixels, shift.reshape(-1, 1, 1), dtype=np.float32)
    np.multiply(out, scale.reshape(-1, 1, 1), out=out)
    return out
