"""The fused focal loss of the dense head: the sum of eq. 5 over the
classification maps, with an analytic gradient.

Same loss as the reference :func:`~.focal_loss.sigmoid_focal_loss`, tested
against it (``tests/models/losses/test_fused_focal_loss.py``), but it never
materialises a one-hot target or a permuted copy of the maps, keeps no
per-element temporaries for backward, accumulates in fp32 and works in
chunks of bounded memory, which is what makes the head's loss step fast and
small. Private: use :meth:`~.focal_loss.FocalLoss.forward_maps` or
:func:`focal_loss_sum`.

For a target t and p = sigmoid(x), eq. 5 splits into two branches::

    t = 0:  FL = (1 - alpha) p^gamma softplus(x)
    t = 1:  FL = alpha (1 - p)^gamma softplus(-x)

Every (anchor, class) pair is first summed as a negative (the bulk of the
work, one pass over the maps); the one positive class of each positive
anchor is then swapped to the t = 1 branch.
"""
from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

# Elements processed at once by the chunked kernels: large enough that the
# Python loop and thread start-up are negligible, small enough that the
# temporaries (a few fp32 copies) stay small next to the maps themselves.
_CHUNK = 1 << 22


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
