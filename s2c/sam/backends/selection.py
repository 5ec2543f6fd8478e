"""Mask selection policies: which output of a back-end CPM and refinement use.

A back-end returns several named channels (:class:`~s2c.structures.MaskPrediction`);
a policy picks one per prompt, or (HQ-SAM) the sum of a SAM channel's logits
and the HQ channel's, as HQ-SAM's own predictor returns them. Policies are
checked against a back-end's ``output_names`` when CPM (or a pseudo-label job)
is built, not at the first decode.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch

from s2c.structures import MaskPrediction

#: Names of SAM's four mask-token outputs: index 0 is the single-mask output,
#: 1-3 the multimask outputs (``multimask_output=True`` returns these three).
SAM_OUTPUT_NAMES = ('single', 'multi_0', 'multi_1', 'multi_2')

#: HQ-SAM's outputs: SAM's four (as HQ-SAM computes them) and the HQ mask.
HQ_OUTPUT_NAMES = SAM_OUTPUT_NAMES + ('hq', )
#: RobustSAM's output: the robust mask (its IoU head was never trained for it).
ROBUST_OUTPUT_NAMES = ('robust', )

#: Selection policies: name -> what it picks.
SELECTION_POLICIES = {
    'index2': 'multimask output 2 (the coarsest; official S2C model_s2c.py idx_max_sam = 2)',
    'best_iou': 'the multimask output with the highest predicted IoU (needs multi_* outputs)',
    'single': 'the single-mask output (multimask_output=False)',
    'hq_official': 'HQ-SAM predictor, multimask_output=True: best-IoU multimask logit + HQ '
                   'logit (sam-hq mask_decoder_hq.py 117-134); IoU of the SAM output',
    'hq_official_single': 'HQ-SAM predictor, multimask_output=False: single-mask logit + HQ logit',
    'index2_plus_hq': "S2C's index 2 in HQ-SAM's way: multimask output 2 logit + HQ logit",
}

#: Policies that are aliases of one channel.
_ALIASES = {'index2': 'multi_2', 'single': 'single'}
#: Policies that add the HQ logit to a SAM output picked by another policy.
_PLUS_HQ = {'hq_official': 'best_iou', 'hq_official_single': 'single', 'index2_plus_hq': 'index2'}


def _multimask_channels(names: Sequence[str]) -> list[int]:
    return [i for i, name in enumerate(names) if name.startswith('multi_')]


def _servable(policy: str, names: list[str]) -> bool:
    """Whether a one-channel policy (an alias, ``best_iou`` or a channel name) fits ``names``."""
    return policy in names or (policy in _ALIASES and _ALIASES[policy] in names) or (
        policy == 'best_iou' and bool(_multimask_channels(names)))


def check_policy(policy: str, output_names: Sequence[str]) -> str:
    """Return ``policy`` if a back-end with these outputs can serve it.

    Args:
        policy: A key of :data:`SELECTION_POLICIES` or a channel name.
        output_names: The back-end's ``output_names``.

    Raises:
        ValueError: Naming the policy, the outputs and the policies available.
    """
    names = list(output_names)
    if policy in _PLUS_HQ:
        ok = 'hq' in names and _servable(_PLUS_HQ[policy], names)
    else:
        ok = _servable(policy, names)
    if not ok:
        why = (' (best_iou needs multimask outputs with trained IoUs)' if policy == 'best_iou'
               else '')
        raise ValueError(f'selection policy {policy!r} is not available for outputs {names}{why}; '
                         f'policies: {sorted(SELECTION_POLICIES)} or a channel name')
    return policy


def select_masks(pred: MaskPrediction, policy: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Pick one channel per prompt.

    Args:
        pred: Back-end output, ``N`` prompts.
        policy: A key of :data:`SELECTION_POLICIES` or a channel name.

    Returns:
        tuple: ``(N, s, s)`` low-res logits and ``(N,)`` predicted IoUs of the picked
        channels (for the ``*_hq`` sums: the SAM channel's IoU).

    Raises:
        ValueError: For an unknown policy or one the back-end cannot serve.
    """
    names = list(pred.names)
    check_policy(policy, names)
    if policy in _PLUS_HQ:
        logits, iou = select_masks(pred, _PLUS_HQ[policy])
        return logits + pred.logits[:, names.index('hq')], iou
    n = pred.logits.shape[0]
    rows = torch.arange(n, device=pred.logits.device)
    if policy == 'best_iou' and policy not in names:
        multi = _multimask_channels(names)
        sub = pred.iou[:, multi].nan_to_num(-1.0)
        idx = torch.tensor(multi, device=rows.device)[sub.argmax(dim=1)]
    else:
        channel = policy if policy in names else _ALIASES[policy]
        idx = torch.full((n,), names.index(channel), dtype=torch.long, device=rows.device)
    return pred.logits[rows, idx], pred.iou[rows, idx]
