"""The S2C CAM classifier (official ``networks/resnet38d.py`` ``Net_CAM``)."""
from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from mmengine.model import BaseModel
from torch import nn

from s2c.cam.normalize import normalize_cams
from s2c.registry import MODELS
from s2c.utils.checkpoint import load_state_dict_strict, read_state_dict

from ..backbones.resnet38d import is_bn_counter


@MODELS.register_module()
class CAMClassifier(BaseModel):
    """Backbone -> fc8 (1x1, no bias) -> ReLU = ``feat`` -> fc9 (1x1, no bias) = CAM -> GAP.

    With ``ssc``/``cpm`` configs it is the full S2C model (loss = ``loss_cls``
    + ``loss_ssc`` + ``loss_cpm``); without them it is the CAM baseline.

    Args:
        backbone: Backbone config (``ResNet38d``).
        num_classes: Foreground classes ``C`` (VOC: 20).
        feat_dim: Channels ``D`` of ``feat`` (S2C: 256).
        loss_cls: Classification loss config.
        ssc: SAM-segment contrasting loss config, or ``None``.
        cpm: CAM-based prompting module config, or ``None``.
        data_preprocessor: Data preprocessor config.
        init_cfg: MMEngine init config.

    Shapes:
        ``inputs``: ``(B, 3, H, W)``; ``feat``: ``(B, D, h, w)``; ``cam``:
        ``(B, C, h, w)`` with ``h = ceil(H / 8)``; ``logits``: ``(B, C)``.
    """

    def __init__(self, backbone: dict, num_classes: int = 20, feat_dim: int = 256,
                 loss_cls: dict | None = None, ssc: dict | None = None, cpm: dict | None = None,
                 data_preprocessor: dict | None = None, init_cfg: dict | None = None) -> None:
        if data_preprocessor is None:
            data_preprocessor = dict(type='ClsDataPreprocessor')
        if isinstance(data_preprocessor, dict):  # build from our registry, whatever the scope
            data_preprocessor = MODELS.build(data_preprocessor)
        super().__init__(data_preprocessor=data_preprocessor, init_cfg=init_cfg)
        self.backbone = MODELS.build(backbone)
        self.num_classes = num_classes
        self.feat_dim = feat_dim
        self.fc8 = nn.Conv2d(self.backbone.out_channels, feat_dim, 1, bias=False)
        self.fc9 = nn.Conv2d(feat_dim, num_classes, 1, bias=False)
        self.loss_cls = MODELS.build(loss_cls or dict(type='MultiLabelBCELoss'))
        self.ssc = MODELS.build(ssc) if ssc is not None else None
        self.cpm = MODELS.build(cpm) if cpm is not None else None

    def init_weights(self) -> None:
        """Backbone init (pretrained when configured); xavier-uniform fc8/fc9 (official)."""
        super().init_weights()
        nn.init.xavier_uniform_(self.fc8.weight)
        nn.init.xavier_uniform_(self.fc9.weight)

    # ------------------------------------------------------------------ core
    def extract(self, inputs: torch.Tensor) -> dict[str, torch.Tensor]:
        """Run the network.

        Args:
            inputs: ``(B, 3, H, W)`` normalised images.

        Returns:
            dict: ``feat`` ``(B, D, h, w)`` (after ReLU), ``cam`` ``(B, C, h, w)``
            raw CAM, ``logits`` ``(B, C)`` = spatial mean of ``cam``.
        """
        x = self.backbone(inputs)
        if isinstance(x, dict):
            x = x['out']
        feat = F.relu(self.fc8(x))
        cam = self.fc9(feat)
        return dict(feat=feat, cam=cam, logits=cam.mean(dim=(2, 3)))

    @staticmethod
    def stack_labels(data_samples: Sequence[dict], device: torch.device) -> torch.Tensor:
        """``(B, C)`` float multi-hot labels of a batch."""
        return torch.stack([s['gt_label'] for s in data_samples]).to(device).float()

    def forward(self, inputs: torch.Tensor, data_samples: Sequence[dict] | None = None,
                mode: str = 'tensor'):
        """MMEngine entry point.

        Args:
            inputs: ``(B, 3, H, W)``.
            data_samples: Per-image dicts from ``PackClsInputs``.
            mode: ``'loss'`` -> dict of ``loss_*`` scalars; ``'predict'`` -> list
                of per-image dicts with normalised CAMs at the input resolution;
                ``'tensor'`` -> the :meth:`extract` dict.
        """
        if mode == 'loss':
            return self.loss(inputs, data_samples)
        if mode == 'predict':
            return self.predict(inputs, data_samples)
        if mode == 'tensor':
            return self.extract(inputs)
        raise ValueError(f'unknown mode {mode!r}; expected loss, predict or tensor')

    def loss(self, inputs: torch.Tensor, data_samples: Sequence[dict]) -> dict[str, torch.Tensor]:
        """Training losses (``loss_cls`` [+ ``loss_ssc``] [+ ``loss_cpm``]); with SSC also
        ``ssc_coverage``, the share of crop pixels inside an SE segment (logged only)."""
        labels = self.stack_labels(data_samples, inputs.device)
        cpm_targets = None
        if self.cpm is not None and self.cpm.is_active():
            # CPM's pseudo-labels come from the current network in eval mode, no grad
            # (official model_s2c.py): compute them before the training forward.
            cpm_targets = self.cpm.make_targets(self, inputs, data_samples, labels)
        out = self.extract(inputs)
        losses = dict(loss_cls=self.loss_cls(out['logits'], labels))
        if self.ssc is not None:
            losses['loss_ssc'] = self.ssc(out['feat'], data_samples, inputs.shape[-2:])
            # Logged, not summed (no 'loss' in the key): share of crop pixels inside an SE
            # segment; 0 for a whole logging window means SSC learns nothing.
            losses['ssc_coverage'] = torch.stack(
                [(s['se_map'] > 0).float().mean() for s in data_samples]).mean().detach()
        if cpm_targets is not None:
            losses['loss_cpm'] = self.cpm.loss(out['cam'], labels, cpm_targets,
                                               inputs.shape[-2:])
        return losses

    def predict(self, inputs: torch.Tensor, data_samples: Sequence[dict]) -> list[dict]:
        """Single-scale CAMs for validation.

        Returns:
            list[dict]: per image ``name``, ``keys`` (``(K,)`` present 0-based
            classes), ``cams`` (``(K, H, W)`` float32 CPU tensor in [0, 1] at the
            input resolution) and ``gt_seg`` when the sample has it.
        """
        out = self.extract(inputs)
        cams = F.interpolate(out['cam'], size=inputs.shape[-2:], mode='bilinear',
                             align_corners=False)
        cams = normalize_cams(cams)
        results = []
        for i, sample in enumerate(data_samples):
            keys = torch.nonzero(sample['gt_label'] > 0.5).flatten()
            result = dict(name=sample['name'], keys=keys.cpu(),
                          cams=cams[i, keys.to(cams.device)].detach().float().cpu())
            if 'gt_seg' in sample:
                result['gt_seg'] = sample['gt_seg']
            results.append(result)
        return results

    # ------------------------------------------------------------- weights
    @staticmethod
    def convert_official_state_dict(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Map an official S2C/PSA ``net_main.pth`` state dict to this model's keys.

        Backbone keys (``conv1a``, ``b2`` ... ``bn7``) get the ``backbone.``
        prefix; ``fc8``/``fc9`` are kept; ``bn8.*`` is dropped (defined but never
        used in the official forward). A ``module.`` prefix (DataParallel) is removed.
        """
        out = {}
        for key, value in state.items():
            key = key[len('module.'):] if key.startswith('module.') else key
            if key.startswith('bn8.'):
                continue
            out[key if key.startswith(('fc8.', 'fc9.')) else 'backbone.' + key] = value
        return out

    def load_official_checkpoint(self, path: str) -> None:
        """Load an official S2C classifier checkpoint (``XXXnet_main.pth``) strictly.

        Raises:
            KeyError/ValueError: On key or shape mismatches (names listed).
        """
        state = read_state_dict(path, 'S2C classifier checkpoint')
        load_state_dict_strict(self, self.convert_official_state_dict(state), path,
                               optional=is_bn_counter)
