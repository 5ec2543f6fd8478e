"""The S2C CAM classifier (official ``networks/resnet38d.py`` ``Net_CAM``)."""
from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from mmengine.logging import print_log
from mmengine.model import BaseModel
from torch import nn

from s2c.cam.normalize import normalize_cams
from s2c.registry import MODELS
from s2c.utils.checkpoint import load_state_dict_strict, read_state_dict

from ..backbones.resnet38d import StemFeatures, is_bn_counter


@MODELS.register_module()
class CAMClassifier(BaseModel):
    """Backbone -> fc8 (1x1, no bias) -> ReLU = ``feat`` -> fc9 (1x1, no bias) = CAM -> GAP.

    With ``ssc``/``cpm`` configs it is the full S2C model (loss = ``loss_cls``
    + ``loss_ssc`` + ``loss_cpm``); without them it is the CAM baseline.

    With CPM active, the training forward and CPM's scale-1 CAM share the
    backbone's stem (everything before its first dropout) when that is exact
    (frozen BatchNorm, see ``CPM(share_stem=...)`` and :meth:`stem_sharing_problem`):
    the stem runs once with gradients, CPM continues from its detached output in
    eval mode; losses, gradients and CPM labels are bit-identical to two separate
    forwards.

    On CUDA the network runs in ``channels_last`` memory format (parameters
    converted when the model is moved to a CUDA device, inputs at each forward);
    on CPU nothing changes.

    Args:
        backbone: Backbone config (``ResNet38d``).
        num_classes: Foreground classes ``C`` (VOC: 20).
        feat_dim: Channels ``D`` of ``feat`` (S2C: 256).
        loss_cls: Classification loss config.
        ssc: SAM-segment contrasting loss config, or ``None``.
        cpm: CAM-based prompting module config, or ``None``.
        data_preprocessor: Data preprocessor config.
        channels_last: Use ``channels_last`` on CUDA (default True; faster
            convolutions with tensor cores). No effect on CPU.
        init_cfg: MMEngine init config.

    Raises:
        ValueError: ``cpm.share_stem=True`` with a backbone whose stem cannot be
            shared (no ``forward_stem``, or BatchNorm not frozen).

    Shapes:
        ``inputs``: ``(B, 3, H, W)``; ``feat``: ``(B, D, h, w)``; ``cam``:
        ``(B, C, h, w)`` with ``h = ceil(H / 8)``; ``logits``: ``(B, C)``.
    """

    def __init__(self, backbone: dict, num_classes: int = 20, feat_dim: int = 256,
                 loss_cls: dict | None = None, ssc: dict | None = None, cpm: dict | None = None,
                 data_preprocessor: dict | None = None, channels_last: bool = True,
                 init_cfg: dict | None = None) -> None:
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
        self.channels_last = bool(channels_last)
        self._stem_note = None  # why the stem is not shared, logged once
        if self.cpm is not None and self.cpm.share_stem:
            problem = self.stem_sharing_problem(built=True)
            if problem:
                raise ValueError(f'model.cpm.share_stem=True, but the stem cannot be shared: '
                                 f'{problem}')

    def init_weights(self) -> None:
        """Backbone init (pretrained when configured); xavier-uniform fc8/fc9 (official)."""
        super().init_weights()
        nn.init.xavier_uniform_(self.fc8.weight)
        nn.init.xavier_uniform_(self.fc9.weight)

    # ------------------------------------------------------------------ core
    def extract(self, inputs: torch.Tensor,
                stem: StemFeatures | None = None) -> dict[str, torch.Tensor]:
        """Run the network.

        Args:
            inputs: ``(B, 3, H, W)`` normalised images.
            stem: ``backbone.forward_stem(inputs)`` when already computed: the
                network continues from it (``inputs`` is not run again).

        Returns:
            dict: ``feat`` ``(B, D, h, w)`` (after ReLU), ``cam`` ``(B, C, h, w)``
            raw CAM, ``logits`` ``(B, C)`` = spatial mean of ``cam``.
        """
        if stem is None:
            x = self.backbone(self._memory_format(inputs))
        else:
            x = self.backbone.forward_from_stem(stem)
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
        cpm_targets, stem = None, None
        if self.cpm is not None and self.cpm.is_active():
            # CPM's pseudo-labels come from the current network in eval mode, no grad
            # (official model_s2c.py): compute them before the rest of the training
            # forward, from its stem when that is exact.
            stem = self._training_stem(inputs)
            cpm_targets = self.cpm.make_targets(self, inputs, data_samples, labels,
                                                stem=None if stem is None else stem.detach())
        out = self.extract(inputs, stem=stem)
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

    # ---------------------------------------------------------- shared stem
    def stem_sharing_problem(self, built: bool = False) -> str | None:
        """Why the backbone's stem cannot be shared by the training forward and CPM's
        eval-mode scale-1 CAM (the structural part; precision: ``CPM.stem_precision_problem``).

        Args:
            built: Check the configuration only (``freeze_bn``), as at build time when
                the modules' train/eval modes are not yet set; else check the current
                modes of the stem's modules (call in training mode).

        Returns:
            str | None: The reason, or ``None`` when sharing is exact.
        """
        backbone = self.backbone
        if not callable(getattr(backbone, 'forward_stem', None)):
            return f'{type(backbone).__name__} has no forward_stem'
        if built:
            if not getattr(backbone, 'freeze_bn', False):
                return ('the backbone trains its BatchNorm (freeze_bn=False): batch statistics '
                        'in the training forward, running statistics in eval mode')
            return None
        return backbone.stem_mode_problem()

    def _training_stem(self, inputs: torch.Tensor) -> StemFeatures | None:
        """The stem of the training forward when CPM may share it (``cpm.share_stem``)."""
        mode = self.cpm.share_stem
        if mode is False:
            return None
        problem = self.stem_sharing_problem() \
            or self.cpm.stem_precision_problem(inputs.device.type)
        if problem:
            if mode is True:
                raise RuntimeError(f'model.cpm.share_stem=True, but the stem cannot be shared: '
                                   f'{problem}')
            if problem != self._stem_note:
                print_log(f'CPM computes its scale-1 CAM separately (stem not shared): {problem}',
                          logger='current', level=logging.INFO)
                self._stem_note = problem
            return None
        return self.backbone.forward_stem(self._memory_format(inputs))

    # -------------------------------------------------------- memory format
    def _memory_format(self, inputs: torch.Tensor) -> torch.Tensor:
        """``inputs`` in ``channels_last`` on CUDA (when enabled), unchanged on CPU."""
        if self.channels_last and inputs.is_cuda and inputs.dim() == 4:
            return inputs.contiguous(memory_format=torch.channels_last)
        return inputs

    def _apply(self, fn: Callable, recurse: bool = True) -> CAMClassifier:
        """``nn.Module._apply`` (``to``/``cuda``/``cpu``/...), then the network's 4-D
        parameters in ``channels_last`` on CUDA, in the default format elsewhere; done
        before MMEngine wraps the model (DDP), so gradients share the parameters' layout."""
        super()._apply(fn, recurse)
        backbone = self._modules.get('backbone')
        param = None if backbone is None else next(backbone.parameters(), None)
        if param is None:  # called during __init__
            return self
        to_cl = getattr(self, 'channels_last', False) and param.is_cuda
        for m in (backbone, self._modules.get('fc8'), self._modules.get('fc9')):
            for p in m.parameters() if m is not None else ():
                if p.dim() != 4:
                    continue
                if to_cl and not p.is_contiguous(memory_format=torch.channels_last):
                    p.data = p.data.contiguous(memory_format=torch.channels_last)
                elif not to_cl and not p.is_contiguous():  # e.g. back from CUDA
                    p.data = p.data.contiguous()
        return self

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
