"""Shared fixtures: the real VOC samples (skipped when absent) and the demo dataset."""
import os
import os.path as osp

import pytest

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
VOC_SAMPLES = os.environ.get(
    'S2C_VOC_SAMPLES', osp.join(osp.dirname(REPO), 'shared', 'data', 'voc12_samples',
                                'VOCdevkit', 'VOC2012'))


@pytest.fixture(scope='session')
def voc_samples_root():
    """``VOCdevkit/VOC2012`` of the 14 shared real VOC images (read-only)."""
    if not osp.isdir(osp.join(VOC_SAMPLES, 'JPEGImages')):
        pytest.skip(f'shared VOC samples not found at {VOC_SAMPLES}')
    return VOC_SAMPLES


@pytest.fixture(scope='session')
def voc_samples_labels(voc_samples_root, tmp_path_factory):
    """cls_labels.npy for the shared samples, written by the converter into a temp dir."""
    from s2c.datasets.converters.voc12 import convert_voc12
    out = tmp_path_factory.mktemp('voc_labels')
    convert_voc12(voc_samples_root, out=str(out))
    return str(out / 'cls_labels.npy')


@pytest.fixture(scope='session')
def demo_root(tmp_path_factory):
    """A small demo dataset (VOC layout)."""
    from s2c.datasets.demo import make_demo_dataset
    out = tmp_path_factory.mktemp('demo')
    make_demo_dataset(str(out), seed=0, num_train=16, num_val=4, size=(96, 96))
    return str(out)


@pytest.fixture
def run_tool(capsys):
    """Run ``tools/<path>.py``'s ``main(argv)`` in this process (as ``python tools/...``).

    Returns a function ``run(path, *argv) -> (exit status, stdout, stderr)``; ``path`` is
    relative to ``tools/`` without ``.py`` (e.g. ``'analysis_tools/eval_seg'``).
    """
    import importlib.util

    def run(path: str, *argv: str) -> tuple[int, str, str]:
        file = osp.join(REPO, 'tools', path + '.py')
        spec = importlib.util.spec_from_file_location('tool_' + path.replace('/', '_'), file)
        tool = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(tool)
        capsys.readouterr()
        try:
            code = tool.main([str(a) for a in argv])
        except SystemExit as e:
            code = e.code
        out = capsys.readouterr()
        return int(code or 0), out.out, out.err

    return run
