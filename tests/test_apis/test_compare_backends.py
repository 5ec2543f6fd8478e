"""tools/compare_backends.py on the real VOC samples with tiny random back-ends."""
import json
import os.path as osp

import pytest

import s2c.apis.compare as compare_mod
from s2c.apis import load_config
from s2c.apis.compare import run_comparison
from s2c.caches import MissingCacheError, run_embedding_job, run_se_map_job
from s2c.cam import write_gt_standin_cams
from s2c.datasets import dataset_paths

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
S2C_VOC = osp.join(REPO, 'configs/s2c/s2c_resnet38d_1xb8-40e_voc12aug-256x256.py')
BACKENDS = ['sam', 'hq_sam', 'robust_sam', 'robust_sam_clear', 'persam', 'persam_f']


def _tiny(tmp, labels):
    return {'sam.model_type': 'tiny', 'sam.checkpoint': None, 'sam.device': 'cpu',
            'sam_embeddings.early_features': True,
            'se_maps.provider.points_per_side': 4, 'se_maps.provider.pred_iou_thresh': 0.0,
            'se_maps.provider.stability_score_thresh': 0.0,
            'se_maps.provider.box_nms_thresh': 1.0, 'model.cpm.backend.model_type': 'tiny',
            'model.cpm.backend.checkpoint': None, 'model.cpm.backend.fit_steps': 50,
            'train_dataloader.dataset.se_map_dir': str(tmp / 'se'),
            'model.cpm.embedding_dir': str(tmp / 'emb'),
            'train_dataloader.dataset.cls_labels': labels}


@pytest.fixture(scope='module')
def setup(voc_samples_root, voc_samples_labels, tmp_path_factory):
    tmp = tmp_path_factory.mktemp('compare')
    options = _tiny(tmp, voc_samples_labels)
    options.pop('model.cpm.backend.fit_steps')   # the sam back-end takes no fit_steps
    cfg = load_config(S2C_VOC, cfg_options=options, data_root=voc_samples_root)
    assert run_embedding_job(cfg, split='val', progress=False, num_workers=0).ok
    assert run_se_map_job(cfg, split='val', progress=False, num_workers=0).ok
    paths = dataset_paths(cfg.train_dataloader.dataset, split='val')
    assert write_gt_standin_cams(paths.seg_dir, paths.names(), str(tmp / 'cams'),
                                 progress=False).ok
    return cfg, options, tmp, paths


@pytest.mark.slow
def test_every_row_scored_like_eval_seg_and_resumed(setup, tmp_path, run_tool, monkeypatch):
    cfg, options, tmp, paths = setup
    calls = []
    real = compare_mod.make_pseudo_labels
    monkeypatch.setattr(compare_mod, 'make_pseudo_labels',
                        lambda *a, **k: calls.append(a[1]) or real(*a, **k))
    out = tmp_path / 'out'
    kw = dict(split='val', bg_threshold=0.3, cfg_options=options, device='cpu', progress=False)
    rows = run_comparison(cfg, str(tmp / 'cams'), str(out), backends=BACKENDS,
                          degradations=['haze:2'], **kw)
    labels = [(r.label, r.degradation) for r in rows]
    want = [(m, None) for m in ('threshold', 'crf', 'se_merge')] + [
        (f'{b} / {p}', d) for d in (None, 'haze:2') for b, p in zip(BACKENDS, [
            'index2', 'hq_official', 'robust', 'index2', 'persam', 'persam_f'])]
    assert labels == want
    for name in ('results.md', 'results.csv', 'miou_time.png', 'miou_vs_degradation.png'):
        assert (out / name).stat().st_size > 0
    for row in rows:   # the table's mIoU is eval_seg's on the row's folder
        code, _, _ = run_tool('analysis_tools/eval_seg', row.labels_dir, '--gt', paths.seg_dir,
                              '--split', paths.split_file, '--json', tmp_path / 'ev.json')
        assert code == 0
        miou = json.load(open(tmp_path / 'ev.json'))['miou']   # eval_seg: in [0, 1]
        assert 100 * miou == pytest.approx(row.miou, abs=1e-6)
        assert row.images == 4 and row.failed == 0
    assert all(r.decode_s > 0 for r in rows if r.kind == 'backend')
    assert len(calls) == len(rows)
    # a rerun reuses every finished row
    calls.clear()
    again = run_comparison(cfg, str(tmp / 'cams'), str(out), backends=BACKENDS,
                           degradations=['haze:2'], **kw)
    assert not calls and [r.miou for r in again] == [r.miou for r in rows]
    # an interrupted row (record gone, half of its labels written) is the only one redone
    victim = rows[4]
    (out / 'rows' / (osp.basename(victim.labels_dir) + '.json')).unlink()
    for png in sorted(osp.join(victim.labels_dir, f) for f in
                      __import__('os').listdir(victim.labels_dir) if f.endswith('.png'))[:2]:
        __import__('os').remove(png)
    calls.clear()
    run_comparison(cfg, str(tmp / 'cams'), str(out), backends=BACKENDS,
                   degradations=['haze:2'], **kw)
    assert calls == [victim.labels_dir]


@pytest.mark.slow
def test_a_changed_backend_config_redoes_only_its_row(setup, tmp_path, monkeypatch):
    cfg, options, tmp, paths = setup
    configs = {}
    for prior in ('add', 'replace'):
        path = tmp_path / f'persam_{prior}.py'
        path.write_text(f"_base_ = ['{S2C_VOC}']\nmodel = dict(cpm=dict(backend=dict("
                        f"_delete_=True, type='persam', model_type='vit_h', checkpoint=None, "
                        f"location_prior='{prior}'), selection='persam'))\n")
        configs[prior] = str(path)
    calls = []
    real = compare_mod.make_pseudo_labels
    monkeypatch.setattr(compare_mod, 'make_pseudo_labels',
                        lambda *a, **k: calls.append(a[1]) or real(*a, **k))
    opts = {k: v for k, v in options.items()}
    kw = dict(split='val', references=['threshold'], bg_threshold=0.3, cfg_options=opts,
              device='cpu', progress=False)
    out = str(tmp_path / 'out')
    first = run_comparison(cfg, str(tmp / 'cams'), out,
                           backends=['sam', f'persam={configs["add"]}'], **kw)
    calls.clear()
    second = run_comparison(cfg, str(tmp / 'cams'), out,
                            backends=['sam', f'persam={configs["replace"]}'], **kw)
    assert calls == [first[2].labels_dir]          # only the PerSAM row
    assert second[1].miou == first[1].miou


def test_missing_cache_names_the_command(setup, tmp_path):
    cfg, options, tmp, paths = setup
    opts = dict(options, **{'model.cpm.embedding_dir': str(tmp_path / 'none')})
    bad = load_config(S2C_VOC, cfg_options=opts, data_root=osp.dirname(paths.seg_dir))
    with pytest.raises(MissingCacheError, match='tools/cache_sam_embeddings.py'):
        run_comparison(bad, str(tmp / 'cams'), str(tmp_path / 'o'), backends=['sam'],
                       split='val', references=[], progress=False)
    with pytest.raises(ValueError, match='checkpoint'):
        run_comparison(cfg, str(tmp / 'cams'), str(tmp_path / 'o'), degrade_cams=True,
                       split='val', references=[], progress=False)


def test_training_rows_from_work_dirs(tmp_path):
    """--from-work-dirs: tools/test.py's cam_eval.json first, else the last validation
    cam/mIoU of MMEngine's scalars.json."""
    from s2c.apis.compare import _training_row
    a = tmp_path / 'run_hq'
    (a / 'cams_train').mkdir(parents=True)
    (a / 'cams_train' / 'cam_eval.json').write_text(json.dumps(
        dict(miou=61.5, mprecision=70.0, mrecall=80.0, scored=1464, bg_threshold=0.3)))
    row = _training_row(str(a))
    assert (row.label, row.kind, row.miou, row.images) == ('training: run_hq', 'training',
                                                           61.5, 1464)
    b = tmp_path / 'run_sam' / '20261129_120000' / 'vis_data'
    b.mkdir(parents=True)
    (b / 'scalars.json').write_text('\n'.join(json.dumps(d) for d in (
        {'loss': 1.0, 'step': 1}, {'cam/mIoU': 40.0, 'step': 5}, {'cam/mIoU': 45.5, 'step': 10})))
    assert _training_row(str(tmp_path / 'run_sam')).miou == 45.5
    with pytest.raises(FileNotFoundError, match='cam_eval.json'):
        _training_row(str(tmp_path / 'nothing'))
