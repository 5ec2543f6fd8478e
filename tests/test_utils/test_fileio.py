"""Atomic writes: a failed write leaves nothing; a full disk is said in those words."""
from __future__ import annotations

import errno
import os

import pytest

from s2c.utils.fileio import atomic_write


def test_enospc_is_named_with_the_folder_and_nothing_is_left(tmp_path):
    target = tmp_path / 'out' / 'entry.npy'
    with pytest.raises(OSError, match=r'no space left on device in .*out \(.* free\) while '
                                      r'writing entry\.npy: nothing partial was kept') as info:
        with atomic_write(str(target)) as tmp:
            with open(tmp, 'wb') as f:
                f.write(b'half')
            raise OSError(errno.ENOSPC, 'No space left on device')
    assert info.value.errno == errno.ENOSPC
    assert os.listdir(tmp_path / 'out') == []  # neither the entry nor its temporary file
    target.write_bytes(b'old')
    with pytest.raises(ValueError):
        with atomic_write(str(target)) as tmp:
            open(tmp, 'wb').write(b'new')
            raise ValueError('other errors pass through unchanged')
    assert target.read_bytes() == b'old'
