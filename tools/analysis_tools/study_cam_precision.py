"""Precision of CPM's no-grad multi-scale CAM forwards, measured (a script, not a test).

Under ``--amp`` (MMEngine's ``AmpOptimWrapper``, fp16 autocast) CPM's CAM
forwards (:func:`s2c.cam.inference.batch_multiscale_cams`, four scales per
training step, no gradients) used to run in fp16 as well. This tool measures
what that changes. For training crops of the config's own training dataloader
(its augmentation, seeded), a trained classifier's CAMs are computed in fp32
and in every reduced precision, and each goes through CPM's refinement
(:meth:`s2c.models.CPM.refine`: peaks with the config's CPM settings,
:func:`s2c.models.cpm.prompts.peak_prompts` through ``CPM.prompt_peaks``, the
config's SAM back-end and embedding source, label composition). Per precision:

- ``max |dCAM|``: maximum absolute difference of the normalised CAMs (values in
  [0, 1)) from fp32, over all crops;
- ``peaks =``: share of (crop, present class) peak sets identical to fp32's (a
  class that has peaks in one precision only counts as changed);
- ``labels =``: share of non-padding CPM label pixels identical to fp32's;
- the CAM forward time per batch, and how often a non-finite CAM fell back to fp32.

Decision rule (the issue): reduced precision is used for these forwards only
where >= 95 % of the peak sets and >= 99 % of the label pixels match fp32 (for
every checkpoint studied); otherwise they run in fp32 (TF32 convolutions on
CUDA) even under ``--amp``. The result sets ``SAFE_CAM_AUTOCAST_DTYPES`` and
``DEFAULT_CAM_PRECISION`` in ``s2c/cam/inference.py`` (CPM's ``cam_precision``:
``'auto'`` follows autocast in the passing dtypes only).

Precisions: on CUDA ``torch.autocast`` fp16 / bf16, and TF32 (the reference
then runs with TF32 disabled); on CPU ``torch.autocast('cpu')`` bf16, and fp16
EMULATED (row ``fp16 (emulated)``): CPU fp16 autocast works but has no fast
convolution kernel (PyTorch's reference ``slow_conv2d`` / ``slow_conv_dilated2d``,
about 30x slower than fp32 here), so every convolution gets fp16-rounded inputs
and weights, accumulates in fp32 (as cuDNN's fp16 convolutions do) and rounds
its output to fp16; BatchNorm, ReLU and the residual sums then run on fp16
tensors, as under autocast. The first batch is also run with real CPU fp16
autocast and the difference of the two is printed (``--fp16 autocast`` runs
real autocast throughout).

Example (the demo checkpoints, CPU; add ``--fp16 autocast --precisions fp16`` for
real CPU fp16 autocast on every crop, about 1 h on one core)::

    python tools/analysis_tools/study_cam_precision.py \\
        configs/demo/s2c_resnet38d-w0.125_1xb8-12e_demo-128x128.py \\
        work_dirs/s2c_demo/epoch_12.pth work_dirs/cam_demo/epoch_12.pth --num-crops 240

Result (CPU, 1 thread, 240 training crops = one epoch of the demo, 406 peak sets per
checkpoint; s2c_demo / cam_demo):

================  =================  ===============  ================  ========
precision         max |dCAM|         peak sets =      label pixels =    passes
================  =================  ===============  ================  ========
fp16 (autocast)   3.0e-3 / 8.7e-3    96.6 / 98.5 %    99.81 / 99.98 %   yes
fp16 (emulated)   3.0e-3 / 5.9e-3    97.8 / 97.8 %    99.85 / 99.69 %   yes
bf16 (autocast)   2.2e-2 / 4.4e-2    78.3 / 83.5 %    98.56 / 99.34 %   no
================  =================  ===============  ================  ========

No non-finite CAM in any precision. Decision: ``cam_precision='auto'`` with
``SAFE_CAM_AUTOCAST_DTYPES = {float16}``: CPM's CAM forwards follow ``--amp``'s fp16
autocast and run in fp32 under a bf16 autocast.
"""
from __future__ import annotations

import argparse
import contextlib
import copy
import json
import os.path as osp
import random
import sys
import time
import warnings
from collections.abc import Iterator

import numpy as np
import torch
import torch.nn.functional as F
from mmengine.config import DictAction
from mmengine.registry import DefaultScope
from mmengine.runner import Runner
from torch.overrides import TorchFunctionMode

sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))

from s2c.apis import load_config  # noqa: E402
from s2c.apis.cli import cli_entry  # noqa: E402
from s2c.apis.test import build_classifier  # noqa: E402
from s2c.cam.inference import batch_multiscale_cams  # noqa: E402
from s2c.registry import MODELS  # noqa: E402
from s2c.utils.device import resolve_device  # noqa: E402

#: Thresholds of the decision rule: peak sets and label pixels equal to fp32's, in %.
MIN_PEAKS_EQUAL, MIN_LABELS_EQUAL = 95.0, 99.0


def training_batches(cfg, num_crops: int, batch_size: int, seed: int
                     ) -> Iterator[tuple[torch.Tensor, list[dict]]]:
    """``(inputs (B, 3, H, W), data_samples)`` of the config's training dataloader (seeded),
    ``num_crops`` crops in all, over several epochs when the dataset has fewer (the SE maps
    are not loaded: CPM does not use them)."""
    loader_cfg = copy.deepcopy(cfg.train_dataloader.to_dict())
    loader_cfg.update(batch_size=batch_size, num_workers=0, persistent_workers=False)
    loader_cfg['dataset']['se_map_dir'] = None
    random.seed(seed)  # the augmentation runs in this process (num_workers=0)
    np.random.seed(seed)
    torch.manual_seed(seed)
    with DefaultScope.overwrite_default_scope('s2c'):
        loader = Runner.build_dataloader(loader_cfg, seed=seed)
    done = 0
    while True:  # as many epochs as needed (new augmentations each epoch)
        for data in loader:
            inputs = torch.stack(list(data['inputs']))[:num_crops - done]
            done += len(inputs)
            yield inputs, data['data_samples'][:len(inputs)]
            if done >= num_crops:
                return


@contextlib.contextmanager
def cuda_tf32(enabled: bool) -> Iterator[None]:
    """TF32 for CUDA convolutions and matmuls on/off inside the block."""
    old = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = enabled
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = old


class Fp16ConvEmulation(TorchFunctionMode):
    """fp16 autocast of the convolutions, emulated with fp32 kernels (see the module
    docstring): inputs, weights and bias rounded to fp16, fp32 accumulation, fp16 output."""

    def __torch_function__(self, func, types, args=(), kwargs=None):  # noqa: D105
        kwargs = kwargs or {}
        if func in (F.conv2d, torch.conv2d):
            x, w, *rest = args
            bias = rest[0] if rest else kwargs.pop('bias', None)
            rest = rest[1:]
            def r(t): return t.half().float()  # noqa: E704
            return func(r(x), r(w), None if bias is None else r(bias), *rest, **kwargs).half()
        return func(*args, **kwargs)


class CamRunner:
    """Multi-scale CAMs of a batch in one precision (``'fp32'``, ``'tf32'``, ``'fp16'``,
    ``'bf16'``), as CPM computes them (eval mode, no gradients), with the time and
    the count of non-finite fallbacks."""

    def __init__(self, model: torch.nn.Module, scales: tuple[float, ...], device: torch.device,
                 emulate_fp16: bool) -> None:
        self.model, self.scales, self.device = model, scales, device
        self.emulate_fp16 = emulate_fp16
        self.seconds: dict[str, float] = {}
        self.fallbacks: dict[str, int] = {}

    def __call__(self, precision: str, inputs: torch.Tensor, labels: torch.Tensor,
                 emulate: bool | None = None) -> torch.Tensor:
        """``(B, C, H, W)`` float32 normalised CAMs in [0, 1)."""
        cuda = self.device.type == 'cuda'
        emulate = self.emulate_fp16 if emulate is None else emulate
        emulated = precision == 'fp16' and emulate
        start = time.perf_counter()
        with warnings.catch_warnings(record=True) as caught, \
                cuda_tf32(precision == 'tf32') if cuda else contextlib.nullcontext():
            warnings.simplefilter('always', RuntimeWarning)
            if emulated:
                with Fp16ConvEmulation():
                    cams = batch_multiscale_cams(self.model, inputs, labels, self.scales,
                                                 precision='fp32')
            else:
                mode = {'tf32': 'fp32', 'fp16 autocast': 'fp16'}.get(precision, precision)
                cams = batch_multiscale_cams(self.model, inputs, labels, self.scales,
                                             precision=mode)
        if cuda:
            torch.cuda.synchronize()
        self.seconds[precision] = self.seconds.get(precision, 0.0) + time.perf_counter() - start
        self.fallbacks[precision] = self.fallbacks.get(precision, 0) + sum(
            'non-finite' in str(w.message) for w in caught) + int(
            emulated and not bool(torch.isfinite(cams).all()))
        return cams

    def label(self, precision: str) -> str:
        """Row name (``fp16 (emulated)`` on CPU by default)."""
        return precision + (' (emulated)' if precision == 'fp16' and self.emulate_fp16 else '')


def refine_with_peaks(cpm, cams: torch.Tensor, labels: torch.Tensor, samples: list[dict]
                      ) -> tuple[dict[tuple[int, int], list], torch.Tensor]:
    """CPM's labels of ``cams`` and the peaks it prompted, per ``(image, class)``."""
    seen = []
    original = cpm.prompt_peaks

    def spy(c: torch.Tensor, lab: torch.Tensor):
        out = original(c, lab)
        seen.append(out)
        return out

    cpm.prompt_peaks = spy
    try:
        targets = cpm.refine(cams, labels, samples)
    finally:
        del cpm.prompt_peaks  # the class's method again
    img, cls, peaks = seen[0]
    return {(i, c): p.tolist() for i, c, p in zip(img, cls, peaks)}, targets


def study(cfg, checkpoint: str, precisions: list[str], num_crops: int, batch_size: int,
          seed: int, device: torch.device, emulate_fp16: bool, fp16_check: bool = True
          ) -> dict[str, dict]:
    """The table's rows for one checkpoint: precision -> measures (see the module docstring).

    ``fp16_check``: with emulated fp16, also run the first batch with real fp16 autocast.
    """
    model = build_classifier(cfg, checkpoint, device=device)
    cpm_cfg = dict(cfg.model.cpm)
    cpm = MODELS.build(cpm_cfg)
    runner = CamRunner(model, cpm.scales, device, emulate_fp16)
    check = None  # emulated vs real fp16 autocast on the first batch
    stats = {p: dict(max_diff=0.0, peak_sets=0, peak_equal=0, pixels=0, pixel_equal=0)
             for p in precisions}
    crops = 0
    for inputs, samples in training_batches(cfg, num_crops, batch_size, seed):
        inputs = inputs.to(device)
        labels = torch.stack([s['gt_label'] for s in samples]).to(device).float()
        valid = torch.stack([s['valid'] for s in samples]).to(device)
        ref_cams = runner('fp32', inputs, labels)
        ref_peaks, ref_labels = refine_with_peaks(cpm, ref_cams, labels, samples)
        present = {(i, c) for i, c in torch.nonzero(labels > 0.5).tolist()}
        if emulate_fp16 and fp16_check and 'fp16' in precisions and check is None:
            real = runner('fp16 autocast', inputs, labels, emulate=False)
            emul = runner('fp16', inputs, labels)
            peaks, targets = refine_with_peaks(cpm, real, labels, samples)
            present = {(i, c) for i, c in torch.nonzero(labels > 0.5).tolist()}
            check = dict(max_cam_diff=(real - emul).abs().max().item(),
                         max_cam_diff_vs_fp32=(real - ref_cams).abs().max().item(),
                         peak_sets_equal=100.0 * sum(peaks.get(k) == ref_peaks.get(k)
                                                     for k in present) / len(present),
                         label_pixels_equal=100.0 * int(((targets == ref_labels) & valid).sum())
                         / int(valid.sum()), crops=len(inputs),
                         seconds_autocast=runner.seconds.pop('fp16 autocast'),
                         seconds_emulated=runner.seconds.pop('fp16'))
            runner.fallbacks.pop('fp16 autocast', None)
            runner.fallbacks.pop('fp16', None)
        for p in precisions:
            cams = runner(p, inputs, labels)
            peaks, targets = refine_with_peaks(cpm, cams, labels, samples)
            s = stats[p]
            s['max_diff'] = max(s['max_diff'], (cams - ref_cams).abs().max().item())
            s['peak_sets'] += len(present)
            s['peak_equal'] += sum(peaks.get(k) == ref_peaks.get(k) for k in present)
            s['pixels'] += int(valid.sum())
            s['pixel_equal'] += int(((targets == ref_labels) & valid).sum())
        crops += len(inputs)
    batches = -(-crops // batch_size)
    rows = {}
    for p, s in stats.items():
        rows[runner.label(p)] = dict(
            max_cam_diff=s['max_diff'], peak_sets_equal=100.0 * s['peak_equal'] / s['peak_sets'],
            label_pixels_equal=100.0 * s['pixel_equal'] / s['pixels'],
            cam_seconds_per_batch=runner.seconds[p] / batches, fallbacks=runner.fallbacks[p],
            crops=crops, peak_sets=s['peak_sets'])
    rows['fp32 (reference)'] = dict(cam_seconds_per_batch=runner.seconds['fp32'] / batches)
    if check is not None:
        rows['fp16 emulation check'] = check
    return rows


def decide(results: dict[str, dict[str, dict]]) -> tuple[str, list[str]]:
    """The ``cam_precision`` default the measurement supports, and the precisions that pass
    the rule for every checkpoint (``'auto'``: follow autocast for the passing autocast
    dtypes, fp32 otherwise; ``'fp32'`` when none passes)."""
    names = {n for rows in results.values() for n in rows
             if 'peak_sets_equal' in rows[n] and n != 'fp16 emulation check'}
    passing = sorted(n for n in names if all(
        rows[n]['peak_sets_equal'] >= MIN_PEAKS_EQUAL
        and rows[n]['label_pixels_equal'] >= MIN_LABELS_EQUAL for rows in results.values()))
    passing = [n.split(' ')[0] for n in passing]
    return ('auto' if {'fp16', 'bf16'} & set(passing) else 'fp32'), passing


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line arguments (see the module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('config', help='S2C config (model, CPM block, training dataloader)')
    parser.add_argument('checkpoints', nargs='+', help='trained classifier checkpoints')
    parser.add_argument('--num-crops', type=int, default=256)
    parser.add_argument('--batch-size', type=int, default=8)
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--device', default='auto', help="'auto', 'cpu' or 'cuda'")
    parser.add_argument('--precisions', nargs='+', default=None,
                        help='reduced precisions (default: fp16 bf16, plus tf32 on CUDA)')
    parser.add_argument('--fp16', choices=('auto', 'autocast', 'emulate'), default='auto',
                        help='fp16 by autocast or emulated (auto: emulated on CPU)')
    parser.add_argument('--fp16-check', action=argparse.BooleanOptionalAction, default=True,
                        help='with emulated fp16, compare the first batch with real autocast')
    parser.add_argument('--data-root', help='dataset root (default: the config\'s)')
    parser.add_argument('--out', help='write the results as JSON here')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction, default={})
    return parser.parse_args(argv)


@cli_entry
def main(argv: list[str] | None = None) -> int:
    """Run the study, print the table and the decision."""
    args = parse_args(argv)
    cfg = load_config(args.config, cfg_options=args.cfg_options, data_root=args.data_root)
    if 'cpm' not in cfg.model:
        raise ValueError(f'{args.config} has no model.cpm block')
    device = torch.device(resolve_device(args.device))
    precisions = args.precisions or (['tf32'] if device.type == 'cuda' else []) + ['fp16', 'bf16']
    emulate = args.fp16 == 'emulate' or (args.fp16 == 'auto' and device.type == 'cpu')
    with torch.no_grad():
        results = {ckpt: study(cfg, ckpt, precisions, args.num_crops, args.batch_size,
                               args.seed, device, emulate, args.fp16_check)
                   for ckpt in args.checkpoints}
    choice, passing = decide(results)
    print(f'\nCPM multi-scale CAM precision vs fp32 ({device.type}; rule: peak sets >= '
          f'{MIN_PEAKS_EQUAL:g} % and label pixels >= {MIN_LABELS_EQUAL:g} % unchanged)')
    print(f'{"checkpoint":36s} {"precision":12s} {"max |dCAM|":>11s} {"peaks = %":>10s} '
          f'{"labels = %":>11s} {"s/batch":>8s} {"fallbacks":>9s}')
    for ckpt, rows in results.items():
        for name, r in rows.items():
            if name == 'fp16 emulation check':
                print(f'{ckpt[-36:]:36s} {"fp16 autocast":12s} {r["max_cam_diff_vs_fp32"]:11.2e} '
                      f'{r["peak_sets_equal"]:10.2f} {r["label_pixels_equal"]:11.3f} '
                      f'{r["seconds_autocast"]:8.3f}    (real CPU autocast, first '
                      f'{r["crops"]} crops only; vs emulated: max |dCAM| '
                      f'{r["max_cam_diff"]:.2e})')
                continue
            if 'peak_sets_equal' not in r:
                print(f'{ckpt[-36:]:36s} {name:12s} {"":11s} {"":10s} {"":11s} '
                      f'{r["cam_seconds_per_batch"]:8.3f}')
                continue
            print(f'{ckpt[-36:]:36s} {name:12s} {r["max_cam_diff"]:11.2e} '
                  f'{r["peak_sets_equal"]:10.2f} {r["label_pixels_equal"]:11.3f} '
                  f'{r["cam_seconds_per_batch"]:8.3f} {r["fallbacks"]:9d}')
    crops = next(iter(next(iter(results.values())).values())).get('crops')
    print(f'({crops} training crops per checkpoint; passing: {passing or "none"})')
    safe = sorted({'fp16', 'bf16'} & set(passing))
    print(f"decision: cam_precision='{choice}'" + (
        f' with SAFE_CAM_AUTOCAST_DTYPES = {safe}: CPM\'s CAM forwards follow --amp\'s autocast '
        'in these dtypes and run in fp32 (TF32 convolutions on CUDA) under any other'
        if choice == 'auto' else ' - CPM\'s CAM forwards run in fp32 (TF32 convolutions on '
        'CUDA) even under --amp'))
    if args.out:
        with open(args.out, 'w') as f:
            json.dump(dict(results=results, decision=choice, passing=passing,
                           device=device.type), f, indent=2)
    return 0


if __name__ == '__main__':
    sys.exit(main())
