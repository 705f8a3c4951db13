"""Training monitors of a dense head, kept out of the head's module.

Only the head sees its targets and its raw output maps, so it calls these
monitors from ``loss_by_feat``; what they watch and what they say lives here.
They are not hooks: the model package does not import the training engine.
:class:`mmretina.engine.hooks.CheckFiniteLossHook` guards the logged losses
of any model after the iteration:

* :class:`UnmatchedGtMonitor`: over the first training steps, the share of
  ground truths that got no positive anchor (learnt as background), summed
  on the device and turned into one warning by one host sync;
* :func:`check_finite_head_outputs`: before the weights change, a NaN / inf
  loss explained by the level and map that caused it (one host sync per
  step).
"""
import logging
from typing import Optional, Sequence

import torch
from mmengine.logging import print_log
from torch import Tensor

__all__ = [
    'UnmatchedGtMonitor', 'check_finite_head_outputs', 'DIAGNOSTIC_ITERS',
    'UNMATCHED_WARN_SHARE'
]

# Training steps over which the share of ground truths without a positive
# anchor is measured, and the share above which one warning is logged.
DIAGNOSTIC_ITERS = 50
UNMATCHED_WARN_SHARE = 0.1


class UnmatchedGtMonitor:
    """Warn once when many ground truths get no positive anchor.

    The counts of the first ``iters`` calls to :meth:`update` are summed on
    the device (no host sync); after the last of them, one sync decides a
    single warning. Later calls do nothing.

    Args:
        owner (str): who speaks in the warning (``'mmretina.RetinaHead'``).
        iters (int): training steps to sum over.
        warn_share (float): warn when more than this share of the ground
            truths had no positive anchor.
    """

    def __init__(self,
                 owner: str,
                 iters: int = DIAGNOSTIC_ITERS,
                 warn_share: float = UNMATCHED_WARN_SHARE) -> None:
        self.owner = owner
        self.iters = iters
        self.warn_share = warn_share
        self.steps = 0
        self._counts: Optional[Tensor] = None

    def update(self, matched: Tensor, total: Tensor) -> None:
        """Count one training step.

        Args:
            matched (Tensor): scalar, ground truths of the batch with at
                least one positive anchor.
            total (Tensor): scalar, ground truths of the batch.
        """
        if self.steps >= self.iters:
            return
        self.steps += 1
        counts = torch.stack([matched, total])
        self._counts = counts if self._counts is None else \
            self._counts + counts
        if self.steps == self.iters:
            self._warn_if_unmatched(*self._counts.tolist())

    def _warn_if_unmatched(self, matched: float, total: float) -> None:
        if total == 0 or 1 - matched / total <= self.warn_share:
            return
        print_log(
            f'{self.owner}: over the first {self.iters} '
            f'training steps, {1 - matched / total:.0%} of the '
            f'{int(total)} ground truths got no positive anchor, so they '
            'are learnt as background. The anchors do not fit the objects: '
            'run mmretina analyze anchors CONFIG --optimize '
            '(tools/analysis_tools/analyze_anchors.py in a checkout) for '
            'anchor settings that reach them.',
            logger='current',
            level=logging.WARNING)


def check_finite_head_outputs(owner: str, cls_scores: Sequence[Tensor],
                              bbox_preds: Sequence[Tensor], loss_cls: Tensor,
                              loss_bbox: Tensor) -> None:
    """Raise ``FloatingPointError`` naming the head output that made a loss
    NaN / inf; nothing when all is finite.

    The sums of the maps catch what the losses hide (an inf delta at a
    background anchor, a -inf logit, which the focal loss maps to 0) in one
    reduction pass each, where ``isfinite`` would take three; all in one
    host sync. The iteration and the checkpoint to resume from are added by
    ``tools/train.py`` (:func:`mmretina.engine.hooks.non_finite_message`),
    which knows them.

    Args:
        owner (str): who speaks in the error (``'mmretina.RetinaHead'``).
        cls_scores (list[Tensor]): N x (A*K) x Hi x Wi for each level.
        bbox_preds (list[Tensor]): N x (A*4) x Hi x Wi for each level.
        loss_cls (Tensor): scalar classification loss.
        loss_bbox (Tensor): scalar box loss.
    """
    # fp32 sums: an fp16 map of 10M logits sums past fp16's range.
    sums = [
        m.detach().sum(dtype=torch.float32)
        for m in list(cls_scores) + list(bbox_preds)
    ]
    finite = torch.isfinite(
        torch.stack(sums + [loss_cls.detach().float(),
                            loss_bbox.detach().float()]))
    if bool(finite.all()):
        return
    for name, maps in (('classification scores', cls_scores),
                       ('box deltas', bbox_preds)):
        for level, m in enumerate(maps):
            bad = ~torch.isfinite(m)
            if bad.any():
                raise FloatingPointError(
                    f'{owner}: the {name} of level '
                    f'{level} hold {int(bad.sum())} NaN/inf values, so the '
                    'loss is not finite. The network diverged: lower the '
                    'learning rate, enable gradient clipping '
                    '(optim_wrapper.clip_grad) or check the input '
                    'normalisation.')
    raise FloatingPointError(
        f'{owner}: loss is not finite (loss_cls='
        f'{loss_cls.item()}, loss_bbox={loss_bbox.item()}) although the head '
        'outputs are finite; check the ground-truth boxes and the box coder '
        'settings.')
