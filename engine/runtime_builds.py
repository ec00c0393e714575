"""Which onnxruntime build is installed, and a one-line refusal when two are.

onnxruntime (CPU) and onnxruntime-gpu are two distributions of one import package,
``onnxruntime``: installed together, the second overwrites the first's files, so the package
is a mixture of both, and uninstalling either deletes files the other needs. pip cannot refuse
the pair, so the engine does, before onnxruntime is imported, with the commands that repair the
environment. This module reads distribution metadata only; it never imports onnxruntime.
"""

from __future__ import annotations

from importlib import metadata

from siamese.core.errors import SiameseError

#: Distributions that install the ``onnxruntime`` import package (one build each).
BUILDS = (
    "onnxruntime",
    "onnxruntime-gpu",
    "onnxruntime-directml",
    "onnxruntime-openvino",
    "onnxruntime-qnn",
    "onnxruntime-rocm",
    "onnxruntime-migraphx",
    "onnxruntime-training",
)


class RuntimeConflictError(SiameseError):
    """Two onnxruntime builds are installed in one environment and overwrite each other."""


def installed_builds() -> dict[str, str]:
    """The onnxruntime distributions installed here, name → version (normally one)."""
    found = {}
    for name in BUILDS:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return found


def conflict_message(builds: dict[str, str]) -> str:
    """One line: which builds clash, and the commands that leave exactly one."""
    names = " ".join(builds)
    keep = "gpu" if "onnxruntime-gpu" in builds else "cpu"
    other = "cpu" if keep == "gpu" else "gpu"
    return (
        f"{' and '.join(builds)} are {'both' if len(builds) == 2 else 'all'} installed and "
        "overwrite each other's `onnxruntime` "
        f"package (removing one breaks the other): run `pip uninstall -y {names}`, then "
        f'`pip install "siamese[{keep}]"` (or "siamese[{other}]")'
    )


def check_single_build() -> None:
    """Refuse an environment holding more than one onnxruntime build.

    Raises:
        RuntimeConflictError: one line naming the builds and what to uninstall.
    """
    builds = installed_builds()
    if len(builds) > 1:
        raise RuntimeConflictError(conflict_message(builds))
