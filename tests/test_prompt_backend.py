"""Prompt back-end: one batched multi-image decode equals segment-anything's per-image decoder."""
import pytest
import torch

from s2c.registry import PROMPT_BACKENDS
from s2c.sam.backends import (
    SAM_OUTPUT_NAMES,
    ImageFeatures,
    MaskPrediction,
    PromptBatch,
    select_masks,
)


@pytest.fixture(scope='module')
def backend():
    import s2c.sam.backends  # noqa: F401
    return PROMPT_BACKENDS.build(dict(type='sam', model_type='tiny', checkpoint=None,
                                      device='cpu', seed=0))


def test_batched_decode_equals_library_decoder(backend):
    torch.manual_seed(1)
    emb = torch.randn(3, 256, 16, 16)
    feats = ImageFeatures(embeddings=emb, input_sizes=torch.tensor([[256, 192]] * 3),
                          original_sizes=torch.tensor([[100, 75]] * 3), img_size=256)
    # 5 prompts over 3 images with 1, 2 or 3 positive points (padded with -1)
    pts = torch.rand(5, 3, 2) * 180
    lab = torch.tensor([[1, -1, -1], [1, 1, -1], [1, 1, 1], [1, -1, -1], [1, 1, -1]])
    idx = torch.tensor([0, 2, 1, 2, 0])
    pred = backend.decode(feats, PromptBatch(points=pts, labels=lab, image_index=idx))
    assert pred.logits.shape == (5, 4, 64, 64) and pred.names == SAM_OUTPUT_NAMES
    pe = backend.prompt_encoder.get_dense_pe()
    for n in range(5):
        k = int((lab[n] != -1).sum())
        sparse, dense = backend.prompt_encoder(points=(pts[n:n + 1, :k], lab[n:n + 1, :k]),
                                               boxes=None, masks=None)
        with torch.no_grad():
            multi, iou_m = backend.mask_decoder(image_embeddings=emb[idx[n]:idx[n] + 1],
                                                image_pe=pe, sparse_prompt_embeddings=sparse,
                                                dense_prompt_embeddings=dense,
                                                multimask_output=True)
            single, iou_s = backend.mask_decoder(image_embeddings=emb[idx[n]:idx[n] + 1],
                                                 image_pe=pe, sparse_prompt_embeddings=sparse,
                                                 dense_prompt_embeddings=dense,
                                                 multimask_output=False)
        torch.testing.assert_close(pred.logits[n, 1:], multi[0], atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(pred.logits[n, :1], single[0], atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(pred.iou[n, 1:], iou_m[0], atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(pred.iou[n, 0], iou_s[0, 0], atol=1e-5, rtol=1e-4)


def test_selection_policies():
    logits = torch.arange(2 * 4 * 2 * 2, dtype=torch.float32).view(2, 4, 2, 2)
    iou = torch.tensor([[0.9, 0.1, 0.8, 0.3], [0.1, 0.5, 0.2, 0.4]])
    pred = MaskPrediction(logits=logits, iou=iou, names=SAM_OUTPUT_NAMES)
    sel, s_iou = select_masks(pred, 'index2')
    torch.testing.assert_close(sel, logits[:, 3]) and torch.testing.assert_close(s_iou, iou[:, 3])
    sel, s_iou = select_masks(pred, 'best_iou')  # among multimask outputs only
    assert s_iou.tolist() == pytest.approx([0.8, 0.5])
    torch.testing.assert_close(sel, torch.stack([logits[0, 2], logits[1, 1]]))
    torch.testing.assert_close(select_masks(pred, 'single')[0], logits[:, 0])
    with pytest.raises(ValueError, match='hq'):
        select_masks(pred, 'hq')


def test_decoder_only_backend_has_no_image_encoder(backend):
    assert backend.image_encoder is None
    with pytest.raises(NotImplementedError, match='online'):
        backend.encode(torch.zeros(1, 3, 256, 256))
    assert not any(p.requires_grad for p in backend.parameters())
