"""SAM building, strict checkpoint loading, checkpoint hashes and SAM's pre/post-processing."""
from __future__ import annotations

import json
import os.path as osp

import numpy as np
import pytest
import torch
from segment_anything import sam_model_registry
from segment_anything.utils.transforms import ResizeLongestSide

from s2c.sam import build as build_mod
from s2c.sam.build import (
    SAM_MODEL_TYPES,
    build_sam,
    encoder_embed_dim,
    encoder_id,
    global_attn_indexes,
    sam_autocast,
)
from s2c.sam.transforms import (
    get_preprocess_shape,
    original_to_input_coords,
    postprocess_logits,
    preprocess_image,
)


@pytest.fixture(scope='module')
def tiny_sam():
    torch.manual_seed(0)
    return build_sam('tiny', device='cpu')


@pytest.fixture(scope='module')
def tiny_ckpt(tmp_path_factory, tiny_sam):
    path = tmp_path_factory.mktemp('ckpt') / 'sam_tiny.pth'
    torch.save(tiny_sam.state_dict(), path)
    return str(path)


# ----------------------------------------------------------------------------- building


@pytest.mark.parametrize('model_type', ['vit_b', 'vit_l', 'vit_h'])
def test_official_key_layout_matches_segment_anything(model_type):
    """Our builder gives exactly the official state-dict keys and shapes (meta tensors)."""
    with torch.device('meta'):
        ours = build_mod._build_modules(model_type).state_dict()
        ref = sam_model_registry[model_type]().state_dict()
    assert list(ours) == list(ref)
    assert all(ours[k].shape == ref[k].shape for k in ref)
    assert {k.split('.')[0] for k in ours} == {'image_encoder', 'prompt_encoder', 'mask_decoder'}


def test_global_attention_blocks_and_widths():
    assert SAM_MODEL_TYPES == ('vit_b', 'vit_l', 'vit_h', 'tiny')
    assert global_attn_indexes('vit_b') == (2, 5, 8, 11)
    assert global_attn_indexes('vit_l') == (5, 11, 17, 23)
    assert global_attn_indexes('vit_h') == (7, 15, 23, 31)
    assert [encoder_embed_dim(t) for t in ('vit_b', 'vit_l', 'vit_h')] == [768, 1024, 1280]
    with pytest.raises(ValueError, match='vit_x'):
        global_attn_indexes('vit_x')
    with pytest.raises(ValueError, match='unknown SAM model type'):
        build_sam('vit_x')


def test_tiny_sam_shapes(tiny_sam):
    sam = tiny_sam
    assert not sam.training and sam.pixel_mean.device.type == 'cpu'
    assert sam.image_encoder.img_size == 256
    assert len(sam.image_encoder.blocks) == 2
    assert [b.window_size for b in sam.image_encoder.blocks] == [0, 14]  # block 0 global
    assert sam.s2c_model_type == 'tiny' and sam.s2c_checkpoint is None
    with torch.no_grad():
        emb = sam.image_encoder(torch.zeros(1, 3, 256, 256))
    assert emb.shape == (1, 256, 16, 16)
    assert sam.prompt_encoder.get_dense_pe().shape == (1, 256, 16, 16)


def test_device_auto_is_cpu_without_cuda(tiny_ckpt):
    if torch.cuda.is_available():
        pytest.skip('CUDA present')
    assert build_sam('tiny', device='auto').pixel_mean.device.type == 'cpu'


# ----------------------------------------------------------------------------- checkpoints


def test_strict_checkpoint_round_trip(tiny_sam, tiny_ckpt):
    loaded = build_sam('tiny', tiny_ckpt, device='cpu')
    ref = tiny_sam.state_dict()
    got = loaded.state_dict()
    assert list(got) == list(ref)
    assert all(torch.equal(got[k], ref[k]) for k in ref)
    assert loaded.s2c_checkpoint == osp.abspath(tiny_ckpt)


def test_missing_and_unexpected_keys_are_named(tiny_sam, tmp_path):
    state = dict(tiny_sam.state_dict())
    del state['mask_decoder.iou_token.weight']
    state['mask_decoder.hf_token.weight'] = torch.zeros(1, 256)
    path = tmp_path / 'hq_like.pth'
    torch.save(state, path)
    with pytest.raises(KeyError) as info:
        build_sam('tiny', str(path), device='cpu')
    msg = str(info.value)
    assert str(path) in msg
    assert 'missing keys 1: [mask_decoder.iou_token.weight]' in msg
    assert 'unexpected keys 1: [mask_decoder.hf_token.weight]' in msg
    # Non-strict: loads what matches and leaves the missing tensor as initialised.
    model = build_sam('tiny', str(path), device='cpu', strict=False)
    assert torch.equal(model.mask_decoder.mask_tokens.weight,
                       tiny_sam.mask_decoder.mask_tokens.weight)


def test_many_missing_keys_are_counted(tmp_path):
    path = tmp_path / 'partial.pth'
    torch.save({'image_encoder.pos_embed': torch.zeros(1, 16, 16, 64)}, path)
    with pytest.raises(KeyError) as info:
        build_sam('tiny', str(path), device='cpu')
    n_missing = len(build_mod._build_modules('tiny').state_dict()) - 1
    assert f'missing keys {n_missing}: [' in str(info.value)
    assert f'(+{n_missing - 10} more)' in str(info.value)


def test_wrong_model_type_shape_mismatch(tiny_sam, tmp_path):
    state = dict(tiny_sam.state_dict())
    state['image_encoder.pos_embed'] = torch.zeros(1, 64, 64, 64)
    path = tmp_path / 'wrong.pth'
    torch.save(state, path)
    with pytest.raises(ValueError, match=r'wrong shape.*image_encoder\.pos_embed'):
        build_sam('tiny', str(path), device='cpu')


def test_truncated_and_foreign_files(tiny_ckpt, tmp_path):
    data = open(tiny_ckpt, 'rb').read()
    trunc = tmp_path / 'truncated.pth'
    trunc.write_bytes(data[:len(data) // 2])
    with pytest.raises(RuntimeError, match=r'truncated\.pth.*re-download'):
        build_sam('tiny', str(trunc), device='cpu')
    text = tmp_path / 'notes.pth'
    text.write_text('this is not a checkpoint')
    with pytest.raises(RuntimeError, match=r'notes\.pth.*re-download'):
        build_sam('tiny', str(text), device='cpu')
    with pytest.raises(FileNotFoundError, match='nowhere.pth'):
        build_sam('tiny', str(tmp_path / 'nowhere.pth'), device='cpu')


def test_encoder_id_names_the_image_encoder_tensors(tiny_sam, tiny_ckpt, tmp_path):
    """Same image encoder = same id, whatever else the checkpoint holds (an HQ-SAM file ships
    SAM's encoder); other encoder weights = another id; a file remembers its digest."""
    ident = encoder_id('tiny', tiny_ckpt)
    assert ident.startswith('tiny-') and len(ident) == len('tiny-') + 16
    state = dict(tiny_sam.state_dict())
    state['mask_decoder.iou_token.weight'] = state['mask_decoder.iou_token.weight'] + 1
    other_decoder = tmp_path / 'decoder_changed.pth'
    torch.save(state, other_decoder)
    assert encoder_id('tiny', str(other_decoder)) == ident
    state['image_encoder.neck.0.weight'] = state['image_encoder.neck.0.weight'] + 1
    other_encoder = tmp_path / 'encoder_changed.pth'
    torch.save(state, other_encoder)
    assert encoder_id('tiny', str(other_encoder)) != ident
    record = json.load(open(str(other_encoder) + '.sha256'))
    assert record['image_encoder_sha256'].startswith(encoder_id('tiny', str(other_encoder))[5:])
    # random weights: the id of the weights the seed builds (= a file saved from them)
    seeded = build_sam('tiny', None, device='cpu', seed=3)
    torch.save(seeded.state_dict(), tmp_path / 'seed3.pth')
    assert encoder_id('tiny', None, seed=3) == encoder_id('tiny', str(tmp_path / 'seed3.pth'))
    assert encoder_id('tiny', None, seed=3) != encoder_id('tiny', None, seed=4)


def test_autocast_choices():
    with sam_autocast('cpu', None):
        assert torch.ones(2).dtype == torch.float32
    with pytest.raises(ValueError, match='garbage'):
        sam_autocast('cpu', 'fp16')
    with pytest.raises(ValueError, match='needs CUDA'):
        sam_autocast('cpu', 'bf16')
    with pytest.raises(ValueError, match='unknown'):
        sam_autocast('cpu', 'int8')


# ----------------------------------------------------------------------------- transforms


def test_preprocess_shape_rounding():
    # int(side * scale + 0.5): 375 * 1024 / 500 = 768.0; 333 * 1024 / 500 = 681.98 -> 682
    assert get_preprocess_shape(375, 500, 1024) == (768, 1024)
    assert get_preprocess_shape(500, 333, 1024) == (1024, 682)
    assert get_preprocess_shape(7, 3, 256) == (256, 110)  # 109.71 -> 110


@pytest.mark.parametrize('hw', [(75, 100), (100, 61), (256, 256), (300, 40)])
def test_preprocess_equals_segment_anything(tiny_sam, hw):
    rng = np.random.default_rng(sum(hw))
    img = rng.integers(0, 256, (*hw, 3), dtype=np.uint8)
    x, input_size = preprocess_image(img, 256)
    ref_img = ResizeLongestSide(256).apply_image(img)
    ref = tiny_sam.preprocess(torch.as_tensor(ref_img).permute(2, 0, 1).contiguous()[None])
    assert input_size == ref_img.shape[:2]
    assert x.shape == (1, 3, 256, 256) and x.dtype == torch.float32
    assert torch.equal(x, ref)
    assert torch.all(x[..., input_size[0]:, :] == 0) and torch.all(x[..., input_size[1]:] == 0)


def test_preprocess_rejects_bad_images():
    with pytest.raises(ValueError, match=r'\(H, W, 3\)'):
        preprocess_image(np.zeros((10, 10), np.uint8), 256)
    with pytest.raises(ValueError, match='uint8'):
        preprocess_image(np.zeros((10, 10, 3), np.float32), 256)


def test_coords_to_input_frame():
    pts = np.array([[0.0, 0.0], [99.0, 74.0], [50.0, 20.0]])
    out = original_to_input_coords(pts, (75, 100), 256)  # resized to (192, 256)
    np.testing.assert_allclose(out, pts * [256 / 100, 192 / 75])
    np.testing.assert_array_equal(out, ResizeLongestSide(256).apply_coords(pts, (75, 100)))
    out_t = original_to_input_coords(torch.tensor(pts, dtype=torch.float32), (75, 100), 256)
    np.testing.assert_allclose(out_t.numpy(), out, rtol=1e-6)


def test_postprocess_equals_sam(tiny_sam):
    low = torch.randn(2, 3, 64, 64)
    out = postprocess_logits(low, (192, 256), (75, 100), 256)
    assert out.shape == (2, 3, 75, 100)
    assert torch.equal(out, tiny_sam.postprocess_masks(low, (192, 256), (75, 100)))


def test_postprocess_inverts_the_input_mapping():
    """A linear function sampled at the low-res pixel centres (mapped to the original
    frame) comes back as the same function of the original pixel coordinates."""
    orig_h, orig_w, img_size = 90, 120, 256
    in_h, in_w = get_preprocess_shape(orig_h, orig_w, img_size)  # (192, 256)
    low = img_size // 4

    def f(x, y):
        return 0.3 * x - 0.2 * y + 5.0

    j = np.arange(low)
    # low-res centre -> input-frame pixel index u = 4 * (j + 0.5) - 0.5
    # -> original pixel index x = (u + 0.5) * W / w - 0.5
    xs = (4 * (j + 0.5)) * orig_w / in_w - 0.5
    ys = (4 * (j + 0.5)) * orig_h / in_h - 0.5
    grid = f(xs[None, :], ys[:, None])
    out = postprocess_logits(torch.tensor(grid, dtype=torch.float32)[None, None],
                             (in_h, in_w), (orig_h, orig_w), img_size)[0, 0].numpy()
    yy, xx = np.mgrid[0:orig_h, 0:orig_w]
    interior = np.s_[3:-3, 3:-3]  # bilinear sampling clamps at the borders
    np.testing.assert_allclose(out[interior], f(xx, yy)[interior], atol=1e-3)


def test_building_sam_leaves_the_global_rng_alone(tiny_ckpt):
    """SAM is built inside the classifier (CPM's back-end): with a checkpoint or a seed it
    must not shift the RNG that initialises the classifier."""
    torch.manual_seed(123)
    expected = torch.rand(3)
    for kwargs in (dict(checkpoint=tiny_ckpt), dict(checkpoint=None, seed=5)):
        torch.manual_seed(123)
        build_sam('tiny', device='cpu', **kwargs)
        assert torch.equal(torch.rand(3), expected), kwargs
    torch.manual_seed(123)
    build_sam('tiny', device='cpu')                  # no seed: drawn from the global RNG
    assert not torch.equal(torch.rand(3), expected)
