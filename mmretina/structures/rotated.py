"""Rotated boxes: ``(cx, cy, w, h, angle)`` in pixels and radians, the
representation of mmrotate's ``RotatedBoxes`` (its angle conventions
``le90``, ``oc``, ``le135``). mmretina uses mmrotate's box types and
converters rather than copies (:func:`mmretina.utils.mmrotate.
require_mmrotate`); this module is the thin layer the models, the data
tools and the inference code share:

* :func:`rotated_iou`: mmrotate's ``rbbox_overlaps`` arithmetic (widths and
  heights clamped to 1e-3, centres to +-1e7, then mmcv's
  ``box_iou_rotated``), pairwise or aligned, batched over leading dims; the
  aligned and pairwise kernels run the same per-pair function, so both give
  identical floats for the same pair;
* :func:`rbox_corners`: the four corners (mmrotate's ``rbox2qbox`` order);
* :func:`corners_to_rbox`: the minimum-area rectangle of four or more
  points (OpenCV's ``minAreaRect``, as mmrotate's ``qbox2rbox``),
  regularised to an angle convention;
* :func:`rbox_to_hbox`: the enclosing axis-aligned box.
"""
from typing import Optional

import numpy as np
import torch
from torch import Tensor

from mmretina.utils.mmrotate import require_mmrotate

__all__ = ['rotated_iou', 'rbox_corners', 'corners_to_rbox',
           'min_area_rboxes', 'rbox_to_hbox', 'regularize_rboxes',
           'ANGLE_VERSIONS']

ANGLE_VERSIONS = ('le90', 'oc', 'le135')


def _clamped(boxes: Tensor) -> Tensor:
    out = boxes.detach().clone()
    out[..., 2:4].clamp_(min=1e-3)
    out[..., :2].clamp_(min=-1e7, max=1e7)
    return out


def rotated_iou(boxes1: Tensor, boxes2: Tensor, aligned: bool = False,
                mode: str = 'iou') -> Tensor:
    """IoU (or IoF, ``mode='iof'``: over the area of ``boxes1``) of rotated
    boxes, as mmrotate's ``RBboxOverlaps2D``.

    Args:
        boxes1 (Tensor): (..., N, 5).
        boxes2 (Tensor): (..., M, 5); with ``aligned``, M == N.
        aligned (bool): box i with box i only.

    Returns:
        Tensor: (..., N, M), or (..., N) with ``aligned``; fp32.
    """
    from mmcv.ops import box_iou_rotated
    if boxes1.size(-1) != 5 or boxes2.size(-1) != 5:
        raise ValueError('rotated_iou: boxes must be (..., 5) (cx, cy, w, h, '
                         f'angle), got {tuple(boxes1.shape)} and '
                         f'{tuple(boxes2.shape)}')
    lead = boxes1.shape[:-2]
    n, m = boxes1.size(-2), boxes2.size(-2)
    if aligned and n != m:
        raise ValueError(f'rotated_iou(aligned=True): {n} != {m} boxes')
    shape = (*lead, n) if aligned else (*lead, n, m)
    if n == 0 or m == 0 or any(d == 0 for d in lead):
        return boxes1.new_zeros(shape, dtype=torch.float32)
    b1 = _clamped(boxes1.float()).reshape(-1, n, 5)
    b2 = _clamped(boxes2.float()).expand(*lead, m, 5).reshape(-1, m, 5)
    out = [box_iou_rotated(x, y, mode, aligned) for x, y in zip(b1, b2)]
    return torch.stack(out).reshape(shape)


def rbox_corners(boxes: Tensor) -> Tensor:
    """Corners of rotated boxes, mmrotate's ``rbox2qbox`` order.

    Args:
        boxes (Tensor): (..., 5).

    Returns:
        Tensor: (..., 4, 2) (x, y) corners.
    """
    require_mmrotate('rotated box corners', models=False)
    from mmrotate.structures.bbox import rbox2qbox
    return rbox2qbox(boxes).reshape(*boxes.shape[:-1], 4, 2)


def rbox_to_hbox(boxes: Tensor) -> Tensor:
    """(..., 5) rotated boxes -> (..., 4) enclosing (x1, y1, x2, y2)."""
    require_mmrotate('rotated boxes', models=False)
    from mmrotate.structures.bbox import rbox2hbox
    return rbox2hbox(boxes)


def regularize_rboxes(boxes: Tensor, angle_version: str) -> Tensor:
    """mmrotate's ``RotatedBoxes.regularize_boxes``: the same rectangles
    with angles in the range of ``angle_version`` (le90: [-pi/2, pi/2) and
    w >= h; oc: (0, pi/2]; le135: [-pi/4, 3pi/4))."""
    if angle_version not in ANGLE_VERSIONS:
        raise ValueError(f'angle_version must be one of {ANGLE_VERSIONS}, '
                         f'got {angle_version!r}')
    require_mmrotate('rotated boxes', models=False)
    from mmrotate.structures.bbox import RotatedBoxes
    return RotatedBoxes(boxes).regularize_boxes(angle_version)


def corners_to_rbox(points, angle_version: Optional[str] = 'le90') -> Tensor:
    """Minimum-area rotated rectangle of each point set (OpenCV's
    ``minAreaRect``, as mmrotate's ``qbox2rbox``).

    Args:
        points (Tensor | ndarray): (M, P, 2) with P >= 3 points per set
            (four corners, or a polygon's vertices), or (M, 8).
        angle_version (str, optional): regularise to this convention; None
            keeps OpenCV's angle.

    Returns:
        Tensor: (M, 5) float32 (cx, cy, w, h, angle).
    """
    import cv2
    pts = np.asarray(points.detach().cpu() if isinstance(points, Tensor)
                     else points, dtype=np.float32)
    if pts.ndim == 2 and pts.shape[1] == 8:
        pts = pts.reshape(-1, 4, 2)
    if pts.ndim != 3 or pts.shape[-1] != 2 or pts.shape[1] < 3:
        raise ValueError('corners_to_rbox: points must be (M, P, 2) with '
                         f'P >= 3 or (M, 8), got {pts.shape}')
    rows = []
    for p in pts:
        (x, y), (w, h), angle = cv2.minAreaRect(p)
        rows.append([x, y, w, h, angle / 180 * np.pi])
    out = torch.tensor(rows, dtype=torch.float32).reshape(-1, 5)
    if angle_version is not None and len(out):
        out = regularize_rboxes(out, angle_version)
    return out


def min_area_rboxes(coords: np.ndarray,
                    which: np.ndarray,
                    n: int,
                    angle_version: str = 'le90') -> np.ndarray:
    """The minimum-area rectangle of each of ``n`` point sets, in float64.

    The rectangle is the one :func:`corners_to_rbox` picks (OpenCV's ``minAreaRect``, as mmrotate's
    ``qbox2rbox``), whose float32 arithmetic leaves errors of 1e-5 px at
    100 px from the origin. One side of a minimum-area rectangle lies along
    an edge of the points' convex hull (Freeman and Shapira, 1975), so the
    angle is taken from the hull edge nearest OpenCV's, and the rectangle's
    extent from the float64 projections of the points on its axes.

    Args:
        coords (ndarray): V x 2 points ``(x, y)`` in pixels.
        which (ndarray): (V,) the set of each point, in ``[0, n)``,
            non-decreasing.
        n (int): the number of sets.
        angle_version (str): the angle convention of the result.

    Returns:
        ndarray: n x 5 float64 ``(cx, cy, w, h, angle)``; NaN for a set with
        a non-finite point or no point.
    """
    import shapely
    coords = np.asarray(coords, np.float64).reshape(-1, 2)
    which = np.asarray(which, np.int64).reshape(-1)
    out = np.full((n, 5), np.nan)
    bad = np.zeros(n, bool)
    np.logical_or.at(bad, which, ~np.isfinite(coords).all(axis=1))
    keep = ~bad[which]
    pts, sets = coords[keep], which[keep]
    if not len(pts):
        return out
    ids, first, counts = np.unique(sets, return_index=True,
                                   return_counts=True)
    dense = np.searchsorted(ids, sets)  # 0 .. len(ids) - 1
    # each set about its first point: small numbers for OpenCV's float32
    origin = pts[first]
    rel = pts - origin[dense]
    theta = np.zeros(len(ids))
    for p in np.unique(counts):
        members = counts == p
        group = rel[members[dense]].reshape(-1, p, 2)
        if p < 3:  # a point or a segment: repeat the last point
            group = np.concatenate(
                [group, np.repeat(group[:, -1:], 3 - p, axis=1)], axis=1)
        theta[members] = corners_to_rbox(group, None)[:, 4].double().numpy()
    # the hull edge nearest OpenCV's angle (modulo 90 degrees)
    hulls = shapely.convex_hull(shapely.multipoints(rel, indices=dense))
    hc, hi = shapely.get_coordinates(hulls, return_index=True)
    edge = hc[1:] - hc[:-1]
    real = (hi[1:] == hi[:-1]) & (np.hypot(edge[:, 0], edge[:, 1]) > 0)
    edge, owner = edge[real], hi[1:][real]
    delta = np.mod(np.arctan2(edge[:, 1], edge[:, 0]) - theta[owner]
                   + np.pi / 4, np.pi / 2) - np.pi / 4
    order = np.lexsort((np.abs(delta), owner))
    owners, nearest = np.unique(owner[order], return_index=True)
    theta[owners] += delta[order][nearest]
    cos, sin = np.cos(theta)[dense], np.sin(theta)[dense]
    u = rel[:, 0] * cos + rel[:, 1] * sin
    v = rel[:, 1] * cos - rel[:, 0] * sin
    lo_u, hi_u = np.full(len(ids), np.inf), np.full(len(ids), -np.inf)
    lo_v, hi_v = lo_u.copy(), hi_u.copy()
    np.minimum.at(lo_u, dense, u)
    np.maximum.at(hi_u, dense, u)
    np.minimum.at(lo_v, dense, v)
    np.maximum.at(hi_v, dense, v)
    mid_u, mid_v = (lo_u + hi_u) / 2, (lo_v + hi_v) / 2
    c, s = np.cos(theta), np.sin(theta)
    boxes = np.stack([origin[:, 0] + mid_u * c - mid_v * s,
                      origin[:, 1] + mid_u * s + mid_v * c,
                      hi_u - lo_u, hi_v - lo_v, theta], axis=1)
    out[ids] = regularize_rboxes(torch.from_numpy(boxes),
                                 angle_version).numpy()
    return out
