"""Sigmoid focal loss (Lin et al., "Focal Loss for Dense Object Detection",
sec. 3.2, eq. 5).

For a binary target t in {0, 1}, p = sigmoid(x) and p_t = p if t == 1 else
1 - p::

    FL(p_t) = -alpha_t * (1 - p_t) ** gamma * log(p_t)

with alpha_t = alpha for t = 1 and 1 - alpha for t = 0 (paper: gamma = 2,
alpha = 0.25). :func:`sigmoid_focal_loss` is this formula, elementwise, as
torchvision's ``ops/focal_loss.py`` writes it (with mmdet's order of
operations, hence mmdet's floats). :class:`FocalLoss` is mmdet's module
around it.

The dense head sums the loss over its classification maps with a fused,
chunked kernel (private ``_fused_focal_loss``, tested against
:func:`sigmoid_focal_loss`), reached through :meth:`FocalLoss.forward_maps`
or :func:`focal_loss_sum`.
"""
from typing import Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

from mmretina.registry import MODELS
from ._fused_focal_loss import focal_loss_sum

__all__ = [
    'FocalLoss', 'sigmoid_focal_loss', 'focal_loss_with_prob',
    'focal_loss_sum', 'cls_maps_to_rows'
]


def sigmoid_focal_loss(pred: Tensor,
                       target: Tensor,
                       gamma: float = 2.0,
                       alpha: float = 0.25) -> Tensor:
    """Elementwise sigmoid focal loss (eq. 5), numerically stable.

    Args:
        pred (Tensor): logits, any shape S.
        target (Tensor): targets in [0, 1] of shape S (one-hot or soft).
        gamma (float): focusing parameter gamma (paper: 2).
        alpha (float): balance of positives alpha (paper: 0.25).

    Returns:
        Tensor: loss of shape S, in the dtype of ``pred`` (computed in at
        least fp32).
    """
    # fp16 / bf16 logits are promoted: (1 - p_t)^gamma underflows in fp16.
    x = pred.float() if pred.dtype in (torch.float16, torch.bfloat16) \
        else pred
    t = target.type_as(x)
    p = torch.sigmoid(x)
    # -log(p_t) is the binary cross-entropy; its logits form is stable for
    # any |x| where log(sigmoid(x)) is not.
    ce_loss = F.binary_cross_entropy_with_logits(x, t, reduction='none')
    one_minus_p_t = (1 - p) * t + p * (1 - t)
    alpha_t = alpha * t + (1 - alpha) * (1 - t)
    loss = alpha_t * one_minus_p_t.pow(gamma) * ce_loss
    return loss.to(pred.dtype)


def focal_loss_with_prob(prob: Tensor,
                         target: Tensor,
                         gamma: float = 2.0,
                         alpha: float = 0.25) -> Tensor:
    """Elementwise focal loss of probabilities (``activated=True``).

    Args:
        prob (Tensor): probabilities in [0, 1], shape S.
        target (Tensor): targets of shape S.

    Returns:
        Tensor: loss of shape S.
    """
    t = target.type_as(prob)
    ce_loss = F.binary_cross_entropy(prob, t, reduction='none')
    one_minus_p_t = (1 - prob) * t + prob * (1 - t)
    alpha_t = alpha * t + (1 - alpha) * (1 - t)
    return alpha_t * one_minus_p_t.pow(gamma) * ce_loss


def cls_maps_to_rows(cls_scores: Sequence[Tensor], labels: Tensor,
                     label_weights: Tensor,
                     num_anchors: int) -> Tuple[Tensor, Tensor, Tensor]:
    """A dense head's classification maps as mmdet's loss rows.

    Args:
        cls_scores (list[Tensor]): N x (A*K) x Hi x Wi for each level.
        labels (Tensor): N x R int64, class index per anchor (K =
            background), R = sum over levels of Hi*Wi*A, anchors level by
            level in mmdet's order ((y * Wi + x) * A + a).
        label_weights (Tensor): N x R per-anchor weights.
        num_anchors (int): A.

    Returns:
        tuple[Tensor, Tensor, Tensor]: (N*R) x K rows, level by level and
        image by image within a level (mmdet's order), with their (N*R,)
        labels and (N*R,) weights.
    """
    num_classes = cls_scores[0].size(1) // num_anchors
    level_sizes = [s.size(2) * s.size(3) * num_anchors for s in cls_scores]
    rows = torch.cat([
        s.permute(0, 2, 3, 1).reshape(-1, num_classes) for s in cls_scores
    ])
    flat_labels = torch.cat(
        [t.reshape(-1) for t in labels.split(level_sizes, dim=1)])
    flat_weights = torch.cat(
        [t.reshape(-1) for t in label_weights.split(level_sizes, dim=1)])
    return rows, flat_labels, flat_weights


def _reduce(loss: Tensor, reduction: str,
            avg_factor: Optional[float]) -> Tensor:
    """mmdet's ``weight_reduce_loss`` rules after weighting."""
    if avg_factor is None:
        if reduction == 'mean':
            return loss.mean()
        if reduction == 'sum':
            return loss.sum()
        return loss
    if reduction == 'mean':
        # mmdet adds eps so that avg_factor = 0 (everything ignored) is safe.
        return loss.sum() / (avg_factor + torch.finfo(torch.float32).eps)
    if reduction == 'none':
        return loss
    raise ValueError('avg_factor can not be used with reduction="sum"')


def _reduce_sum(total: Tensor, numel: int, reduction: str,
                avg_factor: Optional[float]) -> Tensor:
    """:func:`_reduce` of a loss already summed over ``numel`` elements."""
    if reduction == 'mean' and avg_factor is None:
        return total / max(numel, 1)
    return _reduce(total, reduction, avg_factor)


def _broadcast_weight(weight: Tensor, loss: Tensor) -> Tensor:
    """Per-row (N,) or per-element (N*K,) weights as mmdet accepts them."""
    if weight.shape != loss.shape:
        if weight.size(0) == loss.size(0):
            weight = weight.view(-1, 1)
        else:
            if weight.numel() != loss.numel():
                raise ValueError(
                    f'FocalLoss: weight of shape {tuple(weight.shape)} does '
                    f'not match the loss of shape {tuple(loss.shape)}')
            weight = weight.view(loss.size(0), -1)
    if weight.ndim != loss.ndim:
        raise ValueError(
            f'FocalLoss: weight has {weight.ndim} dims, loss has {loss.ndim}')
    return weight


@MODELS.register_module()
class FocalLoss(torch.nn.Module):
    """Sigmoid focal loss with mmdet's ``FocalLoss`` interface.

    Args:
        use_sigmoid (bool): must be True (softmax focal loss is not part of
            RetinaNet).
        gamma (float): focusing parameter; paper sec. 3.2 uses 2.
        alpha (float): positive-class balance; paper sec. 3.2 uses 0.25.
        reduction (str): 'none' | 'mean' | 'sum'.
        loss_weight (float): multiplier of the loss.
        activated (bool): predictions are probabilities, not logits.
    """

    def __init__(self,
                 use_sigmoid: bool = True,
                 gamma: float = 2.0,
                 alpha: float = 0.25,
                 reduction: str = 'mean',
                 loss_weight: float = 1.0,
                 activated: bool = False) -> None:
        super().__init__()
        if use_sigmoid is not True:
            raise ValueError(
                'mmretina.FocalLoss: only the sigmoid focal loss is '
                f'supported (use_sigmoid=True), got use_sigmoid={use_sigmoid}')
        if reduction not in ('none', 'mean', 'sum'):
            raise ValueError(
                "mmretina.FocalLoss: reduction must be 'none', 'mean' or "
                f"'sum', got {reduction!r}")
        self.use_sigmoid = use_sigmoid
        self.gamma = gamma
        self.alpha = alpha
        self.reduction = reduction
        self.loss_weight = loss_weight
        self.activated = activated

    def forward(self,
                pred: Tensor,
                target: Tensor,
                weight: Optional[Tensor] = None,
                avg_factor: Optional[float] = None,
                reduction_override: Optional[str] = None) -> Tensor:
        """Compute the focal loss.

        Args:
            pred (Tensor): (N, K) logits (probabilities if ``activated``).
            target (Tensor): (N,) int labels in [0, K], K = background, or
                (N, K) one-hot / soft targets.
            weight (Tensor, optional): (N,) per-row or (N, K) / (N*K,)
                per-element weights.
            avg_factor (float, optional): divisor for 'mean'.
            reduction_override (str, optional): overrides ``reduction``.

        Returns:
            Tensor: scalar, or (N, K) for 'none'.
        """
        if reduction_override not in (None, 'none', 'mean', 'sum'):
            raise ValueError('mmretina.FocalLoss: reduction_override must be '
                             f'None, none, mean or sum, got '
                             f'{reduction_override!r}')
        reduction = reduction_override or self.reduction
        num_classes = pred.size(-1)
        index_targets = pred.dim() != target.dim()
        if index_targets:
            if target.numel() and (target.min() < 0
                                   or target.max() > num_classes):
                raise ValueError(
                    'mmretina.FocalLoss: label targets must lie in '
                    f'[0, {num_classes}] ({num_classes} = background), got '
                    f'min {int(target.min())}, max {int(target.max())}')
            if (not self.activated and reduction != 'none'
                    and (weight is None or weight.shape == target.shape)):
                # Fast path: no one-hot tensor, analytic gradient.
                w = (torch.ones_like(target, dtype=torch.float32)
                     if weight is None else weight)
                # (N, K) rows as a 1 x K x N x 1 map (a transposed view).
                total = focal_loss_sum([pred.t()[None, :, :, None]],
                                       target[None], w[None], 1, self.gamma,
                                       self.alpha)
                total = _reduce_sum(total, pred.numel(), reduction,
                                    avg_factor)
                return (self.loss_weight * total).to(pred.dtype)
            target = F.one_hot(target, num_classes + 1)[:, :num_classes]
        elif target.shape != pred.shape:
            raise ValueError(
                'mmretina.FocalLoss: one-hot targets must have the shape of '
                f'pred {tuple(pred.shape)}, got {tuple(target.shape)}')
        if self.activated:
            loss = focal_loss_with_prob(pred, target, self.gamma, self.alpha)
        else:
            loss = sigmoid_focal_loss(pred, target, self.gamma, self.alpha)
        if weight is not None:
            loss = loss * _broadcast_weight(weight, loss)
        return self.loss_weight * _reduce(loss, reduction, avg_factor)

    def forward_maps(self,
                     cls_scores: Sequence[Tensor],
                     labels: Tensor,
                     label_weights: Tensor,
                     num_anchors: int,
                     avg_factor: Optional[float] = None) -> Tensor:
        """The loss of a dense head's classification maps, reduced as
        :meth:`forward` would reduce the rows of :func:`cls_maps_to_rows`.

        Logits with a 'sum' or 'mean' reduction (RetinaNet: 'mean' over
        ``avg_factor``, the number of positives) take the fused sum
        (:func:`focal_loss_sum`) on the maps as they are, in fp32 also for
        fp16 / bf16 maps; probabilities (``activated``) and 'none' go
        through :meth:`forward` on the rows.

        Args:
            cls_scores (list[Tensor]): N x (A*K) x Hi x Wi for each level.
            labels (Tensor): N x R int64 class index per anchor, K =
                background; anchors level by level in mmdet's order.
            label_weights (Tensor): N x R per-anchor weights (0: ignored).
            num_anchors (int): A.
            avg_factor (float, optional): divisor for 'mean'.

        Returns:
            Tensor: fp32 scalar (the rows' dtype and shape on the
            :meth:`forward` path).
        """
        if self.activated or self.reduction == 'none':
            return self(*cls_maps_to_rows(cls_scores, labels, label_weights,
                                          num_anchors),
                        avg_factor=avg_factor)
        total = focal_loss_sum(cls_scores, labels, label_weights, num_anchors,
                               self.gamma, self.alpha)
        numel = sum(s.numel() for s in cls_scores)
        # weight before the division: the head's floats since the fused sum
        # was introduced
        return _reduce_sum(self.loss_weight * total, numel, self.reduction,
                           avg_factor)
