"""Typed errors: every user mistake becomes one of these, and the CLI prints it as one line."""

from __future__ import annotations


class SiameseError(Exception):
    """Base class of every error the product raises on purpose (bad input, mismatches)."""


class DataError(SiameseError):
    """A dataset or image folder is missing, empty or malformed."""


class ImageDecodeError(DataError):
    """One image file cannot be decoded; carries the path so batch jobs can report and skip it.

    ``kind`` says what class of problem it is, so a caller (the HTTP service) can answer
    differently without parsing the message: "missing", "empty", "too_large" (bytes or pixels),
    "unsupported" (not an image, or a format outside the allow-list) or "corrupt".
    """

    def __init__(self, path: str, reason: str, *, kind: str = "corrupt") -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason
        self.kind = kind


class ConfigError(SiameseError):
    """A configuration value is invalid (unknown tower, bad size, inconsistent options)."""


class RunError(SiameseError):
    """A training run directory is missing or incomplete."""


class ModelError(SiameseError):
    """An ONNX model is missing, unreadable, or not a siamese model."""


class ParityError(SiameseError):
    """The exported ONNX model does not reproduce the PyTorch tower within tolerance."""


class DeviceUnavailableError(SiameseError):
    """The execution provider the user insisted on cannot run on this machine."""


class GalleryError(SiameseError):
    """A gallery directory is missing, incomplete or inconsistent."""


class ModelMismatchError(GalleryError):
    """A gallery was built with a different model than the one offered to search it."""


class GalleryLockedError(GalleryError):
    """Another process is writing the gallery; writers take turns."""


class RecallTooLowError(GalleryError):
    """An approximate index does not reach the recall the user asked for; nothing was published."""
