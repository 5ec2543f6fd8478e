"""Moves a collated batch to the model's device and stacks the images."""
from __future__ import annotations

import torch
from mmengine.model import BaseDataPreprocessor

from s2c.registry import MODELS


@MODELS.register_module()
class ClsDataPreprocessor(BaseDataPreprocessor):
    """Stack ``inputs`` into ``(B, 3, H, W)`` and move everything to the device.

    Images are already normalised by the pipeline (S2C pads crops with zeros
    *after* normalisation), so nothing else happens here. ``data_samples``
    stay a list of dicts (see :class:`~s2c.datasets.transforms.PackClsInputs`).
    """

    def forward(self, data: dict, training: bool = False) -> dict:
        data = self.cast_data(data)
        inputs = data['inputs']
        if isinstance(inputs, (list, tuple)):
            shapes = {tuple(x.shape) for x in inputs}
            if len(shapes) > 1:
                raise ValueError(f'images of one batch have different sizes {sorted(shapes)}; '
                                 'use batch_size=1 for full-image evaluation or crop in the '
                                 'pipeline')
            inputs = torch.stack(list(inputs))
        return dict(inputs=inputs, data_samples=data.get('data_samples'))
