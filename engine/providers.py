"""Choosing the onnxruntime execution provider.

TensorRT, then CUDA, then CPU, whichever really runs.

onnxruntime-gpu lists its GPU providers even where no GPU or CUDA library exists and then quietly
falls back, so the provider is judged by what the created session actually reports.
"""

from __future__ import annotations

import contextlib
import io
import os
from collections.abc import Iterator
from typing import Any

import onnxruntime as ort

from siamese.core.errors import DeviceUnavailableError, ModelError, named
from siamese.engine.runtime_builds import installed_builds

DEVICES = ("auto", "cpu", "cuda", "tensorrt")
PROVIDERS = {
    "tensorrt": "TensorrtExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "cpu": "CPUExecutionProvider",
}
_AUTO_ORDER = ("tensorrt", "cuda", "cpu")
_DEFAULT_LOG_SEVERITY = 2
#: Why "auto" skips the GPU providers without trying them.
NO_DRIVER = "no NVIDIA driver visible (/proc/driver/nvidia/version)"
_QUIET_LOG_SEVERITY = 4


def gpu_present() -> bool:
    """Whether an NVIDIA driver is visible (cheap check before loading large CUDA libraries)."""
    return os.path.exists("/proc/driver/nvidia/version") or os.path.exists("/dev/nvidia0")


@contextlib.contextmanager
def _quiet_onnxruntime() -> Iterator[None]:
    """Silence provider-loading chatter (C++ log and Python prints) while probing."""
    ort.set_default_logger_severity(_QUIET_LOG_SEVERITY)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        ort.set_default_logger_severity(_DEFAULT_LOG_SEVERITY)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


ProviderOptions = dict[str, dict[str, Any]]


def _try_session(
    model_path: str,
    device: str,
    options: ort.SessionOptions,
    provider_options: ProviderOptions | None = None,
) -> tuple[ort.InferenceSession | None, str]:
    """Create a session on ``device``; return (session or None, reason it failed)."""
    provider = PROVIDERS[device]
    if provider not in ort.get_available_providers():
        return None, (
            f"this onnxruntime build has no {provider} (for the GPU build: "
            'pip uninstall -y onnxruntime && pip install "siamese[gpu]")'
        )
    extra = provider_options or {}
    chain = [device] if device == "cpu" else [device, "cpu"]
    providers = [(PROVIDERS[name], extra.get(name, {})) for name in chain]
    if device != "cpu" and hasattr(ort, "preload_dlls"):
        with contextlib.suppress(Exception), _quiet_onnxruntime():
            ort.preload_dlls()  # CUDA/cuDNN from pip wheels (e.g. PyTorch's), where present
    try:
        with _quiet_onnxruntime():
            session = ort.InferenceSession(
                model_path, options, providers=providers, enable_fallback=0
            )
    except Exception as exc:  # provider libraries missing or failing to initialise
        if device == "cpu":
            raise ModelError(
                f"{model_path}: onnxruntime cannot load this model ({_first_line(exc)})"
            ) from exc
        return None, f"{provider} failed to start ({_first_line(exc)})"
    if session.get_providers()[0] != provider:
        return (
            None,
            (
                f"{provider} is installed but could not start "
                "(no usable GPU, driver or CUDA libraries)"
            ),
        )
    return session, ""


def create_session(
    model_path: str,
    device: str = "auto",
    options: ort.SessionOptions | None = None,
    provider_options: ProviderOptions | None = None,
    passed_over: dict[str, str] | None = None,
) -> tuple[ort.InferenceSession, str]:
    """Open ``model_path`` on the best provider for ``device``.

    Args:
        model_path: the ONNX file.
        device: "auto" (TensorRT › CUDA › CPU, first that works), or "cpu", "cuda", "tensorrt" to
            insist.
        options: onnxruntime session options.
        provider_options: per-device provider options ({"tensorrt": {...}, "cuda": {...}}).
        passed_over: filled, under "auto", with why each better device did not run (so
            `siamese info --providers` can say why a GPU machine ran on the CPU).

    Returns:
        The session and the device it really runs on ("tensorrt", "cuda" or "cpu").

    Raises:
        DeviceUnavailableError: an insisted-on device cannot run here.
        ModelError: the file is not a loadable ONNX model.
    """
    if device not in DEVICES:
        raise DeviceUnavailableError(
            f"unknown device {device!r}; choose one of: {', '.join(DEVICES)}"
        )
    options = options or ort.SessionOptions()
    if device != "auto":
        session, reason = _try_session(model_path, device, options, provider_options)
        if session is None:
            raise DeviceUnavailableError(f"{named('device')} {device} cannot run here: {reason}")
        return session, device
    for candidate in _AUTO_ORDER:
        if candidate != "cpu" and not gpu_present():
            reason = NO_DRIVER
        else:
            session, reason = _try_session(model_path, candidate, options, provider_options)
            if session is not None:
                return session, candidate
        if passed_over is not None:
            passed_over[candidate] = reason
    raise AssertionError("unreachable: the CPU provider either loads or raises ModelError")


def runtime_report() -> dict[str, Any]:
    """What this onnxruntime can run on, for `siamese info --providers`.

    The build installed (distribution and version, and the CUDA it was built for), the
    execution providers it carries, whether an NVIDIA driver is visible, and for each device
    whether "auto" would try it. A provider listed here may still fail to start (missing CUDA,
    cuDNN or TensorRT libraries): only a session on a model says which one runs.
    """
    available = ort.get_available_providers()
    devices = {}
    for device in _AUTO_ORDER:
        if PROVIDERS[device] not in available:
            devices[device] = 'not in this build (pip install "siamese[gpu]")'
        elif device != "cpu" and not gpu_present():
            devices[device] = f"in this build; {NO_DRIVER}"
        else:
            devices[device] = "in this build; tried when the device is auto"
    return {
        "onnxruntime": ort.__version__,
        "distributions": installed_builds(),
        "built_for_cuda": _build_info().get("cuda_version") or None,
        "available_providers": available,
        "nvidia_driver": gpu_present(),
        "devices": devices,
    }


def _build_info() -> dict[str, str]:
    """onnxruntime's record of its own build (package name, CUDA version), where it has one."""
    try:
        from onnxruntime.capi import build_and_package_info as info
    except ImportError:
        return {}
    return {k: str(v) for k, v in vars(info).items() if not k.startswith("_")}
