"""Reading a state dict of tensors from a file, never running pickled code.

Safetensors is recognised by its content, not its suffix; anything else goes through
``torch.load(weights_only=True)``, which refuses a pickle that would need code.
"""

from __future__ import annotations

from pathlib import Path

import torch

from siamese.core.errors import ConfigError


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """A state dict of tensors from safetensors or a torch file, never running pickled code.

    Safetensors is recognised by its content, not its suffix.

    Raises:
        ConfigError: missing or unreadable file, a pickle that needs code, or not tensors.
    """
    if not path.is_file():
        raise ConfigError(f"{path}: weights file not found")
    try:
        loaded = _load_tensors(path)
    except Exception as exc:  # corrupt file, or a pickle needing code execution (refused)
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConfigError(f"{path}: cannot load weights safely ({reason})") from exc
    state = loaded.get("state_dict", loaded) if isinstance(loaded, dict) else None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ConfigError(f"{path}: not a state dict of tensors")
    return dict(state)


def _load_tensors(path: Path) -> object:
    if _is_safetensors(path):
        from safetensors.torch import load_file

        return load_file(path)
    return torch.load(path, map_location="cpu", weights_only=True)


def _is_safetensors(path: Path) -> bool:
    """Sniff the content: an 8-byte little-endian header length, then JSON."""
    with path.open("rb") as f:
        head = f.read(9)
    if len(head) < 9 or head[8:9] != b"{":
        return False
    return int.from_bytes(head[:8], "little") < path.stat().st_size
