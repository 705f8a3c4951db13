"""Sigmoid focal loss (Lin et al., "Focal Loss for Dense Object Detection").

The paper's eq. 5 for a binary target t in {0, 1}, with p = sigmoid(x) and
p_t = p if t == 1 else 1 - p::

    FL(p_t) = -alpha_t * (1 - p_t) ** gamma * log(p_t)

Two forms live here:

* :func:`sigmoid_focal_loss` — the elementwise loss of logits against dense
  (one-hot or soft) targets, used by :class:`FocalLoss` and for
  ``reduction='none'``;
* :class:`FocalLossSum` / :func:`focal_loss_sum` — the same loss reduced to a
  sum for label-index targets, computed in chunks with an analytic gradient.
  It never materialises a one-hot target, keeps no per-element temporaries for
  backward and accumulates in fp32, which is what makes the dense head's loss
  step fast and small.
"""
from typing import List, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from mmretina.registry import MODELS

# Elements processed at once by the chunked kernels: large enough that the
# Python loop is negligible, small enough that temporaries stay in cache.
_CHUNK = 1 << 18


def _alpha_weight(target: Tensor, alpha: float) -> Tensor:
    """alpha_t of eq. 5: alpha for positives, 1 - alpha for negatives."""
    return alpha * target + (1 - alpha) * (1 - target)


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
    p = x.sigmoid()
    # 1 - p_t in the paper's notation.
    one_minus_pt = (1 - p) * t + p * (1 - t)
    # -log(p_t) is binary cross-entropy; the logits form is stable for any |x|.
    ce = F.binary_cross_entropy_with_logits(x, t, reduction='none')
    loss = _alpha_weight(t, alpha) * one_minus_pt.pow(gamma) * ce
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
    one_minus_pt = (1 - prob) * t + prob * (1 - t)
    ce = F.binary_cross_entropy(prob, t, reduction='none')
    return _alpha_weight(t, alpha) * one_minus_pt.pow(gamma) * ce


def _neg_loss_and_grad(x: Tensor, gamma: float, alpha: float,
                       need_grad: bool):
    """Loss and d loss / dx of the t = 0 branch, elementwise, fp32 input.

    FL = (1 - alpha) p^gamma softplus(x);
    dFL/dx = (1 - alpha) p^gamma (gamma (1 - p) softplus(x) + p).
    """
    p = torch.sigmoid(x)
    sp = F.softplus(x)
    p_gamma = p.pow(gamma)
    loss = (1 - alpha) * p_gamma * sp
    if not need_grad:
        return loss, None
    grad = (1 - alpha) * p_gamma * (gamma * (1 - p) * sp + p)
    return loss, grad


def _pos_loss_and_grad(x: Tensor, gamma: float, alpha: float,
                       need_grad: bool):
    """Loss and d loss / dx of the t = 1 branch, elementwise, fp32 input.

    FL = alpha (1 - p)^gamma softplus(-x);
    dFL/dx = -alpha (1 - p)^gamma (gamma p softplus(-x) + 1 - p).
    """
    p = torch.sigmoid(x)
    sp = F.softplus(-x)
    q_gamma = (1 - p).pow(gamma)
    loss = alpha * q_gamma * sp
    if not need_grad:
        return loss, None
    grad = -alpha * q_gamma * (gamma * p * sp + 1 - p)
    return loss, grad


class FocalLossSum(torch.autograd.Function):
    """Weighted sum of the focal loss over several logit maps.

    Label-index targets, one anchor weight per row, no one-hot tensor. The
    gradient is analytic and computed in forward (chunk by chunk) only when
    an input needs it, so backward is a multiply.

    Inputs of :meth:`forward`:
        labels (Tensor): (R,) int64, class index in [0, K) for positives,
            K (background) otherwise; R = total rows over all maps.
        weights (Tensor): (R,) float anchor weights (0 = ignored).
        gamma, alpha (float): focal parameters.
        *logits (Tensor): maps of shape (R_i, K) whose rows, concatenated,
            align with ``labels``.

    Returns:
        Tensor: scalar fp32 sum of weight * FL over all rows and classes.
    """

    @staticmethod
    def forward(ctx, labels: Tensor, weights: Tensor, gamma: float,
                alpha: float, *logits: Tensor) -> Tensor:
        need_grad = any(ctx.needs_input_grad[4:])
        total = torch.zeros((), dtype=torch.float32, device=labels.device)
        grads: List[Optional[Tensor]] = []
        start = 0
        for logit in logits:
            rows, num_classes = logit.shape
            lab = labels[start:start + rows]
            w = weights[start:start + rows].float()
            start += rows
            grad = torch.empty_like(logit) if need_grad else None
            rows_per_chunk = max(1, _CHUNK // max(num_classes, 1))
            for r0 in range(0, rows, rows_per_chunk):
                r1 = min(rows, r0 + rows_per_chunk)
                x = logit[r0:r1].float()
                wc = w[r0:r1]
                loss, g = _neg_loss_and_grad(x, gamma, alpha, need_grad)
                total += (loss.sum(1) * wc).sum()
                # Rows with a foreground label swap one entry to the t = 1
                # branch: subtract its negative loss, add its positive loss.
                pos = (lab[r0:r1] < num_classes).nonzero().squeeze(1)
                if pos.numel():
                    cls = lab[r0:r1][pos]
                    xp = x[pos, cls]
                    wp = wc[pos]
                    lp, gp = _pos_loss_and_grad(xp, gamma, alpha, need_grad)
                    total += ((lp - loss[pos, cls]) * wp).sum()
                    if need_grad:
                        g[pos, cls] = gp
                if need_grad:
                    grad[r0:r1] = (g * wc[:, None]).to(logit.dtype)
            grads.append(grad)
        ctx.save_for_backward(*[g for g in grads if g is not None])
        return total

    @staticmethod
    def backward(ctx, grad_out: Tensor):
        grads = ctx.saved_tensors
        return (None, None, None, None) + tuple(
            g * grad_out.to(g.dtype) for g in grads)


def focal_loss_sum(logits: Sequence[Tensor],
                   labels: Tensor,
                   weights: Tensor,
                   gamma: float = 2.0,
                   alpha: float = 0.25) -> Tensor:
    """Sum over rows r and classes k of weights[r] * FL(logits[r, k]).

    Args:
        logits (Sequence[Tensor]): maps of shape (R_i, K); their rows in
            order align with ``labels``.
        labels (Tensor): (R,) class index, K = background.
        weights (Tensor): (R,) per-row weight.

    Returns:
        Tensor: fp32 scalar.
    """
    return FocalLossSum.apply(labels, weights, float(gamma), float(alpha),
                              *logits)


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
                total = focal_loss_sum([pred], target, w, self.gamma,
                                       self.alpha)
                if reduction == 'mean' and avg_factor is None:
                    total = total / max(pred.numel(), 1)
                else:
                    total = _reduce(total, reduction, avg_factor)
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
