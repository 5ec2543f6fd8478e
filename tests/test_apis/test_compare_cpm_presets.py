"""tools/analysis_tools/compare_cpm_presets.py on the real VOC samples with tiny SAMs."""
import os.path as osp
import re

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
S2C_VOC = osp.join(REPO, 'configs/s2c/s2c_resnet38d_1xb8-40e_voc12aug-256x256.py')

TINY = ['sam.model_type=tiny', 'sam.checkpoint=None', 'sam.device=cpu',
        'model.cpm.backend.model_type=tiny', 'model.cpm.backend.checkpoint=None']


def test_every_official_cpm_option_is_compared(voc_samples_root, voc_samples_labels, tmp_path,
                                               run_tool):
    code, out, _ = run_tool(
        'analysis_tools/compare_cpm_presets', S2C_VOC,
        '--data-root', voc_samples_root, '--cls-labels', voc_samples_labels,
        '--ann-file', 'ImageSets/Segmentation/train.txt', '--batches', 2, '--batch-size', 2,
        '--work-dir', tmp_path, '--cfg-options', *TINY)
    assert code == 0
    rows = dict(re.findall(r'^(\S.*?)\s{2,}(\d+\.\d\d) \+-', out, re.M))
    assert set(rows) == {'peak_rule=official', 'mask_chain=sam_postprocess',
                         'ignore_padding=False', 'embedding_source=online', 'all official',
                         'all official vs embedding_source=online'}
    values = {k: float(v) for k, v in rows.items()}
    assert all(0 <= v <= 100 for v in values.values())
    # the samples are 513 x 513: rescaled to a long side >= 256, no 256 crop is padded
    assert values['ignore_padding=False'] == 0.0
    # a random encoder sees the crop instead of the whole image: the masks change
    assert values['embedding_source=online'] > 1.0
