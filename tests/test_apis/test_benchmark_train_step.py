"""tools/analysis_tools/benchmark_train_step.py: one row in this process on synthetic batches
(fast), and the whole tool on a small demo dataset made in a temporary folder (CI has no
data/demo): real batches, caches built by ``--build-caches``, each row in its own process."""
import json
import os
import os.path as osp
import sys

import pytest
import torch

from s2c.caches import write_synthetic_embedding_cache

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
S2C_DEMO = osp.join(REPO, 'configs/demo/s2c_resnet38d-w0.125_1xb8-12e_demo-128x128.py')
SECTIONS = ('data', 'train', 'cams', 'peaks', 'encode', 'cache_read', 'decode', 'compose')
APPLICABLE = {'classifier': {'data', 'train'},
              'cpm_cached': {'data', 'train', 'cams', 'peaks', 'cache_read', 'decode', 'compose'}}
CPM_FUNCTIONS = ('batch_multiscale_cams', 'peak_prompts', 'compose_cpm_labels')
SMALL = ['train_dataloader.batch_size=2', 'train_dataloader.num_workers=0',
         'train_dataloader.persistent_workers=False', 'model.backbone.width=0.0625',
         'model.feat_dim=16']


@pytest.mark.parametrize('precision,autocast', [('fp32', None), ('bf16', 'bfloat16')])
def test_one_cached_cpm_row_in_process_times_every_section(tmp_path, run_tool, monkeypatch,
                                                           precision, autocast):
    """The child entry (``--row``) on synthetic batches: every CPM name is found and timed;
    on CPU the reduced-precision row runs the forward under bf16 autocast."""
    for name, module in list(sys.modules.items()):  # undo the tool's wrapping afterwards
        for fn in CPM_FUNCTIONS:
            if name.startswith('s2c.models') and hasattr(module, fn):
                monkeypatch.setattr(module, fn, getattr(module, fn))
    threads = torch.get_num_threads()
    emb = tmp_path / 'emb'
    write_synthetic_embedding_cache(str(emb), ['bench_000', 'bench_001'], 'tiny', (375, 500))
    result_file = tmp_path / 'row.json'
    code, _, err = run_tool(
        'analysis_tools/benchmark_train_step', S2C_DEMO, '--synthetic', '--device', 'cpu',
        '--iters', 2, '--warmup', 0, '--threads', 1, '--row', 'cpm_cached', '--precision',
        precision, '--result-file', result_file, '--embedding-dir', emb, '--cfg-options', *SMALL)
    torch.set_num_threads(threads)  # the row set 1 in this process
    assert code == 0, err
    r = json.loads(result_file.read_text())
    assert r['pid'] == os.getpid() and r['unwrapped'] == [] and r['cpm_active']
    assert r['autocast_dtype'] == autocast and len(r['times']) == 2
    assert r['sections']['data'] is None and r['sections']['encode'] is None  # synthetic, cached
    for section in ('train', 'cams', 'peaks', 'cache_read', 'decode', 'compose'):
        assert r['sections'][section]['seconds'] > 0, section


@pytest.mark.slow
def test_classifier_and_cached_cpm_rows(demo_root, tmp_path, run_tool):
    out = tmp_path / 'out'
    code, stdout, err = run_tool(
        'analysis_tools/benchmark_train_step', S2C_DEMO, '--data-root', demo_root,
        '--rows', 'classifier,cpm_cached', '--iters', 1, '--warmup', 0, '--threads', 1,
        '--device', 'cpu', '--build-caches', '--out-dir', out, '--cfg-options', *SMALL,
        f'train_dataloader.dataset.se_map_dir={tmp_path / "se"}',
        f'model.cpm.embedding_dir={tmp_path / "emb"}')
    assert code == 0, err
    assert '| row | precision | data | train |' in stdout
    assert 'SAM share (decode + cache read)' in stdout
    assert (out / 'benchmark_train_step.md').read_text() in stdout
    report = json.loads((out / 'benchmark_train_step.json').read_text())
    rows = {r['row']: r for r in report['rows']}
    assert list(rows) == ['classifier', 'cpm_cached']
    # each row in a fresh subprocess
    pids = {r['pid'] for r in rows.values()}
    assert report['parent_pid'] == os.getpid() and os.getpid() not in pids and len(pids) == 2
    for name, r in rows.items():
        assert set(r['sections']) == set(SECTIONS), name
        assert r['unwrapped'] == [] and r['losses_finite'], name
        assert r['mean'] > 0 and r['images_per_s'] > 0 and r['peak_mem_bytes'] > 0, name
        assert r['batch_size'] == 2 and r['crop'] == [128, 128] and r['torch_threads'] == 1
        for section in SECTIONS:
            s = r['sections'][section]
            if section in APPLICABLE[name]:
                assert s['seconds'] > 0 and s['calls'] >= 1, (name, section, s)
            else:
                assert s is None, (name, section)
        total = sum(s['seconds'] for s in r['sections'].values() if s)
        assert abs(total + r['other_seconds'] - r['mean']) < 1e-6
    assert rows['cpm_cached']['cpm_active'] and not rows['classifier']['cpm_active']
    assert 'loss_ssc' not in rows['classifier']['losses']
    ratio, = report['ratios']
    assert 0 < ratio['sam_share_percent']['value'] < 100
