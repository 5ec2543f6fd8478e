"""tools/analysis_tools/study_cam_precision.py end to end on the test demo data (a random
classifier, a few crops), its decision rule and its fp16 convolution emulation."""
from __future__ import annotations

import importlib.util
import json
import os.path as osp

import torch
import torch.nn.functional as F

from s2c.registry import MODELS

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


def _tool():
    path = osp.join(REPO, 'tools/analysis_tools/study_cam_precision.py')
    spec = importlib.util.spec_from_file_location('study_cam_precision', path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_study_runs_and_decides(demo_caches, run_tool, tmp_path):
    cfg = demo_caches.copy()
    cfg_path, ckpt, out = tmp_path / 'cfg.py', tmp_path / 'model.pth', tmp_path / 'r.json'
    cfg.dump(str(cfg_path))
    torch.manual_seed(0)
    model = MODELS.build(dict(cfg.model, ssc=None, cpm=None))
    model.init_weights()
    torch.save(dict(state_dict=model.state_dict()), ckpt)
    code, stdout, _ = run_tool('analysis_tools/study_cam_precision', cfg_path, ckpt,
                               '--num-crops', 2, '--batch-size', 1, '--device', 'cpu',
                               '--precisions', 'fp16', 'bf16', '--no-fp16-check', '--out', out)
    assert code == 0 and 'decision: cam_precision=' in stdout, stdout
    assert torch.is_grad_enabled()  # the tool leaves the process as it found it
    result = json.loads(out.read_text())
    rows = result['results'][str(ckpt)]
    assert {'fp16 (emulated)', 'bf16'} <= rows.keys() and 'fp16 emulation check' not in rows
    assert rows['bf16']['crops'] == 2 and 0 <= rows['bf16']['label_pixels_equal'] <= 100
    assert result['decision'] in ('auto', 'fp32')


def test_decision_rule():
    decide = _tool().decide
    row = dict(peak_sets_equal=96.0, label_pixels_equal=99.5)
    bad = dict(peak_sets_equal=96.0, label_pixels_equal=98.9)
    assert decide({'a': {'fp16 (emulated)': row, 'bf16': bad}}) == ('auto', ['fp16'])
    assert decide({'a': {'fp16': row}, 'b': {'fp16': bad}}) == ('fp32', [])


def test_fp16_conv_emulation_rounds_like_fp16():
    tool = _tool()
    g = torch.Generator().manual_seed(0)
    x, w = torch.randn(1, 3, 8, 8, generator=g), torch.randn(4, 3, 3, 3, generator=g)
    with tool.Fp16ConvEmulation():
        y = F.conv2d(x, w, padding=1)
    assert y.dtype == torch.float16
    want = F.conv2d(x.half().float(), w.half().float(), padding=1).half()
    assert torch.equal(y, want) and not torch.equal(y.float(), F.conv2d(x, w, padding=1))
