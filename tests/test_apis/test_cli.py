"""Every tool reports user errors as one line on stderr with exit status 2 (--debug: the
traceback); bugs still raise."""
from __future__ import annotations

import os.path as osp

import pytest

from s2c.apis.cli import cli_entry, one_line

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


def test_cli_entry_one_line_exit_2_and_debug(capsys):
    @cli_entry
    def main(argv):
        if argv == ['bug']:
            raise ZeroDivisionError('a bug')
        raise FileNotFoundError('SE maps x not found. Build them first:\n    python tools/a.py')

    assert main([]) == 2
    err = capsys.readouterr().err
    assert err == ('error: SE maps x not found. Build them first: python tools/a.py '
                   '(--debug shows the traceback)\n')
    with pytest.raises(FileNotFoundError):
        main(['--debug'])
    with pytest.raises(ZeroDivisionError):
        main(['bug'])
    assert one_line(KeyError('unknown provider')) == 'unknown provider'


@pytest.mark.parametrize('tool,args', [
    ('train', ['configs/none.py']),
    ('train_seg', ['configs/none.py']),
    ('cache_se_maps', ['configs/none.py']),
    ('make_pseudo_labels', ['configs/none.py', '--cams', 'x', '--out', 'y', '--method',
                            'threshold', '--bg-threshold', '0.5']),
    ('analysis_tools/compare_cpm_presets', ['configs/none.py', '--data-root', 'data/none']),
])
def test_tools_report_a_missing_config_in_one_line(tool, args, run_tool):
    code, _, err = run_tool(tool, *args)
    errors = [line for line in err.splitlines() if line.startswith('error:')]
    assert code == 2 and len(errors) == 1 and 'none.py' in errors[0]
    assert 'Traceback' not in err
