"""Reading weight files and loading state dicts strictly (every model of s2c).

Every checkpoint is read with ``torch.load(weights_only=True)`` (no pickled
code runs) and loaded key for key: a missing, unexpected or mis-shaped tensor
is an error that names the file, the keys and what to check. Used for the SAM
variants, the ResNet-38d ImageNet weights, our classifier checkpoints and the
official S2C ``XXXnet_main.pth`` files.
"""
from __future__ import annotations

import logging
import os.path as osp
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import torch
from torch import nn

logger = logging.getLogger(__name__)

#: Keys listed in a mismatch message before ``(+N more)``.
MAX_LISTED_KEYS = 10


def load_torch_file(path: str, what: str = 'weights') -> Any:
    """``torch.load`` a file on the CPU with ``weights_only=True``.

    Args:
        path: The file.
        what: What the file is, for messages (``'SAM checkpoint'``...).

    Returns:
        The loaded object (usually a dict).

    Raises:
        FileNotFoundError: When ``path`` does not exist.
        RuntimeError: When the file is truncated or not a torch file (names the
            file and its size, says to re-download or regenerate it).
    """
    if not osp.isfile(path):
        raise FileNotFoundError(f'{what} file {path} not found')
    try:
        return torch.load(path, map_location='cpu', weights_only=True)
    except Exception as e:  # torch.load raises many types on corrupt files
        raise RuntimeError(
            f'cannot read {what} file {path} ({osp.getsize(path)} bytes): '
            f'{type(e).__name__}: {e}. The file is truncated or not a torch checkpoint; '
            're-download or regenerate it.') from e


def read_state_dict(path: str, what: str = 'weights') -> dict[str, torch.Tensor]:
    """Read a state dict of tensors, unwrapping ``{'state_dict': ...}`` / ``{'model': ...}``.

    Raises:
        FileNotFoundError / RuntimeError: See :func:`load_torch_file`; also when
            the file holds something else than a mapping of tensors.
    """
    obj = load_torch_file(path, what)
    if isinstance(obj, Mapping):
        for key in ('state_dict', 'model'):
            if key in obj and isinstance(obj[key], Mapping):
                obj = obj[key]
                break
    if not isinstance(obj, Mapping) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise RuntimeError(f'{what} file {path} does not hold a state dict of tensors (got '
                           f'{type(obj).__name__}); re-download or regenerate it.')
    return dict(obj)


def format_keys(keys: Iterable[str], limit: int = MAX_LISTED_KEYS) -> str:
    """``'N: [a, b, ... (+M more)]'`` for a list of state-dict keys."""
    keys = list(keys)
    shown = ', '.join(keys[:limit])
    more = f', ... (+{len(keys) - limit} more)' if len(keys) > limit else ''
    return f'{len(keys)}: [{shown}{more}]'


def load_state_dict_strict(module: nn.Module, state_dict: Mapping[str, torch.Tensor],
                           source: str, *, strict: bool = True, hint: str = '',
                           optional: Callable[[str], bool] | None = None) -> None:
    """Load ``state_dict`` into ``module`` key for key.

    Args:
        module: Target module.
        state_dict: Parameters and buffers.
        source: Where the dict came from (file name), for messages.
        strict: When False, missing/unexpected keys are logged as a warning and
            what matches is loaded (shapes are always checked).
        hint: Appended to error messages (what to check, e.g. the model type).
        optional: Keys of the module that may be absent from ``state_dict``
            (e.g. BatchNorm ``num_batches_tracked``, absent from MXNet conversions).

    Raises:
        KeyError: (strict) missing or unexpected keys, listed with their counts.
        ValueError: Tensors of the wrong shape, listed with both shapes.
    """
    own = module.state_dict()
    optional = optional or (lambda key: False)
    missing = [k for k in own if k not in state_dict and not optional(k)]
    unexpected = [k for k in state_dict if k not in own]
    suffix = f' {hint}' if hint else ''
    if missing or unexpected:
        msg = (f'state dict from {source} does not match the model: missing keys '
               f'{format_keys(missing)}; unexpected keys {format_keys(unexpected)}.')
        if strict:
            raise KeyError(msg + suffix)
        logger.warning(msg)
    bad = [f'{k}: file {tuple(v.shape)} vs model {tuple(own[k].shape)}'
           for k, v in state_dict.items() if k in own and tuple(v.shape) != tuple(own[k].shape)]
    if bad:
        raise ValueError(f'state dict from {source} has tensors of the wrong shape '
                         f'({len(bad)}: {"; ".join(bad[:MAX_LISTED_KEYS])}).{suffix}')
    module.load_state_dict({k: v for k, v in state_dict.items() if k in own}, strict=False)
