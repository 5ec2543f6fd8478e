"""Device selection shared by every model and cache job."""
from __future__ import annotations

import torch


def resolve_device(device: str | torch.device | None = 'auto') -> torch.device:
    """Turn a config value into a :class:`torch.device`.

    Args:
        device: ``'auto'`` or ``None`` (CUDA when available, else CPU), or any
            string torch accepts (``'cpu'``, ``'cuda'``, ``'cuda:1'``).

    Returns:
        torch.device: The device to use.

    Raises:
        RuntimeError: When CUDA is asked for but not available.
    """
    if device is None or device == 'auto':
        return torch.device('cuda' if torch.cuda.is_available() else 'cpu')
    device = torch.device(device)
    if device.type == 'cuda' and not torch.cuda.is_available():
        raise RuntimeError(
            f'device {device} was requested but CUDA is not available; '
            "set device='cpu' (or 'auto') in the config or with --cfg-options.")
    return device
