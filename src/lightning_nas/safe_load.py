"""Loading tensors from files a user hands in, without ever running code from them.

``torch.load(..., weights_only=True)`` only rebuilds tensors and plain containers; a file whose
pickle names any other callable is refused. Errors come back as one-line :class:`ConfigError`
naming the setting the file came from.
"""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path

import torch

from lightning_nas.config import ConfigError

__all__ = ["load_state_dict_file"]


def _reason(error: BaseException) -> str:
    if isinstance(error, pickle.UnpicklingError) or "Weights only load failed" in str(error):
        return "it holds objects other than tensors, refused unread"
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def load_state_dict_file(path: str | Path, key: str, fix: str) -> dict[str, torch.Tensor]:
    """The ``{name: tensor}`` mapping saved in ``path`` (tensors only, on the CPU).

    Args:
        path: a file written by ``torch.save(model.state_dict(), path)``.
        key: the setting that named the file, for the error message (``weights``, ``resume``).
        fix: what the user can do about a bad file, for the error message.

    Raises:
        ConfigError: ``<key>: <path> is not a state_dict (<reason>) (<fix>)``.
    """
    if not zipfile.is_zipfile(path):
        raise ConfigError(f"{key}: {path} is not a state_dict (not a file written by torch.save) ({fix})")
    try:
        state = torch.load(Path(path), map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError, ValueError) as error:
        raise ConfigError(f"{key}: {path} is not a state_dict ({_reason(error)}) ({fix})") from error
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ConfigError(f"{key}: {path} is not a state_dict (expected a mapping of names to tensors) ({fix})")
    return state
