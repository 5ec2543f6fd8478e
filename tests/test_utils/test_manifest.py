"""The one manifest helper: claim, resume, refuse, replace; unreadable is always an error."""
from __future__ import annotations

import json
import os.path as osp

import pytest

from s2c.utils.manifest import (
    ManifestMismatchError,
    ManifestUnreadableError,
    claim_folder,
    make_manifest,
    manifest_differences,
    manifest_id,
    read_manifest,
)


def test_claim_resume_refuse_replace(tmp_path):
    folder = str(tmp_path / 'c')
    a = make_manifest('se_maps', 1, dict(p=dict(scale=50.0), n=1), dict(note='x'))
    assert claim_folder(folder, a, entry_suffix='.png') is False      # fresh: written
    assert read_manifest(osp.join(folder, 'manifest.json'))['key'] == dict(p=dict(scale=50.0),
                                                                           n=1)
    b = make_manifest('se_maps', 1, dict(p=dict(scale=50.0), n=1), dict(note='other info'))
    assert claim_folder(folder, b, entry_suffix='.png') is False      # info does not count
    (tmp_path / 'c' / 'e.png').write_bytes(b'x')
    c = make_manifest('se_maps', 1, dict(p=dict(scale=60.0), n=1))
    with pytest.raises(ManifestMismatchError, match=r'key\.p\.scale: folder has 50\.0, this '
                                                    r'run has 60\.0(?s:.*)--overwrite.*--out'):
        claim_folder(folder, c, what='a cache', entry_suffix='.png')
    assert claim_folder(folder, c, entry_suffix='.png', overwrite=True) is True
    assert (tmp_path / 'c' / 'e.png').exists()                         # kept by default
    d = make_manifest('se_maps', 1, dict(p=dict(scale=70.0), n=1))
    assert claim_folder(folder, d, entry_suffix='.png', overwrite=True,
                        delete_on_replace=True) is True
    assert not (tmp_path / 'c' / 'e.png').exists()
    assert manifest_differences(a, b) == [] and manifest_id(a) == manifest_id(b)
    assert manifest_id(a) != manifest_id(c) and len(manifest_id(a)) == 12


def test_unreadable_manifest_and_unknown_entries(tmp_path):
    folder = tmp_path / 'c'
    folder.mkdir()
    (folder / 'x.npz').write_bytes(b'x')
    m = make_manifest('cams', 1, dict(k=1))
    with pytest.raises(ManifestMismatchError, match='unknown origin'):
        claim_folder(str(folder), m, entry_suffix='.npz')
    with pytest.raises(ManifestMismatchError, match='unknown origin'):  # rank 1: at once
        claim_folder(str(folder), m, entry_suffix='.npz', rank=1, timeout_s=60)
    assert claim_folder(str(folder), m, filename='pseudo.json') is False  # no suffix: accepted
    (folder / 'manifest.json').write_text('{"kind": "ca')
    with pytest.raises(ManifestUnreadableError, match=r'manifest\.json is unreadable.*--overwrite'):
        claim_folder(str(folder), m, entry_suffix='.npz')
    assert claim_folder(str(folder), m, entry_suffix='.npz', overwrite=True) is True
    assert json.loads((folder / 'manifest.json').read_text())['kind'] == 'cams'
    (folder / 'pseudo.json').write_text('[1, 2]')
    with pytest.raises(ManifestUnreadableError, match='not a JSON object'):
        claim_folder(str(folder), m, filename='pseudo.json')
