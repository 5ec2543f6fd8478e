"""RobustSAM: the official key set, batched decoding equal to one prompt at a time,
per-sample BatchNorm, the token block, strict checkpoints and the clear path."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from s2c.registry import PROMPT_BACKENDS
from s2c.sam.backends import ROBUST_OUTPUT_NAMES
from s2c.sam.build import build_sam
from s2c.sam.decoders import MaskDecoderRobust, robust_features
from s2c.sam.decoders.robust import TokenBlock, _batch_norm
from s2c.structures import ImageFeatures, PromptBatch


def _official_block_keys(prefix: str, c: int, head: dict) -> dict:
    """Keys of one anti-degradation block with C input channels (RobustSAM components.py:
    DNCBlock_combined(C) = CABlock(2C) + SKDown(SelectiveConv(C)), FGMBlock(2C), conv 2C->C)."""
    sk = f'{prefix}.dnc_block_combined.SEMBlock.maxpool_conv.0'
    ca = f'{prefix}.dnc_block_combined.channel_attention.excitation'
    keys = {
        f'{ca}.0.weight': (2 * c // 16, 2 * c), f'{ca}.0.bias': (2 * c // 16, ),
        f'{ca}.2.weight': (2 * c, 2 * c // 16), f'{ca}.2.bias': (2 * c, ),
        f'{sk}.conv1.weight': (c, c, 3, 3), f'{sk}.conv2.weight': (c, c, 3, 3),
        f'{sk}.selector.fc.0.weight': (c, 16 * c),
        f'{sk}.selector.att_conv1.weight': (16 * c, c), f'{sk}.selector.att_conv1.bias': (16 * c, ),
        f'{sk}.selector.att_conv2.weight': (16 * c, c), f'{sk}.selector.att_conv2.bias': (16 * c, ),
        f'{sk}.BN.weight': (c, ), f'{sk}.BN.bias': (c, ), f'{sk}.BN.running_mean': (c, ),
        f'{sk}.BN.running_var': (c, ), f'{sk}.BN.num_batches_tracked': (),
        f'{prefix}.fgm_block.conv_layer.weight': (2 * c, 2 * c, 1, 1),
        f'{prefix}.fgm_block.conv_layer.bias': (2 * c, ),
        f'{prefix}.conv_layer.weight': (c, 2 * c, 3, 3), f'{prefix}.conv_layer.bias': (c, ),
    }
    keys.update({f'{prefix}.{k}': v for k, v in head.items()})
    return keys


def _official_robust_keys(vit_dim: int) -> dict:
    """The 89 tensors RobustSAM adds under mask_decoder. (mask_decoder.py 77-91)."""
    up = lambda c: {'upsample_layer.0.weight': (c, 256, 2, 2), 'upsample_layer.0.bias': (256, ),  # noqa
                    'upsample_layer.1.weight': (256, ), 'upsample_layer.1.bias': (256, ),
                    'upsample_layer.3.weight': (256, 32, 2, 2), 'upsample_layer.3.bias': (32, )}
    down = {'downsample_layer.0.weight': (64, 32, 3, 3), 'downsample_layer.0.bias': (64, ),
            'downsample_layer.1.weight': (64, ), 'downsample_layer.1.bias': (64, ),
            'downsample_layer.3.weight': (32, 64, 3, 3), 'downsample_layer.3.bias': (32, )}
    keys = {'custom_robust_token.weight': (4, 256),
            'custom_token_block.mlp.0.weight': (64, 64), 'custom_token_block.mlp.0.bias': (64, ),
            'custom_token_block.mlp.2.weight': (256, 64), 'custom_token_block.mlp.2.bias': (256, ),
            **{f'robust_mlp.layers.{i}.weight': s
               for i, s in enumerate([(256, 256), (256, 256), (32, 256)])},
            **{f'robust_mlp.layers.{i}.bias': (s, ) for i, s in enumerate([256, 256, 32])}}
    keys.update(_official_block_keys('fourier_mask_features', 32, down))
    keys.update(_official_block_keys('fourier_first_layer_features', vit_dim, up(vit_dim)))
    keys.update(_official_block_keys('fourier_last_layer_features', 256, up(256)))
    return keys


def test_robust_decoder_adds_exactly_the_official_keys():
    sam = build_sam('tiny', None, device='cpu', seed=0)
    vanilla = set(sam.mask_decoder.state_dict())
    decoder = MaskDecoderRobust(vit_dim=768, transformer=sam.mask_decoder.transformer)
    added = {k: tuple(v.shape) for k, v in decoder.state_dict().items() if k not in vanilla}
    want = _official_robust_keys(768)
    assert len(want) == 89 and sum('BN.running' in k or 'num_batches' in k for k in want) == 9
    assert added == want


@pytest.fixture(scope='module')
def robust():
    backend = PROMPT_BACKENDS.build(dict(type='robust_sam', model_type='tiny', checkpoint=None,
                                         seed=0, device='cpu', chunk_size=2))
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for p in backend.mask_decoder.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=g))
        for name, b in backend.mask_decoder.named_buffers():
            if name.endswith('running_mean'):
                b.copy_(0.1 * torch.randn(b.shape, generator=g))
            elif name.endswith('running_var'):
                b.copy_(0.5 + torch.rand(b.shape, generator=g))
    return backend


def _features() -> ImageFeatures:
    g = torch.Generator().manual_seed(1)
    return ImageFeatures(embeddings=torch.randn(2, 256, 16, 16, generator=g),
                         input_sizes=torch.tensor([[256, 192], [192, 256]]),
                         original_sizes=torch.tensor([[100, 75], [60, 80]]),
                         early=torch.randn(2, 16, 16, 64, generator=g), img_size=256)


def _prompts() -> PromptBatch:
    g = torch.Generator().manual_seed(2)
    return PromptBatch(points=torch.rand(5, 2, 2, generator=g) * 250,
                       labels=torch.tensor([[1, -1], [1, 1], [1, 0], [1, 1], [1, 1]]),
                       image_index=torch.tensor([0, 1, 1, 0, 1]))


def test_batched_decoding_equals_one_prompt_at_a_time(robust):
    """The official decoder takes one prompt per call (more crash in its token block)."""
    feats, prompts = _features(), _prompts()
    pred = robust(feats, prompts)
    assert pred.names == ROBUST_OUTPUT_NAMES and pred.logits.shape == (5, 1, 64, 64)
    assert torch.isnan(pred.iou).all()
    for n in range(5):
        i = int(prompts.image_index[n])
        one = ImageFeatures(embeddings=feats.embeddings[i:i + 1],
                            input_sizes=feats.input_sizes[i:i + 1],
                            original_sizes=feats.original_sizes[i:i + 1],
                            early=feats.early[i:i + 1], img_size=256)
        single = PromptBatch(points=prompts.points[n:n + 1], labels=prompts.labels[n:n + 1],
                             image_index=torch.zeros(1, dtype=torch.long))
        torch.testing.assert_close(robust(one, single).logits[0], pred.logits[n],
                                   atol=1e-5, rtol=1e-5)


def test_per_sample_batch_norm_is_batch_norm_on_one_sample(robust):
    bn = robust.mask_decoder.fourier_last_layer_features.dnc_block_combined.SEMBlock \
        .maxpool_conv[0].BN
    x = torch.randn(3, 256, 8, 8)
    train_bn = nn.BatchNorm2d(256)
    train_bn.load_state_dict(bn.state_dict())
    train_bn.train()
    with torch.no_grad():
        want = torch.cat([train_bn(x[i:i + 1]) for i in range(3)])
        torch.testing.assert_close(_batch_norm(bn, x, 'per_sample'), want, atol=1e-5,
                                   rtol=1e-5)
        bn.eval()
        torch.testing.assert_close(_batch_norm(bn, x, 'running'), bn(x))
    # and the whole per-image path: an image's features do not depend on its batch-mates
    feats = _features()
    dec = robust.mask_decoder
    with torch.no_grad():
        both = robust_features(dec, feats.embeddings, feats.early)
        first = robust_features(dec, feats.embeddings[:1], feats.early[:1])
        running = robust_features(dec, feats.embeddings, feats.early, 'running')
    torch.testing.assert_close(both[:1], first, atol=1e-5, rtol=1e-5)
    assert (running - both).abs().max() > 1e-2   # the two modes really differ here


def test_token_block_is_the_official_channel_zero():
    """Official TokenBlock on one prompt: InstanceNorm1d twice over the 256 dims, view(4, 64),
    MLP per row -> (4, 256); Sam.predict's output channel 0 is row 0."""
    torch.manual_seed(0)
    block = TokenBlock(4, 256)
    token = torch.randn(3, 256) * 3 + 1
    norm = nn.InstanceNorm1d(4)
    for n in range(3):
        with pytest.warns(UserWarning):   # the official module warns about its own shapes
            x = norm(norm(token[n:n + 1]))
        rows = block.mlp(x.view(4, -1))
        torch.testing.assert_close(block(token)[n], rows[0])


def test_bn_mode_and_the_clear_path(robust):
    with pytest.raises(ValueError, match='bn_mode'):
        PROMPT_BACKENDS.build(dict(type='robust_sam', model_type='tiny', device='cpu',
                                   bn_mode='eval'))
    # clear path = SAM's maths on RobustSAM's decoder weights: with the same seed the
    # vanilla parts are SAM's, so the outputs are SAM's
    clear = PROMPT_BACKENDS.build(dict(type='robust_sam_clear', model_type='tiny', seed=0,
                                       device='cpu'))
    sam = PROMPT_BACKENDS.build(dict(type='sam', model_type='tiny', seed=0, device='cpu'))
    assert clear.requires == frozenset() and clear.encoder_id == sam.encoder_id
    feats, prompts = _features(), _prompts()
    a, b = clear(feats, prompts), sam(feats, prompts)
    assert a.names == b.names and torch.equal(a.logits, b.logits) and torch.equal(a.iou, b.iou)
    # ... while the robust path does not use those outputs at all
    assert robust.output_names == ('robust', ) and robust.requires == frozenset({'early'})


def test_segment_everything_needs_an_iou_and_no_reference(robust):
    """The AMG ranks masks by predicted IoU: RobustSAM's robust output has none; PerSAM
    needs reference maps, which segment-everything has not."""
    from s2c.sam.amg import SamAMG
    sam = build_sam('tiny', None, device='cpu', seed=0, variant='robust_sam')
    amg = SamAMG(sam, points_per_side=2, pred_iou_thresh=0.0, stability_score_thresh=0.0,
                 backend=robust, selection='robust')
    with pytest.raises(ValueError, match='no predicted IoU'):
        amg.generate_masks(torch.zeros(64, 64, 3, dtype=torch.uint8).numpy())
    persam = PROMPT_BACKENDS.build(dict(type='persam', model_type='tiny', seed=0, device='cpu'))
    with pytest.raises(ValueError, match='reference maps'):
        SamAMG(sam, points_per_side=2, backend=persam, selection='persam')
    with pytest.raises(ValueError, match='selection policy'):
        SamAMG(sam, points_per_side=2, backend=robust)
