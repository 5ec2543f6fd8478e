import os

import pytest
import torch

from s2c.utils import threads
from s2c.utils.threads import THREADS_ENV, default_num_threads, set_num_threads


@pytest.fixture
def restore_threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


@pytest.mark.parametrize('cores,procs,workers,expected', [
    (16, 1, 0, 16), (16, 1, 4, 12), (16, 2, 2, 6), (16, 8, 2, 1), (2, 1, 2, 1), (2, 2, 0, 1)])
def test_default_divides_cores(monkeypatch, cores, procs, workers, expected):
    monkeypatch.setattr(threads, 'available_cores', lambda: cores)
    assert default_num_threads(workers, processes=procs) == expected
    monkeypatch.setenv('LOCAL_WORLD_SIZE', str(procs))
    assert default_num_threads(workers) == expected


def test_available_cores_is_the_affinity_set():
    if hasattr(os, 'sched_getaffinity'):
        assert threads.available_cores() == len(os.sched_getaffinity(0))


def test_order_explicit_env_default(monkeypatch, restore_threads):
    monkeypatch.setattr(threads, 'available_cores', lambda: 3)
    monkeypatch.delenv('LOCAL_WORLD_SIZE', raising=False)
    monkeypatch.delenv(THREADS_ENV, raising=False)
    assert set_num_threads() == 3 and torch.get_num_threads() == 3
    assert set_num_threads(num_workers=1) == 2 and torch.get_num_threads() == 2
    monkeypatch.setenv(THREADS_ENV, '1')
    assert set_num_threads() == 1 and torch.get_num_threads() == 1
    assert set_num_threads(2) == 2 and torch.get_num_threads() == 2  # explicit beats the env


@pytest.mark.parametrize('bad', ['0', 'four', '-1'])
def test_bad_values_are_clear_errors(monkeypatch, restore_threads, bad):
    monkeypatch.setenv(THREADS_ENV, bad)
    with pytest.raises(ValueError, match=THREADS_ENV if bad != '0' else '>= 1'):
        set_num_threads()


def test_resolve_without_setting(monkeypatch, restore_threads):
    from s2c.utils.threads import resolve_num_threads
    monkeypatch.setattr(threads, 'available_cores', lambda: 4)
    monkeypatch.delenv('LOCAL_WORLD_SIZE', raising=False)
    monkeypatch.delenv(THREADS_ENV, raising=False)
    torch.set_num_threads(1)
    assert resolve_num_threads(processes=2) == 2 and resolve_num_threads() == 4
    monkeypatch.setenv(THREADS_ENV, '3')
    assert resolve_num_threads(processes=2) == 3 and resolve_num_threads(1) == 1
    assert torch.get_num_threads() == 1  # nothing was set
