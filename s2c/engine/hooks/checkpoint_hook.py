"""Checkpoints that load with ``torch.load(weights_only=True)`` (torch >= 2.6 default).

MMEngine 0.10 stores its message hub in checkpoints as ``HistoryBuffer``
objects whose pickled state holds functions (``HistoryBuffer.min`` ...,
reached through ``builtins.getattr``) plus NumPy arrays and scalars. Under
torch >= 2.6, ``torch.load`` refuses such files, so ``--resume`` breaks.
Allow-listing ``getattr`` would re-open the arbitrary-code hole that
``weights_only`` closes, so instead :class:`WeightsOnlyCheckpointHook`
rewrites the ``meta`` and ``message_hub`` parts of every checkpoint into
plain tensors and builtins before it is saved, and restores the
``HistoryBuffer`` objects after it is loaded. Our checkpoints therefore
contain only tensors, Python containers and numbers: nothing needs to be
allow-listed, and any tool can read them with ``weights_only=True``.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch
from mmengine.hooks import Hook
from mmengine.logging import HistoryBuffer

from s2c.registry import HOOKS

_BUFFER_TAG = '__history_buffer__'
_ARRAY_TAG = '__ndarray__'
#: Checkpoint entries rewritten by the hook (model/optimizer/scheduler states are already plain).
CONVERTED_KEYS = ('meta', 'message_hub')


def to_plain(obj: Any) -> Any:
    """Recursively replace NumPy values and ``HistoryBuffer`` objects by tensors/builtins.

    NumPy arrays become ``{'__ndarray__': tensor}``, NumPy scalars Python
    numbers, ``HistoryBuffer`` a tagged dict of its two histories and
    ``max_length``; containers keep their type. :func:`from_plain` undoes it.
    """
    if isinstance(obj, HistoryBuffer):
        log, count = obj.data
        return {_BUFFER_TAG: True, 'log_history': torch.from_numpy(np.array(log)),
                'count_history': torch.from_numpy(np.array(count)),
                'max_length': int(obj.max_length)}
    if isinstance(obj, np.ndarray):
        return {_ARRAY_TAG: torch.from_numpy(np.array(obj))}
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, dict):
        return type(obj)((k, to_plain(v)) for k, v in obj.items())
    if isinstance(obj, (list, tuple)) and not hasattr(obj, '_fields'):
        return type(obj)(to_plain(v) for v in obj)
    return obj


def from_plain(obj: Any) -> Any:
    """Inverse of :func:`to_plain`."""
    if isinstance(obj, dict):
        if obj.get(_BUFFER_TAG) is True:
            return HistoryBuffer(obj['log_history'].numpy(), obj['count_history'].numpy(),
                                 obj['max_length'])
        if set(obj) == {_ARRAY_TAG}:
            return obj[_ARRAY_TAG].numpy()
        return type(obj)((k, from_plain(v)) for k, v in obj.items())
    if isinstance(obj, (list, tuple)) and not hasattr(obj, '_fields'):
        return type(obj)(from_plain(v) for v in obj)
    return obj


@HOOKS.register_module()
class WeightsOnlyCheckpointHook(Hook):
    """Keep checkpoints loadable with ``torch.load(weights_only=True)``.

    Runs last when saving (so it sees what other hooks added) and converts
    ``meta``/``message_hub`` with :func:`to_plain`; after loading it restores
    them with :func:`from_plain` before the runner resumes its message hub.
    """

    priority = 'VERY_LOW'

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        for key in CONVERTED_KEYS:
            if key in checkpoint:
                checkpoint[key] = to_plain(checkpoint[key])

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        for key in CONVERTED_KEYS:
            if key in checkpoint:
                checkpoint[key] = from_plain(checkpoint[key])
