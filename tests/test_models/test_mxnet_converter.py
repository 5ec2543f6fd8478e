"""MXNet NDArray-list reader/writer and the ResNet-38 MXNet -> PSA converter."""
from __future__ import annotations

import os
import struct
import sys

import numpy as np
import pytest
import torch

from s2c.models.backbones.mxnet_params import (
    MXNetParamsError,
    compare_to_reference,
    mxnet_name_to_psa,
    mxnet_to_psa_state_dict,
    read_ndarray_list,
    write_ndarray_list,
)

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CLI = os.path.join(REPO, 'tools', 'model_converters', 'resnet38d_mxnet2torch.py')
VERSIONS = ('v3', 'v2', 'v1', 'legacy')
TINY_WIDTH = 1 / 64
# Channels of ResNet38d(width=1/64): max(4, round(n / 64)).
TINY = {64: 4, 128: 4, 256: 4, 512: 8, 1024: 16, 2048: 32, 4096: 64}
FULL = {n: n for n in TINY}


def resnet38_spec(ch: dict[int, int]) -> list[tuple[str, str | None, tuple[int, ...]]]:
    """(MXNet name, expected PSA name or None if dropped, shape) of the whole network.

    Written block by block from the architecture table (not from the renaming rule).
    """
    spec: list[tuple[str, str | None, tuple[int, ...]]] = [
        ('arg:conv1a_weight', 'conv1a.weight', (ch[64], 3, 3, 3))]

    def bn(mx: str, pt: str, c: int) -> None:
        for mx_p, pt_p, prefix in (('gamma', 'weight', 'arg'), ('beta', 'bias', 'arg'),
                                   ('moving_mean', 'running_mean', 'aux'),
                                   ('moving_var', 'running_var', 'aux')):
            spec.append((f'{prefix}:{mx}_{mx_p}', f'{pt}.{pt_p}', (c,)))

    def conv(mx: str, pt: str, shape: tuple[int, ...]) -> None:
        spec.append((f'arg:{mx}_weight', f'{pt}.weight', shape))

    def block(stage: int, tag: str, pt: str, cin: int, mid: int, cout: int, proj: bool) -> None:
        bn(f'bn{stage}{tag}_branch2a', f'{pt}.bn_branch2a', cin)
        conv(f'res{stage}{tag}_branch2a', f'{pt}.conv_branch2a', (mid, cin, 3, 3))
        bn(f'bn{stage}{tag}_branch2b1', f'{pt}.bn_branch2b1', mid)
        conv(f'res{stage}{tag}_branch2b1', f'{pt}.conv_branch2b1', (cout, mid, 3, 3))
        if proj:
            conv(f'res{stage}{tag}_branch1', f'{pt}.conv_branch1', (cout, cin, 1, 1))

    def bottleneck(stage: int, cin: int, cout: int) -> None:
        tag, pt = 'a', f'b{stage}'
        bn(f'bn{stage}{tag}_branch2a', f'{pt}.bn_branch2a', cin)
        conv(f'res{stage}{tag}_branch2a', f'{pt}.conv_branch2a', (cout // 4, cin, 1, 1))
        bn(f'bn{stage}{tag}_branch2b1', f'{pt}.bn_branch2b1', cout // 4)
        conv(f'res{stage}{tag}_branch2b1', f'{pt}.conv_branch2b1', (cout // 2, cout // 4, 3, 3))
        bn(f'bn{stage}{tag}_branch2b2', f'{pt}.bn_branch2b2', cout // 2)
        conv(f'res{stage}{tag}_branch2b2', f'{pt}.conv_branch2b2', (cout, cout // 2, 1, 1))
        conv(f'res{stage}{tag}_branch1', f'{pt}.conv_branch1', (cout, cin, 1, 1))

    for stage, cin, mid, cout, repeats in ((2, 64, 128, 128, 2), (3, 128, 256, 256, 2),
                                           (4, 256, 512, 512, 5), (5, 512, 512, 1024, 2)):
        block(stage, 'a', f'b{stage}', ch[cin], ch[mid], ch[cout], True)
        for i in range(1, repeats + 1):
            block(stage, f'b{i}', f'b{stage}_{i}', ch[cout], ch[mid], ch[cout], False)
    bottleneck(6, ch[1024], ch[2048])
    bottleneck(7, ch[2048], ch[4096])
    bn('bn7', 'bn7', ch[4096])
    spec.append(('arg:linear1000_weight', None, (10, ch[4096])))
    spec.append(('arg:linear1000_bias', None, (10,)))
    return spec


def random_arrays(spec, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    out = {}
    for mx, _, shape in spec:
        a = rng.standard_normal(shape).astype(np.float32)
        out[mx] = np.abs(a) + 0.1 if mx.endswith('moving_var') else a
    return out


def assert_bit_equal(a: np.ndarray, b: np.ndarray) -> None:
    assert a.dtype == b.dtype and a.shape == b.shape
    assert a.tobytes() == b.tobytes()


# ----------------------------------------------------------------------------- format


def _names_bytes(names: list[str]) -> bytes:
    out = struct.pack('<Q', len(names))
    for n in names:
        out += struct.pack('<Q', len(n)) + n.encode()
    return out


def test_hand_made_bytes_all_versions(tmp_path):
    """Bytes laid out by hand from ndarray.cc decode to the expected values."""
    v2 = (struct.pack('<Ii', 0xF993FAC9, 0) + struct.pack('<iqq', 2, 2, 3)
          + struct.pack('<iii', 1, 0, 0) + np.arange(6, dtype='<f4').tobytes())
    v1 = (struct.pack('<I', 0xF993FAC8) + struct.pack('<iq', 1, 3)
          + struct.pack('<iii', 2, 1, 4) + np.array([7, -8, 9], '<i4').tobytes())
    legacy = (struct.pack('<III', 2, 1, 2) + struct.pack('<iii', 1, 0, 1)
              + np.array([[0.5, -2.25]], '<f8').tobytes())
    v3_scalar = (struct.pack('<Ii', 0xF993FACA, 0) + struct.pack('<i', 0)
                 + struct.pack('<iii', 1, 0, 6) + struct.pack('<q', -5))
    unset_v2 = struct.pack('<Iii', 0xF993FAC9, 0, 0)  # ndim 0: nothing follows
    unset_legacy = struct.pack('<I', 0)
    body = v2 + v1 + unset_v2 + legacy + unset_legacy + v3_scalar
    names = ['arg:a', 'aux:b', 'c', 'd', 'e', 'f']
    path = tmp_path / 'hand.params'
    path.write_bytes(struct.pack('<QQQ', 0x112, 0, 6) + body + _names_bytes(names))

    got = read_ndarray_list(str(path))
    assert list(got) == names
    np.testing.assert_array_equal(got['arg:a'], np.arange(6, dtype=np.float32).reshape(2, 3))
    assert got['arg:a'].dtype == np.float32
    assert got['aux:b'].dtype == np.int32 and got['aux:b'].tolist() == [7, -8, 9]
    assert got['c'].shape == (0,) and got['c'].dtype == np.float32
    assert got['d'].dtype == np.float64 and got['d'].tolist() == [[0.5, -2.25]]
    assert got['e'].shape == (0,)
    assert got['f'].shape == () and got['f'].dtype == np.int64 and int(got['f']) == -5


def test_writer_bytes_match_hand_layout(tmp_path):
    arr = np.arange(6, dtype=np.float32).reshape(2, 3)
    path = tmp_path / 'w.params'
    write_ndarray_list(str(path), {'arg:a': arr}, version='v2')
    expected = (struct.pack('<QQQ', 0x112, 0, 1) + struct.pack('<Ii', 0xF993FAC9, 0)
                + struct.pack('<iqq', 2, 2, 3) + struct.pack('<iii', 1, 0, 0) + arr.tobytes()
                + _names_bytes(['arg:a']))
    assert path.read_bytes() == expected
    write_ndarray_list(str(path), {'x': arr}, version='legacy')
    expected = (struct.pack('<QQQ', 0x112, 0, 1) + struct.pack('<III', 2, 2, 3)
                + struct.pack('<iii', 1, 0, 0) + arr.tobytes() + _names_bytes(['x']))
    assert path.read_bytes() == expected


@pytest.mark.parametrize('version', VERSIONS)
def test_round_trip_every_dtype(tmp_path, version):
    rng = np.random.default_rng(1)
    arrays = {
        'f32': rng.standard_normal((2, 3)).astype(np.float32),
        'f64': rng.standard_normal((4,)),
        'f16': rng.standard_normal((1, 2, 3, 4)).astype(np.float16),
        'u8': rng.integers(0, 256, (3, 5), dtype=np.uint8),
        'i32': rng.integers(-2**31, 2**31 - 1, (7,), dtype=np.int32),
        'i8': rng.integers(-128, 128, (2, 2), dtype=np.int8),
        'i64': np.array([-2**62, 0, 2**62 + 3], dtype=np.int64),
        'empty': np.zeros((0, 3), np.float32),
        'nan_inf': np.array([np.nan, np.inf, -np.inf, -0.0], np.float32),
    }
    path = tmp_path / f'dtypes_{version}.params'
    write_ndarray_list(str(path), arrays, version=version)
    got = read_ndarray_list(str(path))
    assert list(got) == list(arrays)
    for k, v in arrays.items():
        assert_bit_equal(got[k], v)
    assert got['f32'].flags.writeable


def test_scalar_needs_v3(tmp_path):
    path = str(tmp_path / 's.params')
    write_ndarray_list(path, {'s': np.array(2.5, np.float32)}, version='v3')
    assert read_ndarray_list(path)['s'].shape == ()
    with pytest.raises(ValueError, match='v3'):
        write_ndarray_list(path, {'s': np.array(2.5, np.float32)}, version='v2')
    with pytest.raises(ValueError, match='bool'):
        write_ndarray_list(path, {'b': np.zeros(2, bool)})


# ----------------------------------------------------------------------------- errors


@pytest.fixture()
def small_file(tmp_path):
    path = tmp_path / 'small.params'
    write_ndarray_list(str(path), {'arg:w': np.ones((4, 4), np.float32),
                                   'aux:m': np.zeros(3, np.float32)})
    return path


@pytest.mark.parametrize('cut', [10, 20, 30, 50, 80, 100, -3])
def test_truncated_file(tmp_path, small_file, cut):
    data = small_file.read_bytes()
    bad = tmp_path / 'cut.params'
    bad.write_bytes(data[:cut])
    with pytest.raises(MXNetParamsError, match='truncated at byte|only 10 bytes') as e:
        read_ndarray_list(str(bad))
    assert str(bad) in str(e.value)


def test_not_a_params_file(tmp_path, small_file):
    bad = tmp_path / 'bad.params'
    bad.write_bytes(b'PK\x03\x04' + small_file.read_bytes()[4:])
    with pytest.raises(MXNetParamsError, match='not an MXNet NDArray list: magic'):
        read_ndarray_list(str(bad))
    data = bytearray(small_file.read_bytes())
    data[24:28] = struct.pack('<I', 0xDEADBEEF)  # garbage array magic
    bad.write_bytes(bytes(data))
    with pytest.raises(MXNetParamsError, match='unknown array magic 0xDEADBEEF'):
        read_ndarray_list(str(bad))
    data = bytearray(small_file.read_bytes())
    data[16:24] = struct.pack('<Q', 10**12)  # absurd array count
    bad.write_bytes(bytes(data))
    with pytest.raises(MXNetParamsError, match='10+ arrays announced'):
        read_ndarray_list(str(bad))
    with pytest.raises(FileNotFoundError):
        read_ndarray_list(str(tmp_path / 'missing.params'))


def test_sparse_dtype_and_name_errors(tmp_path, small_file):
    data = bytearray(small_file.read_bytes())
    bad = tmp_path / 'bad.params'
    sparse = bytearray(data)
    sparse[28:32] = struct.pack('<i', 1)  # storage type of array #0
    bad.write_bytes(bytes(sparse))
    with pytest.raises(MXNetParamsError, match='sparse storage \\(row_sparse\\)'):
        read_ndarray_list(str(bad))
    flag_at = 24 + 4 + 4 + 4 + 16 + 8  # magic, stype, ndim, 2 dims, context
    wrong = bytearray(data)
    wrong[flag_at:flag_at + 4] = struct.pack('<i', 9)
    bad.write_bytes(bytes(wrong))
    with pytest.raises(MXNetParamsError, match='unsupported dtype flag 9'):
        read_ndarray_list(str(bad))
    one = np.zeros(2, np.float32)
    header = struct.pack('<QQQ', 0x112, 0, 2)
    arr = struct.pack('<Iiiqiii', 0xF993FAC9, 0, 1, 2, 1, 0, 0) + one.tobytes()
    bad.write_bytes(header + arr + arr + struct.pack('<Q', 0))
    with pytest.raises(MXNetParamsError, match='no names'):
        read_ndarray_list(str(bad))
    bad.write_bytes(header + arr + arr + _names_bytes(['x']))
    with pytest.raises(MXNetParamsError, match='1 names for 2 arrays'):
        read_ndarray_list(str(bad))
    bad.write_bytes(header + arr + arr + _names_bytes(['x', 'x']))
    with pytest.raises(MXNetParamsError, match="duplicate array names \\['x'\\]"):
        read_ndarray_list(str(bad))


# ----------------------------------------------------------------------------- renaming


@pytest.mark.parametrize('mx,pt', [
    ('arg:conv1a_weight', 'conv1a.weight'),
    ('arg:res2a_branch1_weight', 'b2.conv_branch1.weight'),
    ('arg:res2a_branch2a_weight', 'b2.conv_branch2a.weight'),
    ('arg:res2b1_branch2b1_weight', 'b2_1.conv_branch2b1.weight'),
    ('arg:res4b5_branch2a_weight', 'b4_5.conv_branch2a.weight'),
    ('arg:res6a_branch2b2_weight', 'b6.conv_branch2b2.weight'),
    ('arg:bn2a_branch2a_gamma', 'b2.bn_branch2a.weight'),
    ('arg:bn3b2_branch2b1_beta', 'b3_2.bn_branch2b1.bias'),
    ('aux:bn7a_branch2b2_moving_mean', 'b7.bn_branch2b2.running_mean'),
    ('aux:bn5b1_branch2a_moving_var', 'b5_1.bn_branch2a.running_var'),
    ('arg:bn7_gamma', 'bn7.weight'),
    ('aux:bn7_moving_var', 'bn7.running_var'),
    ('res3a_branch2a_weight', 'b3.conv_branch2a.weight'),  # no prefix
    ('arg:linear1000_weight', None),
    ('arg:linear1000_bias', None),
])
def test_name_rule(mx, pt):
    assert mxnet_name_to_psa(mx) == pt


@pytest.mark.parametrize('name', ['arg:fc8_weight', 'arg:res2a_branch2a_gamma',
                                  'aux:bn2a_branch2a_weight', 'arg:bn8_gamma', 'arg:conv1a_bias'])
def test_unknown_names_rejected(name):
    with pytest.raises(KeyError):
        mxnet_name_to_psa(name)


def test_unknown_names_listed():
    arrays = {'arg:conv1a_weight': np.zeros((4, 3, 3, 3), np.float32),
              'arg:fc8_weight': np.zeros(1, np.float32), 'aux:foo': np.zeros(1, np.float32)}
    with pytest.raises(KeyError, match=r"2 MXNet names.*'arg:fc8_weight', 'aux:foo'"):
        mxnet_to_psa_state_dict(arrays)
    clash = {'arg:conv1a_weight': np.zeros(1, np.float32), 'conv1a_weight': np.zeros(1, np.float32)}
    with pytest.raises(KeyError, match='map to one torch key'):
        mxnet_to_psa_state_dict(clash)


@pytest.mark.parametrize('version', ['v2', 'legacy'])
def test_convert_tiny_resnet38(tmp_path, version):
    spec = resnet38_spec(TINY)
    arrays = random_arrays(spec)
    path = tmp_path / 'tiny.params'
    write_ndarray_list(str(path), arrays, version=version)
    read = read_ndarray_list(str(path))
    assert list(read) == list(arrays)
    for k in arrays:
        assert_bit_equal(read[k], arrays[k])
    state = mxnet_to_psa_state_dict(read)
    expected = {pt: mx for mx, pt, _ in spec if pt is not None}
    assert len(spec) == 193 and len(state) == 191  # linear1000 weight + bias dropped
    assert list(state) == [pt for _, pt, _ in spec if pt is not None]
    for pt, mx in expected.items():
        assert state[pt].dtype == torch.float32
        assert_bit_equal(state[pt].numpy(), arrays[mx])


def test_key_set_matches_backbone():
    """The converted names/shapes are exactly ResNet38d's (tiny and full width)."""
    from s2c.models.backbones.resnet38d import ResNet38d
    for width, ch in ((TINY_WIDTH, TINY), (1.0, FULL)):
        with torch.device('meta'):
            model = ResNet38d(width=width)
        reference = {k: tuple(v.shape) for k, v in model.state_dict().items()
                     if not k.endswith('num_batches_tracked')}
        fake = {mxnet_name_to_psa(mx): torch.empty(shape, device='meta')
                for mx, _, shape in resnet38_spec(ch) if mxnet_name_to_psa(mx)}
        assert compare_to_reference(fake, reference) == ([], [], [])
    bad = dict(fake)
    bad.pop('bn7.weight')
    bad['b2.conv_branch1.weight'] = torch.empty(1)
    bad['fc8.weight'] = torch.empty(1)
    missing, unexpected, mismatched = compare_to_reference(bad, reference)
    assert missing == ['bn7.weight'] and unexpected == ['fc8.weight']
    assert mismatched == ['b2.conv_branch1.weight: file (1,) vs model (128, 64, 1, 1)']


# ----------------------------------------------------------------------------- CLI


def test_cli_end_to_end(tmp_path, run_tool):
    from s2c.models.backbones.resnet38d import ResNet38d, is_bn_counter
    from s2c.utils.checkpoint import load_state_dict_strict
    spec = resnet38_spec(TINY)
    arrays = random_arrays(spec, seed=3)
    src, dst = tmp_path / 'tiny.params', tmp_path / 'out' / 'tiny.pth'
    write_ndarray_list(str(src), arrays, version='v1')
    code, stdout, stderr = run_tool('model_converters/resnet38d_mxnet2torch', src, dst,
                                    '--width', TINY_WIDTH)
    assert code == 0, stderr
    assert 'read 193 arrays' in stdout and 'wrote 191 tensors' in stdout
    assert 'dropped 2' in stdout and 'matches ResNet38d' in stdout
    state = torch.load(str(dst), map_location='cpu', weights_only=True)
    assert set(state) == {pt for _, pt, _ in spec if pt is not None}
    for mx, pt, _ in spec:
        if pt is not None:
            assert_bit_equal(state[pt].numpy(), arrays[mx])
    assert not [f for f in os.listdir(dst.parent) if f.startswith('.tmp-')]
    model = ResNet38d(width=TINY_WIDTH)
    load_state_dict_strict(model, state, str(dst), optional=is_bn_counter)
    assert torch.equal(model.b4_5.bn_branch2a.running_var, state['b4_5.bn_branch2a.running_var'])


def test_cli_rejects_wrong_width(tmp_path, capsys):
    sys.path.insert(0, os.path.dirname(CLI))
    try:
        import resnet38d_mxnet2torch as cli
    finally:
        sys.path.pop(0)
    src, dst = tmp_path / 'tiny.params', tmp_path / 'tiny.pth'
    write_ndarray_list(str(src), random_arrays(resnet38_spec(TINY)))
    assert cli.main([str(src), str(dst)]) == 1  # checked against width 1.0
    err = capsys.readouterr().err
    assert 'shapes do not match the model' in err and 'conv1a.weight: file (4, 3, 3, 3)' in err
    assert not dst.exists()
    partial = {k: v for k, v in random_arrays(resnet38_spec(TINY)).items()
               if 'bn7_' not in k}
    write_ndarray_list(str(src), partial)
    assert cli.main([str(src), str(dst), '--width', str(TINY_WIDTH)]) == 1
    err = capsys.readouterr().err
    assert '4 missing' in err and 'bn7.running_mean' in err and not dst.exists()
    assert cli.main([str(tmp_path / 'nope.params'), str(dst)]) == 1
    assert 'not found' in capsys.readouterr().err
