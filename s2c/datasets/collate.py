"""Collate function: images as a list, data samples as a list of per-image dicts."""
from __future__ import annotations

from collections.abc import Sequence

from s2c.registry import FUNCTIONS


@FUNCTIONS.register_module()
def sample_list_collate(batch: Sequence[dict]) -> dict:
    """Collate ``PackClsInputs`` outputs without merging the per-image dicts.

    MMEngine's ``pseudo_collate`` would turn a list of dicts into a dict of
    lists; the model wants one dict per image (name, label, geometry, SE map).

    Args:
        batch: ``B`` dicts with ``inputs`` ``(3, H, W)`` and ``data_samples`` (dict).

    Returns:
        dict: ``inputs`` (list of ``B`` tensors, stacked by the data
        preprocessor) and ``data_samples`` (list of ``B`` dicts).
    """
    return dict(inputs=[b['inputs'] for b in batch],
                data_samples=[b['data_samples'] for b in batch])
