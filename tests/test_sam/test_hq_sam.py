"""HQ-SAM: our decoder against the authors' package (segment-anything-hq 0.3) on the same
random weights, the official key set, strict checkpoints, the HQ selection policies."""
from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from s2c.registry import PROMPT_BACKENDS
from s2c.sam.backends import HQ_OUTPUT_NAMES, check_policy, select_masks
from s2c.sam.build import build_sam
from s2c.sam.decoders import MaskDecoderHQ
from s2c.structures import ImageFeatures, PromptBatch

with warnings.catch_warnings():  # timm's deprecation notices at import time
    warnings.simplefilter('ignore')
    import segment_anything_hq.modeling as official_modeling
    from segment_anything_hq import SamAutomaticMaskGenerator as OfficialAMG
    from segment_anything_hq.modeling import MaskDecoderHQ as OfficialMaskDecoderHQ
    from segment_anything_hq.modeling import TwoWayTransformer as OfficialTwoWayTransformer

#: The 25 tensors HQ-SAM adds under ``mask_decoder.`` (vit_h, C_vit = 1280), read off
#: SysCV/sam-hq segment_anything/modeling/mask_decoder_hq.py 70-95.
HQ_KEYS_VIT_H = {
    'hf_token.weight': (1, 256),
    **{f'hf_mlp.layers.{i}.weight': s for i, s in enumerate([(256, 256), (256, 256), (32, 256)])},
    **{f'hf_mlp.layers.{i}.bias': (s, ) for i, s in enumerate([256, 256, 32])},
    'compress_vit_feat.0.weight': (1280, 256, 2, 2), 'compress_vit_feat.0.bias': (256, ),
    'compress_vit_feat.1.weight': (256, ), 'compress_vit_feat.1.bias': (256, ),
    'compress_vit_feat.3.weight': (256, 32, 2, 2), 'compress_vit_feat.3.bias': (32, ),
    'embedding_encoder.0.weight': (256, 64, 2, 2), 'embedding_encoder.0.bias': (64, ),
    'embedding_encoder.1.weight': (64, ), 'embedding_encoder.1.bias': (64, ),
    'embedding_encoder.3.weight': (64, 32, 2, 2), 'embedding_encoder.3.bias': (32, ),
    'embedding_maskfeature.0.weight': (64, 32, 3, 3), 'embedding_maskfeature.0.bias': (64, ),
    'embedding_maskfeature.1.weight': (64, ), 'embedding_maskfeature.1.bias': (64, ),
    'embedding_maskfeature.3.weight': (32, 64, 3, 3), 'embedding_maskfeature.3.bias': (32, ),
}


def test_hq_decoder_adds_exactly_the_official_keys():
    sam = build_sam('vit_b', None, device='cpu', seed=0)
    vanilla = set(sam.mask_decoder.state_dict())
    decoder = MaskDecoderHQ(vit_dim=1280, transformer=sam.mask_decoder.transformer)
    added = {k: tuple(v.shape) for k, v in decoder.state_dict().items() if k not in vanilla}
    assert len(HQ_KEYS_VIT_H) == 25 and added == HQ_KEYS_VIT_H
    assert set(decoder.state_dict()) - set(added) == vanilla


@pytest.fixture(scope='module')
def hq_backend():
    backend = PROMPT_BACKENDS.build(dict(type='hq_sam', model_type='tiny', checkpoint=None,
                                         seed=0, device='cpu'))
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():   # default init leaves LayerNorms at 1/0: make every part matter
        for p in backend.mask_decoder.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=g))
    return backend


@pytest.fixture(scope='module')
def official(hq_backend):
    """The authors' MaskDecoderHQ with our weights (loaded strictly: same key names)."""
    decoder = OfficialMaskDecoderHQ(
        transformer_dim=256, num_multimask_outputs=3, iou_head_depth=3, iou_head_hidden_dim=256,
        vit_dim=64, transformer=OfficialTwoWayTransformer(depth=2, embedding_dim=256,
                                                          mlp_dim=2048, num_heads=8))
    decoder.load_state_dict(hq_backend.mask_decoder.state_dict(), strict=True)
    return decoder.eval()


def _features(b: int = 2) -> ImageFeatures:
    g = torch.Generator().manual_seed(1)
    return ImageFeatures(embeddings=torch.randn(b, 256, 16, 16, generator=g),
                         input_sizes=torch.tensor([[256, 192], [192, 256]][:b]),
                         original_sizes=torch.tensor([[100, 75], [60, 80]][:b]),
                         early=torch.randn(b, 16, 16, 64, generator=g), img_size=256)


def _prompts() -> PromptBatch:
    g = torch.Generator().manual_seed(2)
    boxes = torch.full((4, 4), float('nan'))
    boxes[1] = torch.tensor([20.0, 30.0, 150.0, 170.0])
    return PromptBatch(points=torch.rand(4, 2, 2, generator=g) * 250,
                       labels=torch.tensor([[1, -1], [1, 1], [1, 0], [1, 1]]),
                       image_index=torch.tensor([0, 1, 1, 0]), boxes=boxes)


@pytest.mark.parametrize('multimask', [True, False])
@pytest.mark.parametrize('hq_token_only', [True, False])
def test_decode_equals_the_authors_decoder(hq_backend, official, multimask, hq_token_only):
    """Every prompt of a two-image batch against MaskDecoderHQ.forward on its own image."""
    feats, prompts = _features(), _prompts()
    pred = hq_backend(feats, prompts)
    assert pred.names == HQ_OUTPUT_NAMES and pred.logits.shape == (4, 5, 64, 64)
    assert torch.isnan(pred.iou[:, 4]).all() and torch.isfinite(pred.iou[:, :4]).all()
    policy = 'hq' if hq_token_only else ('hq_official' if multimask else 'hq_official_single')
    logits, iou = select_masks(pred, policy)
    pe = hq_backend.prompt_encoder.get_dense_pe()
    for n in range(4):
        i = int(prompts.image_index[n])
        keep = prompts.labels[n] != -1
        box = prompts.boxes[n:n + 1] if torch.isfinite(prompts.boxes[n]).all() else None
        sparse, dense = hq_backend.prompt_encoder(
            points=(prompts.points[n][keep][None], prompts.labels[n][keep][None]), boxes=box,
            masks=None)
        with torch.no_grad():
            want, want_iou = official(
                image_embeddings=feats.embeddings[i:i + 1], image_pe=pe,
                sparse_prompt_embeddings=sparse, dense_prompt_embeddings=dense,
                multimask_output=multimask, hq_token_only=hq_token_only,
                interm_embeddings=[feats.early[i:i + 1]])
            all_masks, all_iou = official.predict_masks(
                feats.embeddings[i:i + 1], pe, sparse, dense,
                official.embedding_encoder(feats.embeddings[i:i + 1])
                + official.compress_vit_feat(feats.early[i:i + 1].permute(0, 3, 1, 2)))
        torch.testing.assert_close(logits[n], want[0, 0], atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(pred.logits[n], all_masks[0], atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(pred.iou[n, :4], all_iou[0], atol=1e-5, rtol=1e-5)
        if not hq_token_only:   # the IoU the predictor reports: the SAM output's
            torch.testing.assert_close(iou[n], want_iou[0, 0], atol=1e-5, rtol=1e-5)


def test_hq_policies_and_requirements(hq_backend):
    assert hq_backend.requires == frozenset({'early'})
    for policy in ('hq_official', 'hq_official_single', 'index2_plus_hq', 'hq', 'index2'):
        assert check_policy(policy, HQ_OUTPUT_NAMES) == policy
    with pytest.raises(ValueError, match="'hq_official'"):
        check_policy('hq_official', ('single', 'multi_0', 'multi_1', 'multi_2'))
    pred = hq_backend(_features(), _prompts())
    index2, _ = select_masks(pred, 'index2')
    plus, _ = select_masks(pred, 'index2_plus_hq')
    torch.testing.assert_close(plus, index2 + pred.logits[:, 4])
    no_early = _features()
    no_early.early = None
    with pytest.raises(ValueError, match='early_features=True'):
        hq_backend.prepare(no_early)


def test_same_seed_same_encoder_and_unknown_variant():
    vanilla = build_sam('tiny', None, device='cpu', seed=0)
    hq = build_sam('tiny', None, device='cpu', seed=0, variant='hq_sam')
    # same encoder and vanilla decoder weights from the same seed: one embedding cache serves both
    assert torch.equal(vanilla.image_encoder.patch_embed.proj.weight,
                       hq.image_encoder.patch_embed.proj.weight)
    with pytest.raises(ValueError, match='variant'):
        build_sam('tiny', None, device='cpu', variant='hq')


def test_hq_segment_everything_equals_the_authors_generator(hq_backend, tmp_path):
    """SE maps through the HQ back-end: our AMG with backend='hq_sam' (policy hq_official)
    gives the masks of the authors' SamAutomaticMaskGenerator, record by record."""
    from functools import partial

    from test_sam_amg import _blob_image

    from s2c.registry import SE_PROVIDERS

    sam = build_sam('tiny', None, device='cpu', seed=0, variant='hq_sam')
    sam.mask_decoder.load_state_dict(hq_backend.mask_decoder.state_dict())
    torch.save(sam.state_dict(), tmp_path / 'hq.pth')
    m = official_modeling
    theirs = m.Sam(
        image_encoder=m.ImageEncoderViT(
            depth=2, embed_dim=64, img_size=256, mlp_ratio=4,
            norm_layer=partial(torch.nn.LayerNorm, eps=1e-6), num_heads=2, patch_size=16,
            qkv_bias=True, use_rel_pos=True, global_attn_indexes=(0, ), window_size=14,
            out_chans=256),
        prompt_encoder=m.PromptEncoder(embed_dim=256, image_embedding_size=(16, 16),
                                       input_image_size=(256, 256), mask_in_chans=16),
        mask_decoder=OfficialMaskDecoderHQ(
            num_multimask_outputs=3, transformer=OfficialTwoWayTransformer(
                depth=2, embedding_dim=256, mlp_dim=2048, num_heads=8),
            transformer_dim=256, iou_head_depth=3, iou_head_hidden_dim=256, vit_dim=64),
        pixel_mean=[123.675, 116.28, 103.53], pixel_std=[58.395, 57.12, 57.375])
    theirs.load_state_dict(sam.state_dict(), strict=True)
    image = _blob_image()
    amg = dict(points_per_side=6, pred_iou_thresh=0.0, stability_score_thresh=0.0,
               box_nms_thresh=1.0)
    with torch.no_grad():
        ref = OfficialAMG(theirs.eval(), **amg).generate(image)
    provider = SE_PROVIDERS.build(dict(
        type='sam_amg', sam=sam, backend=dict(type='hq_sam', model_type='tiny',
                                              checkpoint=str(tmp_path / 'hq.pth')), **amg))
    ours = provider.generator.generate(image)
    assert len(ours) == len(ref) == 36
    for a, b in zip(ours, ref):
        np.testing.assert_array_equal(a['segmentation'], b['segmentation'])
        assert a['point_coords'] == b['point_coords']
        assert abs(a['predicted_iou'] - b['predicted_iou']) < 1e-5
    assert provider.params['backend']['type'] == 'hq_sam'
    assert provider.params['selection'] == 'hq_official'
    assert provider(image).max() >= 1
    # a back-end with another image encoder is refused
    with pytest.raises(ValueError, match='image encoder'):
        SE_PROVIDERS.build(dict(type='sam_amg', sam=sam, backend=dict(
            type='hq_sam', model_type='tiny', checkpoint=None, seed=5), **amg))
