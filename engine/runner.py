"""Running a batch through a session.

Plain ``run`` on the CPU, IO binding with device buffers on GPUs.

On CUDA and TensorRT, ``session.run`` with numpy arrays allocates device memory for the input
and output on every call. The binding runner keeps one preallocated input and output buffer on
the device per batch size, copies each batch in place, and binds them once. The input buffer
has the model's input type: uint8 for format-2 models, whose graphs normalise on the device, so
each batch crosses to the GPU at a quarter of the float32 size.
"""

from __future__ import annotations

import threading
from typing import Protocol

import numpy as np
import onnxruntime as ort
from numpy.typing import NDArray

from siamese.contracts.model_card import INPUT_NAME, OUTPUT_NAME

#: Batch sizes whose device buffers are kept (a gallery uses one, its last partial batch another).
_MAX_BOUND_SHAPES = 4


class Runner(Protocol):
    """Runs one N×C×H×W batch of the model's input type and returns float32 embeddings."""

    def __call__(self, images: NDArray[np.generic]) -> NDArray[np.float32]: ...


class SessionRunner:
    """The CPU path: onnxruntime reads the numpy batch in place and allocates the (small) output."""

    def __init__(self, session: ort.InferenceSession) -> None:
        self.session = session

    def __call__(self, images: NDArray[np.generic]) -> NDArray[np.float32]:
        return self.session.run([OUTPUT_NAME], {INPUT_NAME: images})[0]


class _Bound:
    """Preallocated input and output OrtValues for one batch size, bound to one IOBinding."""

    def __init__(
        self,
        session: ort.InferenceSession,
        shape: tuple[int, ...],
        dim: int,
        device: str,
        device_id: int,
        input_dtype: type[np.generic],
    ) -> None:
        self.input = ort.OrtValue.ortvalue_from_shape_and_type(
            list(shape), input_dtype, device, device_id
        )
        self.output = ort.OrtValue.ortvalue_from_shape_and_type(
            [shape[0], dim], np.float32, device, device_id
        )
        self.binding = session.io_binding()
        self.binding.bind_ortvalue_input(INPUT_NAME, self.input)
        self.binding.bind_ortvalue_output(OUTPUT_NAME, self.output)


class BindingRunner:
    """The GPU path: IO binding with device buffers reused across calls.

    Args:
        session: the session (CUDA or TensorRT provider).
        dim: embedding dimension (the output's second axis).
        device: OrtValue device type, "cuda" (or "cpu", which lets tests exercise the same code).
        device_id: GPU ordinal.
        input_dtype: the model's input element type (np.uint8, or np.float32 for format 1).
    """

    def __init__(
        self,
        session: ort.InferenceSession,
        dim: int,
        device: str = "cuda",
        device_id: int = 0,
        input_dtype: type[np.generic] = np.uint8,
    ) -> None:
        self.session = session
        self.dim = dim
        self.input_dtype = input_dtype
        self.device = device
        self.device_id = device_id
        self._bound: dict[tuple[int, ...], _Bound] = {}
        # The bound buffers are shared state: two threads (a service's query batcher and its gallery
        # writer) running the same shape at once would overwrite each other's input.
        self._lock = threading.Lock()

    def _binding_for(self, shape: tuple[int, ...]) -> _Bound:
        bound = self._bound.get(shape)
        if bound is None:
            if len(self._bound) >= _MAX_BOUND_SHAPES:
                self._bound.pop(next(iter(self._bound)))  # forget the oldest shape's buffers
            bound = self._bound[shape] = _Bound(
                self.session, shape, self.dim, self.device, self.device_id, self.input_dtype
            )
        return bound

    def __call__(self, images: NDArray[np.generic]) -> NDArray[np.float32]:
        with self._lock:
            bound = self._binding_for(tuple(images.shape))
            bound.input.update_inplace(np.ascontiguousarray(images, dtype=self.input_dtype))
            self.session.run_with_iobinding(bound.binding)
            # The output buffer is reused next call, so hand back our own copy (on CPU numpy() may
            # be a view).
            return np.array(bound.output.numpy(), copy=True)


def make_runner(
    session: ort.InferenceSession, device: str, dim: int, input_dtype: type[np.generic] = np.uint8
) -> Runner:
    """IO binding on GPU providers (input buffers of ``input_dtype``), plain runs on the CPU."""
    if device in ("cuda", "tensorrt"):
        return BindingRunner(session, dim, "cuda", input_dtype=input_dtype)
    return SessionRunner(session)
