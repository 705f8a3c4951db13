"""Intersection over union of axis-aligned boxes, the one implementation in
mmretina.

Boxes are ``(x1, y1, x2, y2)`` in pixels (any one coordinate system shared by
both arguments: the padded input, an image, a raster window). The arithmetic
is that of mmdet's ``bbox_overlaps`` (``mmdet.structures.bbox``) in 'iou'
mode, so the floats are the same::

    overlap = max(0, min(x2) - max(x1)) * max(0, min(y2) - max(y1))
    iou = overlap / max(area1 + area2 - overlap, eps),   eps = 1e-6

Areas are not clamped: a degenerate box (x2 < x1) has a negative area, as in
mmdet, which keeps assignment parity on such boxes.

* :func:`pairwise_iou`: every box of one set with every box of another,
  N x M (detectron2's ``pairwise_iou``, batched over leading dimensions);
* :func:`aligned_iou`: box i of one set with box i of the other,
  elementwise with broadcasting (mmdet's ``is_aligned=True``).

:func:`pairwise_iou` is :func:`aligned_iou` on broadcast views, so the two
give bit-identical values for the same pair.
"""
from typing import Optional

import torch
from torch import Tensor

__all__ = ['pairwise_iou', 'aligned_iou']

# mmdet's bbox_overlaps eps: the union of two empty boxes divides by it.
_EPS = 1e-6


def aligned_iou(boxes1: Tensor,
                boxes2: Tensor,
                workspace: Optional[Tensor] = None) -> Tensor:
    """IoU of corresponding boxes, elementwise.

    Args:
        boxes1 (Tensor): S1 x 4 boxes (x1, y1, x2, y2), pixels.
        boxes2 (Tensor): S2 x 4 boxes in the same coordinates; S1 and S2
            broadcast to S.
        workspace (Tensor, optional): flat buffer of at least 3 * prod(S)
            elements of the result dtype to compute in; the result is then a
            view of it. Callers that loop over chunks pass one buffer for
            all of them, so that memory does not grow with fragmented
            per-chunk allocations.

    Returns:
        Tensor: S, the IoU in [0, 1] (0 for disjoint boxes), in the promoted
        dtype of the inputs.
    """
    shape = torch.broadcast_shapes(boxes1.shape[:-1], boxes2.shape[:-1])
    size = shape.numel()
    dtype = torch.result_type(boxes1, boxes2)
    if workspace is None:
        workspace = boxes1.new_empty(3 * size, dtype=dtype)
    elif workspace.numel() < 3 * size:
        raise ValueError(
            f'aligned_iou: workspace holds {workspace.numel()} elements, '
            f'needs 3 * {size}; pass a larger buffer or none')
    w, h, tmp = (workspace[i * size:(i + 1) * size].view(shape)
                 for i in range(3))
    area1 = (boxes1[..., 2] - boxes1[..., 0]) * (
        boxes1[..., 3] - boxes1[..., 1])
    area2 = (boxes2[..., 2] - boxes2[..., 0]) * (
        boxes2[..., 3] - boxes2[..., 1])
    torch.minimum(boxes1[..., 2], boxes2[..., 2], out=w)
    w.sub_(torch.maximum(boxes1[..., 0], boxes2[..., 0],
                         out=tmp)).clamp_(min=0)
    torch.minimum(boxes1[..., 3], boxes2[..., 3], out=h)
    h.sub_(torch.maximum(boxes1[..., 1], boxes2[..., 1],
                         out=tmp)).clamp_(min=0)
    overlap = w.mul_(h)
    union = torch.add(area1, area2, out=h)
    union.sub_(overlap).clamp_(min=_EPS)
    return overlap.div_(union)


def pairwise_iou(boxes1: Tensor,
                 boxes2: Tensor,
                 workspace: Optional[Tensor] = None) -> Tensor:
    """IoU of every box of ``boxes1`` with every box of ``boxes2``.

    Args:
        boxes1 (Tensor): ... x N x 4 boxes (x1, y1, x2, y2), pixels; leading
            dimensions (e.g. B images of padded ground truths) are batched.
        boxes2 (Tensor): M x 4 boxes in the same coordinates, shared by all
            leading indices of ``boxes1`` (e.g. the anchors).
        workspace (Tensor, optional): as in :func:`aligned_iou`, at least
            3 * (... x N x M) elements.

    Returns:
        Tensor: ... x N x M.
    """
    if boxes2.dim() != 2:
        raise ValueError('pairwise_iou: boxes2 must be M x 4, got shape '
                         f'{tuple(boxes2.shape)}')
    return aligned_iou(boxes1[..., :, None, :], boxes2, workspace)
