"""SSC loss: hand computation, no gradient through prototypes, batch vectorisation."""
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from s2c.models.losses.ssc import SSCLoss, segment_prototypes


def _reference(feat, se, temperature=1.0, negatives='segments'):
    """Slow per-image, per-pixel loop (numpy) of the SSC definition."""
    feat = F.normalize(feat, dim=1).detach().numpy()
    se = se.numpy()
    kmax = se.max()
    total, count = 0.0, 0
    for b in range(feat.shape[0]):
        ids = [k for k in range(1, kmax + 1) if (se[b] == k).any()]
        if negatives == 'segments' and len(ids) < 2:
            continue
        protos = {}
        for k in range(0, kmax + 1):
            pix = feat[b][:, se[b] == k]
            if pix.size:
                m = pix.mean(axis=1)
                protos[k] = m / max(np.linalg.norm(m), 1e-12)
            else:
                protos[k] = np.zeros(feat.shape[1])
        slots = ids if negatives == 'segments' else list(range(kmax + 1))
        for y, x in zip(*np.nonzero(se[b])):
            f = feat[b][:, y, x]
            logits = np.array([temperature * f @ protos[k] for k in slots])
            target = slots.index(se[b, y, x])
            total += -(logits[target] - np.log(np.exp(logits).sum()))
            count += 1
    return total / count


def test_two_segment_4x4_by_hand():
    feat = torch.zeros(1, 2, 4, 4)
    feat[0, 0, :, :2] = 3.0   # left half: direction (1, 0)
    feat[0, 1, :, 2:] = 0.5   # right half: direction (0, 1)
    se = torch.tensor([[[1, 1, 2, 2]] * 4])
    loss = SSCLoss()(feat, se)
    # every pixel: logits [1, 0] for its own / the other prototype -> CE = log(1 + e^-1)
    assert loss.item() == pytest.approx(math.log(1 + math.exp(-1)), abs=1e-6)
    loss_t = SSCLoss(temperature=2.0)(feat, se)
    assert loss_t.item() == pytest.approx(math.log(1 + math.exp(-2)), abs=1e-6)


def test_equals_reference_and_ignores_uncovered():
    torch.manual_seed(0)
    feat = torch.randn(2, 3, 4, 4)
    se = torch.tensor([[[1, 1, 2, 2], [1, 0, 2, 2], [1, 1, 3, 3], [0, 0, 3, 3]],
                       [[1, 1, 1, 1], [2, 2, 2, 2], [2, 0, 0, 2], [1, 1, 2, 2]]])
    for negatives in ('segments', 'official'):
        got = SSCLoss(negatives=negatives, temperature=1.5)(feat, se).item()
        assert got == pytest.approx(_reference(feat, se, 1.5, negatives), abs=1e-5)


def test_official_mode_adds_zero_logits_of_absent_ids():
    feat = torch.zeros(2, 2, 2, 2)
    feat[:, 0] = 1.0
    feat[0, :, 1, :] = torch.tensor([0.0, 1.0]).view(2, 1)
    # image 0 has ids 1, 2; image 1 has 1, 2, 3 -> slot 3 of image 0 is a zero prototype
    se = torch.tensor([[[1, 1], [2, 2]], [[1, 2], [3, 3]]])
    official = SSCLoss(negatives='official')(feat[:1], se[:1]).item()
    batch = SSCLoss(negatives='official')(feat, se)
    assert official == pytest.approx(_reference(feat[:1], se[:1], negatives='official'))
    assert batch.item() == pytest.approx(_reference(feat, se, negatives='official'), abs=1e-6)


def test_official_numbering_before_the_crop():
    from s2c.datasets.transforms import PackClsInputs, RenumberSegmentsBeforeCrop
    from s2c.structures import Geometry
    se = np.array([[0, 5, 5, 9, 9, 12, 12, 12]] * 4, np.uint16)
    out = RenumberSegmentsBeforeCrop()(dict(se_map=se))
    assert out['se_ids'] == 'image'
    np.testing.assert_array_equal(out['se_map'][0], [0, 1, 1, 2, 2, 3, 3, 3])
    # no uncovered pixel: the smallest id becomes 0 (ignored), as in the official code
    no_zero = RenumberSegmentsBeforeCrop()(dict(se_map=se[:, 1:]))['se_map']
    np.testing.assert_array_equal(no_zero[0], [0, 0, 1, 1, 2, 2, 2])
    # a crop of the columns 4..7 keeps the image's ids (2, 3), and Pack keeps them
    results = dict(img=np.zeros((4, 4, 3), np.float32), name='a', img_path='a.jpg',
                   gt_label=np.zeros(20), ori_shape=(4, 8), geometry=Geometry.identity(4, 8),
                   se_map=out['se_map'][:, 4:], se_ids='image')
    sample = PackClsInputs()(results)['data_samples']
    assert sample['se_ids'] == 'image' and sample['se_map'][0].tolist() == [2, 3, 3, 3]
    results.pop('se_ids')
    sample = PackClsInputs()(results)['data_samples']
    assert sample['se_ids'] == 'crop' and sample['se_map'][0].tolist() == [1, 2, 2, 2]
    # official (se + 1).astype(np.uint8): ids modulo 256 before numbering, so 256 joins
    # "no segment" and 257 joins segment 1: (0, 1, 255, 256, 257, 300) -> (0, 1, 255, 0, 1, 44)
    wide = np.array([[0, 1, 255, 256, 257, 300]], np.uint16)
    out = RenumberSegmentsBeforeCrop(uint8_ids=True)(dict(se_map=wide))['se_map']
    assert out[0].tolist() == [0, 1, 3, 0, 1, 2]
    assert RenumberSegmentsBeforeCrop()(dict(se_map=wide))['se_map'][0].tolist() == \
        [0, 1, 2, 3, 4, 5]
    # no SE map (a CAM baseline made from an S2C config): nothing to number, nothing added
    assert RenumberSegmentsBeforeCrop()(dict(name='a')) == dict(name='a')


def test_official_mode_with_gaps_single_segments_and_its_pipeline_check():
    torch.manual_seed(2)
    feat = torch.randn(2, 3, 2, 4)
    # official ids with gaps (3 and 5 of a larger image); image 1 has one segment
    se = torch.tensor([[[3, 3, 5, 5], [0, 3, 5, 5]], [[1, 1, 1, 1], [1, 1, 0, 0]]])
    got = SSCLoss(negatives='official')(feat, se).item()
    assert got == pytest.approx(_reference(feat, se, negatives='official'), abs=1e-6)
    samples = [dict(se_map=se[i]) for i in range(2)]
    with pytest.raises(ValueError, match='RenumberSegmentsBeforeCrop'):
        SSCLoss(negatives='official')(feat, samples)
    for s in samples:
        s['se_ids'] = 'image'
    assert SSCLoss(negatives='official')(feat, samples).item() == pytest.approx(got)


def test_no_gradient_into_prototypes():
    torch.manual_seed(1)
    feat = torch.randn(1, 4, 4, 4, requires_grad=True)
    se = torch.tensor([[[1, 1, 2, 2]] * 2 + [[3, 3, 3, 0]] * 2])
    SSCLoss()(feat, se).backward()
    grad = feat.grad.clone()
    # the same loss with prototypes as constants
    f = F.normalize(feat, dim=1)
    protos, _ = segment_prototypes(f.detach(), se)
    protos = F.normalize(protos, dim=2).detach()
    logits = torch.einsum('bdhw,bkd->bkhw', f, protos)
    logits[:, 0] = float('-inf')
    target = se.masked_fill(se == 0, -100)
    feat.grad = None
    F.cross_entropy(logits, target, ignore_index=-100).backward()
    torch.testing.assert_close(grad, feat.grad)
    # and it differs from letting gradients flow through the prototypes
    feat.grad = None
    f = F.normalize(feat, dim=1)
    protos, _ = segment_prototypes(f, se)
    logits = torch.einsum('bdhw,bkd->bkhw', f, F.normalize(protos, dim=2))
    logits[:, 0] = float('-inf')
    F.cross_entropy(logits, target, ignore_index=-100).backward()
    assert not torch.allclose(grad, feat.grad)


def test_guard_and_upsampling():
    feat = torch.randn(2, 3, 2, 2, requires_grad=True)
    se = torch.ones(2, 8, 8, dtype=torch.long)  # one segment per image: nothing qualifies
    loss = SSCLoss()(feat, se)
    assert loss.item() == 0.0 and loss.requires_grad
    se[1, :, 4:] = 2
    loss = SSCLoss(loss_weight=0.5)(feat, [dict(se_map=s) for s in se])
    assert loss.item() > 0
    with pytest.raises(KeyError, match='LoadSEMap'):
        SSCLoss()(feat, [dict(name='x'), dict(name='y')])


def test_segment_prototypes_vectorised():
    feat = torch.arange(8.0).view(1, 2, 2, 2)
    se = torch.tensor([[[0, 1], [1, 2]]])
    protos, counts = segment_prototypes(feat, se)
    assert counts.tolist() == [[1, 2, 1]]
    torch.testing.assert_close(protos[0, 1], torch.tensor([1.5, 5.5]))
    torch.testing.assert_close(protos[0, 0], torch.tensor([0.0, 4.0]))


def test_gradient_equals_normalise_then_dot_with_upsampling():
    """The loss divides the logits by |f_p| instead of normalising the features first;
    value and gradient equal the direct form (upsample, F.normalize, dot products)."""
    torch.manual_seed(3)
    feat = torch.randn(2, 5, 3, 3, requires_grad=True)
    se = torch.randint(0, 4, (2, 12, 12))
    loss = SSCLoss(temperature=1.5)(feat, se)
    (grad, ) = torch.autograd.grad(loss, feat)

    up = F.normalize(F.interpolate(feat, size=(12, 12), mode='bilinear', align_corners=False),
                     dim=1)
    protos, counts = segment_prototypes(up.detach(), se)
    protos = F.normalize(protos, dim=2)
    logits = torch.einsum('bdhw,bkd->bkhw', up, protos) * 1.5
    allowed = counts > 0
    allowed[:, 0] = False
    logits = logits.masked_fill(~allowed.view(2, -1, 1, 1), float('-inf'))
    direct = F.cross_entropy(logits, se.masked_fill(se == 0, -100), ignore_index=-100)
    (direct_grad, ) = torch.autograd.grad(direct, feat)
    assert loss.item() == pytest.approx(direct.item(), abs=1e-6)
    torch.testing.assert_close(grad, direct_grad, rtol=1e-4, atol=1e-7)
    assert grad.abs().max() > 1e-3
