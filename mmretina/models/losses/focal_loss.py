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
from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from mmretina.registry import MODELS

# Elements processed at once by the chunked kernels: large enough that the
# Python loop and thread start-up are negligible, small enough that the
# temporaries (a few fp32 copies) stay small next to the maps themselves.
_CHUNK = 1 << 22


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


def _pos_loss_and_grad(x: Tensor, gamma: float, alpha: float,
                       need_grad: bool):
    """Loss and d loss / dx of the t = 1 branch, elementwise.

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


def _neg_loss_and_grad(x: Tensor, gamma: float, grad_out: Optional[Tensor]):
    """Loss and d loss / dx of the t = 0 branch, elementwise.

    FL = (1 - alpha) p^gamma softplus(x);
    dFL/dx = (1 - alpha) p^gamma (gamma (1 - p) softplus(x) + p).

    This runs on every (anchor, class) pair, so it is written for few
    passes over memory; the (1 - alpha) factor is left to the caller.

    Args:
        x (Tensor): fp32 logits.
        grad_out (Tensor, optional): where to write dFL/dx / (1 - alpha),
            same shape as ``x``; None skips the gradient.

    Returns:
        Tensor: FL / (1 - alpha), same shape as ``x``.
    """
    p = torch.sigmoid(x)
    sp = F.softplus(x)
    p_gamma = p * p if gamma == 2.0 else p.pow(gamma)
    if grad_out is not None:
        # gamma (1 - p) sp + p  =  p + gamma * sp - gamma * p * sp
        t = torch.addcmul(p, sp, 1 - p, value=gamma)
        torch.mul(p_gamma, t, out=grad_out)
    return sp.mul_(p_gamma)


def _chunks(num_planes: int, plane_len: int, plane_elems: int):
    """(plane start, plane end, offset start, offset end) of chunks of about
    ``_CHUNK`` elements over ``num_planes`` planes of ``plane_len`` columns.
    Large chunks keep intra-op threads busy; bounded ones keep temporaries
    small."""
    if plane_elems >= _CHUNK:
        step = max(1, plane_len * _CHUNK // plane_elems)
        for p in range(num_planes):
            for s0 in range(0, plane_len, step):
                yield p, p + 1, s0, min(plane_len, s0 + step)
    else:
        per = max(1, _CHUNK // max(plane_elems, 1))
        for p0 in range(0, num_planes, per):
            yield p0, min(num_planes, p0 + per), 0, plane_len


class FocalLossSum(torch.autograd.Function):
    """Weighted sum of the focal loss over the classification maps of a
    dense head, in their native N x (A*K) x H x W layout.

    Label-index targets, one weight per anchor, no one-hot tensor and no
    permuted copy of the maps. The gradient is analytic, computed in forward
    chunk by chunk when a map needs it, so backward is one multiply.

    Inputs of :meth:`forward`:
        labels (Tensor): (B, N) int64 class index in [0, K) for positives,
            K (background) otherwise; N = sum over levels of H_l*W_l*A, in
            mmdet's anchor order ((y * W + x) * A + a) per level.
        weights (Tensor): (B, N) anchor weights (0 = ignored).
        num_anchors (int): A.
        gamma, alpha (float): focal parameters.
        *logits (Tensor): B x (A*K) x H_l x W_l per level.

    Returns:
        Tensor: scalar fp32 sum of weight * FL over all anchors and classes.
    """

    @staticmethod
    def forward(ctx, labels: Tensor, weights: Tensor, num_anchors: int,
                gamma: float, alpha: float, *logits: Tensor) -> Tensor:
        need_grad = any(ctx.needs_input_grad[5:])
        neg_total = torch.zeros((), dtype=torch.float32, device=labels.device)
        pos_total = torch.zeros((), dtype=torch.float32, device=labels.device)
        grads = []
        start = 0
        for logit in logits:
            # channels_last (or otherwise strided) maps: the chunked views
            # below need the NCHW layout
            logit = logit.contiguous()
            num_imgs, channels, height, width = logit.shape
            num_classes = channels // num_anchors
            hw = height * width
            rows = hw * num_anchors
            # (B, A, HW) labels and weights in the maps' layout.
            lab = labels[:, start:start + rows].view(
                num_imgs, hw, num_anchors).transpose(1, 2)
            w = weights[:, start:start + rows].view(
                num_imgs, hw, num_anchors).transpose(1, 2).float()
            start += rows
            x_all = logit.reshape(num_imgs, num_anchors, num_classes, hw)
            grad = torch.empty(x_all.shape, dtype=torch.float32,
                               device=logit.device) if need_grad else None
            # Chunks of about _CHUNK elements: several whole (image, anchor)
            # planes on small levels, part of one plane on large ones.
            planes = x_all.view(num_imgs * num_anchors, num_classes, hw)
            w_planes = w.reshape(num_imgs * num_anchors, hw)
            g_planes = None if grad is None else grad.view(planes.shape)
            per_plane = num_classes * hw
            for p0, p1, s0, s1 in _chunks(num_imgs * num_anchors, hw,
                                          per_plane):
                x = planes[p0:p1, :, s0:s1].float()
                wc = w_planes[p0:p1, None, s0:s1]
                g = None if g_planes is None else g_planes[p0:p1, :, s0:s1]
                loss = _neg_loss_and_grad(x, gamma, g)
                neg_total += loss.mul_(wc).sum()
                if g is not None:
                    g.mul_(wc * (1 - alpha))
            # Positives swap one class per anchor to the t = 1 branch.
            b_idx, a_idx, s_idx = (lab < num_classes).nonzero().unbind(1)
            if b_idx.numel():
                cls = lab[b_idx, a_idx, s_idx]
                xp = x_all[b_idx, a_idx, cls, s_idx].float()
                wp = w[b_idx, a_idx, s_idx]
                lp, gp = _pos_loss_and_grad(xp, gamma, alpha, need_grad)
                ln = (1 - alpha) * _neg_loss_and_grad(xp, gamma, None)
                pos_total += ((lp - ln) * wp).sum()
                if need_grad:
                    grad[b_idx, a_idx, cls, s_idx] = gp * wp
            # Kept in fp32 until multiplied by the incoming gradient: under
            # autocast with a loss scale, an fp16 copy would flush the small
            # per-anchor gradients (< 6e-8) to zero before the scale.
            grads.append(None if grad is None else grad.view(logit.shape))
        ctx.save_for_backward(*[g for g in grads if g is not None])
        ctx.has_grad = [g is not None for g in grads]
        ctx.dtypes = [logit.dtype for logit in logits]
        return (1 - alpha) * neg_total + pos_total

    @staticmethod
    def backward(ctx, grad_out: Tensor):
        saved = iter(ctx.saved_tensors)
        # The usual upstream gradient is exactly 1: hand the saved gradient
        # over (cast to the map's dtype) instead of scaling a copy first.
        unit = bool(grad_out == 1)
        grads = []
        for has, dtype in zip(ctx.has_grad, ctx.dtypes):
            g = next(saved) if has else None
            if g is not None:
                if not unit:
                    g = g * grad_out.float()
                g = g.to(dtype)
            grads.append(g)
        return (None, None, None, None, None) + tuple(grads)


def focal_loss_sum(logits: Sequence[Tensor],
                   labels: Tensor,
                   weights: Tensor,
                   num_anchors: int = 1,
                   gamma: float = 2.0,
                   alpha: float = 0.25) -> Tensor:
    """Sum over anchors and classes of weight * FL, on dense-head maps.

    Args:
        logits (Sequence[Tensor]): B x (A*K) x H_l x W_l per level.
        labels (Tensor): (B, N) class index per anchor, K = background,
            anchors in mmdet's order level by level.
        weights (Tensor): (B, N) per-anchor weight.
        num_anchors (int): A.

    Returns:
        Tensor: fp32 scalar.
    """
    return FocalLossSum.apply(labels, weights, num_anchors, float(gamma),
                              float(alpha), *logits)


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
                # (N, K) rows as a 1 x K x N x 1 map (a transposed view).
                total = focal_loss_sum([pred.t()[None, :, :, None]],
                                       target[None], w[None], 1, self.gamma,
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
