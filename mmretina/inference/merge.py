"""Merging the detections of the windows of one image (pure functions of
boxes, scores, labels and the windows of :mod:`mmretina.geo.windows`).

Boxes are in image coordinates, either axis-aligned (M, 4) ``(x1, y1, x2,
y2)`` or rotated (M, 5) ``(cx, cy, w, h, angle)`` (mmrotate's boxes, angle in
radians) from an oriented model; every function takes both, told apart by
the last dimension (:func:`is_rotated`).

1. :func:`drop_cut_boxes`: a box that touches an *inner* edge of its window
   (an edge that is not the image border) may show only part of an object.
   It is dropped when another window holds a detection of the same class
   that is *whole* there (touches none of that window's inner edges) and
   covers at least ``min_cover`` of the cut box's area. A cut box that no
   other window sees whole is kept: a truncated box is better than none.

   Rotated form: a rotated box touches an inner edge when one of its four
   corners lies within ``border`` px of that edge or beyond it, which is
   the axis-aligned rule applied to the box's enclosing axis-aligned box
   (its corners' extreme x and y, :func:`~mmretina.structures.rotated.
   rbox_to_hbox`). The rectangle a model draws around a cut object reaches
   the window's edge at a corner, not along a side, so a test of the
   centre or of the sides would miss it. The cover is the rotated
   intersection over the cut box's area (mmcv's ``box_iou_rotated`` in
   ``iof`` mode, :func:`~mmretina.structures.rotated.rotated_iou`).
2. then one of
   * :func:`merge_nms`: class-aware NMS (mmcv's ``batched_nms``; rotated
     boxes: ``nms_rotated``, which suppresses at IoU >= the threshold where
     ``nms`` needs IoU > it), or
   * :func:`weighted_boxes_fusion`: boxes of one class that overlap by more
     than ``iou_thr`` are fused into their score-weighted mean (Solovyev et
     al., "Weighted boxes fusion", 2021), the score being the mean score
     times ``min(n, T) / T``, with n the cluster's boxes and T the number of
     windows that contain the fused box whole. Axis-aligned boxes only: a
     mean of angles is not defined for boxes whose angle wraps around.
"""
from typing import List, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import Tensor

from mmretina.geo.windows import Window
from mmretina.structures import pairwise_iou
from mmretina.structures.rotated import rbox_to_hbox, rotated_iou

__all__ = [
    'is_rotated', 'shift_boxes', 'cut_mask', 'drop_cut_boxes',
    'merge_nms', 'weighted_boxes_fusion', 'window_neighbours',
    'drop_cut_boxes_local', 'merge_nms_local', 'LOCAL_MERGE_MIN'
]


def is_rotated(bboxes: Tensor) -> bool:
    """Whether ``bboxes`` are rotated boxes: (..., 5) ``(cx, cy, w, h,
    angle)`` rather than (..., 4) ``(x1, y1, x2, y2)``.

    Raises:
        ValueError: the last dimension is neither 4 nor 5.
    """
    if bboxes.dim() == 0 or bboxes.size(-1) not in (4, 5):
        raise ValueError('boxes must be (M, 4) (x1, y1, x2, y2) or (M, 5) '
                         f'(cx, cy, w, h, angle), got {tuple(bboxes.shape)}')
    return bboxes.size(-1) == 5


def shift_boxes(bboxes: Tensor, dx: float, dy: float) -> Tensor:
    """(M, 4) or (M, 5) boxes moved by ``(dx, dy)`` px (a window's offset:
    window pixels -> image pixels); sizes and angles unchanged."""
    shift = [dx, dy] * 2 if not is_rotated(bboxes) else [dx, dy, 0, 0, 0]
    return bboxes + bboxes.new_tensor(shift)


def cut_mask(bboxes: Tensor, window: Window, width: int, height: int,
             border: float = 2.0) -> Tensor:
    """Which boxes of a window touch one of its inner edges.

    Args:
        bboxes (Tensor): (M, 4) or rotated (M, 5) boxes in image
            coordinates; a rotated box is tested by its enclosing
            axis-aligned box (its corners, see the module's rule).
        window (Window): the window the boxes were detected in.
        width, height (int): image size (edges on the image border are not
            inner edges).
        border (float): a box within this many px of an inner edge touches
            it.

    Returns:
        Tensor: (M,) bool.
    """
    if is_rotated(bboxes):
        bboxes = rbox_to_hbox(bboxes)
    cut = torch.zeros(len(bboxes), dtype=torch.bool, device=bboxes.device)
    if window.x0 > 0:
        cut |= bboxes[:, 0] <= window.x0 + border
    if window.y0 > 0:
        cut |= bboxes[:, 1] <= window.y0 + border
    if window.x1 < width:
        cut |= bboxes[:, 2] >= window.x1 - border
    if window.y1 < height:
        cut |= bboxes[:, 3] >= window.y1 - border
    return cut


def _intersection(a: Tensor, b: Tensor) -> Tensor:
    """(M, N) intersection areas of boxes a (M, 4) and b (N, 4)."""
    lt = torch.maximum(a[:, None, :2], b[None, :, :2])
    rb = torch.minimum(a[:, None, 2:], b[None, :, 2:])
    wh = (rb - lt).clamp(min=0)
    return wh[..., 0] * wh[..., 1]


def _area(a: Tensor) -> Tensor:
    return (a[:, 2] - a[:, 0]).clamp(min=0) * (a[:, 3] - a[:, 1]).clamp(min=0)


def drop_cut_boxes(bboxes: Tensor,
                   labels: Tensor,
                   tile_ids: Tensor,
                   cut: Tensor,
                   min_cover: float = 0.5,
                   chunk: int = 256) -> Tensor:
    """Keep-mask that drops cut boxes another window sees whole.

    Args:
        bboxes (Tensor): (M, 4) or rotated (M, 5) boxes of all windows,
            image coordinates.
        labels (Tensor): (M,) class indices.
        tile_ids (Tensor): (M,) window index of each box.
        cut (Tensor): (M,) bool, the box touches an inner edge of its
            window (:func:`cut_mask`).
        min_cover (float): the whole box must cover at least this fraction
            of the cut box's area.
        chunk (int): cut boxes compared at a time (bounds memory).

    Returns:
        Tensor: (M,) bool, True for the boxes to keep.
    """
    keep = torch.ones(len(bboxes), dtype=torch.bool, device=bboxes.device)
    cut_idx = cut.nonzero().squeeze(1)
    whole_idx = (~cut).nonzero().squeeze(1)
    if cut_idx.numel() == 0 or whole_idx.numel() == 0:
        return keep
    # in chunks of cut boxes: the pairwise matrices of a large raster's
    # thousands of boxes would otherwise take gigabytes
    for start in range(0, cut_idx.numel(), chunk):
        idx = cut_idx[start:start + chunk]
        keep[idx[_seen_whole(bboxes, labels, tile_ids, idx, whole_idx,
                             min_cover)]] = False
    return keep


def _seen_whole(bboxes: Tensor, labels: Tensor, tile_ids: Tensor,
                cut_idx: Tensor, whole_idx: Tensor,
                min_cover: float) -> Tensor:
    """(len(cut_idx),) bool: the cut box is covered, at least ``min_cover``
    of its area, by one of the whole boxes ``whole_idx`` of its class from
    another window (the rule of :func:`drop_cut_boxes`)."""
    if is_rotated(bboxes):
        # rotated intersection over the cut box's area
        cover = rotated_iou(bboxes[cut_idx], bboxes[whole_idx], mode='iof')
    else:
        cover = _intersection(bboxes[cut_idx], bboxes[whole_idx]) / \
            _area(bboxes[cut_idx]).clamp(min=1e-6)[:, None]
    same = (labels[cut_idx, None] == labels[None, whole_idx]) & \
        (tile_ids[cut_idx, None] != tile_ids[None, whole_idx])
    return ((cover >= min_cover) & same).any(dim=1)


# Above this many boxes the cut-box rule and NMS compare each box only with
# the boxes of the windows that overlap its own (exact: boxes of windows
# that do not intersect cannot overlap), so that a raster's merge costs
# O(boxes) instead of O(boxes^2): 10,000 px with a trained model gives
# 100,000+ boxes, 40,000 px millions.
LOCAL_MERGE_MIN = 10000


def window_neighbours(windows: Sequence[Window]) -> List[np.ndarray]:
    """For each window, the indices of the windows that intersect it (with
    a positive area), itself included. Windows on a grid (as
    :func:`tile_windows` lays them) cost O(windows); any list works."""
    cols = sorted({(w.x0, w.x1) for w in windows})
    rows = sorted({(w.y0, w.y1) for w in windows})

    def overlapping(spans):
        a = np.array(spans, dtype=np.int64).reshape(-1, 2)
        hit = (a[:, None, 0] < a[None, :, 1]) & (a[None, :, 0] < a[:, None, 1])
        return [np.flatnonzero(r) for r in hit]

    col_of = {c: i for i, c in enumerate(cols)}
    row_of = {r: i for i, r in enumerate(rows)}
    col_nb, row_nb = overlapping(cols), overlapping(rows)
    at = {}
    for t, w in enumerate(windows):
        at.setdefault((col_of[(w.x0, w.x1)], row_of[(w.y0, w.y1)]),
                      []).append(t)
    out = []
    for w in windows:
        c, r = col_of[(w.x0, w.x1)], row_of[(w.y0, w.y1)]
        out.append(np.array(sorted(
            t for cc in col_nb[c] for rr in row_nb[r]
            for t in at.get((int(cc), int(rr)), ())), dtype=np.int64))
    return out


class _ByWindow:
    """The boxes of each window and of its neighbours, as index tensors."""

    def __init__(self, tile_ids: Tensor, windows: Sequence[Window]) -> None:
        order = torch.argsort(tile_ids, stable=True)
        counts = torch.bincount(tile_ids, minlength=len(windows))
        ends = torch.cumsum(counts, 0)
        self.own = [order[e - c:e] for c, e in zip(counts.tolist(),
                                                   ends.tolist())]
        self.neighbours = window_neighbours(windows)

    def around(self, t: int) -> Tensor:
        return torch.cat([self.own[u] for u in self.neighbours[t]])


def drop_cut_boxes_local(bboxes: Tensor, labels: Tensor, tile_ids: Tensor,
                         cut: Tensor, windows: Sequence[Window],
                         min_cover: float = 0.5) -> Tensor:
    """:func:`drop_cut_boxes`, each cut box compared only with the whole
    boxes of the windows that intersect its own. The same result when
    ``min_cover`` > 0 and less than ``min_cover`` of each box's area lies
    outside its window: the head clips axis-aligned boxes to the window; a
    rotated box is not clipped, and only its corners leave the window by
    a few px."""
    keep = torch.ones(len(bboxes), dtype=torch.bool, device=bboxes.device)
    by = _ByWindow(tile_ids, windows)
    for t, own in enumerate(by.own):
        idx = own[cut[own]]
        if idx.numel() == 0:
            continue
        near = by.around(t)
        whole = near[~cut[near]]
        if whole.numel() == 0:
            continue
        keep[idx[_seen_whole(bboxes, labels, tile_ids, idx, whole,
                             min_cover)]] = False
    return keep


def merge_nms_local(bboxes: Tensor, scores: Tensor, labels: Tensor,
                    tile_ids: Tensor, windows: Sequence[Window],
                    iou_thr: float = 0.5) -> Tensor:
    """:func:`merge_nms` in O(boxes): greedy NMS suppresses only along pairs
    of boxes of one class with IoU > ``iou_thr``, and such pairs lie in
    windows that intersect. The pairs are found window by window (each box
    against the boxes of the windows around its own), then the greedy pass
    visits the boxes by descending score, keeping a box no kept box has
    suppressed and suppressing its pairs. The same boxes as the global NMS
    (tested); a global NMS on a trained model's 200,000 boxes of a
    10,000 px raster does not finish in minutes. Rotated (M, 5) boxes pair
    at IoU >= ``iou_thr``, as ``nms_rotated`` suppresses; they are not
    clipped to their window, and the result is the global one while less
    than ``iou_thr / 2`` of each box's area lies outside its window (two
    boxes of windows that do not meet overlap only outside their windows).

    Returns:
        Tensor: indices of the kept boxes, by descending score.
    """
    from scipy.sparse import coo_matrix
    n = len(bboxes)
    if n == 0:
        return torch.zeros(0, dtype=torch.long, device=bboxes.device)
    by = _ByWindow(tile_ids, windows)
    rotated = is_rotated(bboxes)
    src, dst = [], []
    for t, own in enumerate(by.own):
        if own.numel() == 0:
            continue
        near = by.around(t)  # a pair is found from both sides: harmless
        iou = _nms_iou(bboxes[own], bboxes[near])
        hit = ((iou >= iou_thr) if rotated else (iou > iou_thr)) & \
            (labels[own, None] == labels[None, near])
        i, j = hit.nonzero(as_tuple=True)
        src.append(own[i])
        dst.append(near[j])
    src, dst = torch.cat(src).numpy(), torch.cat(dst).numpy()
    pairs = coo_matrix((np.ones(len(src), np.int8), (src, dst)),
                       shape=(n, n)).tocsr()
    indptr, indices = pairs.indptr, pairs.indices
    order = torch.argsort(scores, descending=True, stable=True).numpy()
    suppressed = np.zeros(n, dtype=bool)
    keep = []
    for i in order.tolist():
        if suppressed[i]:
            continue
        keep.append(i)
        suppressed[indices[indptr[i]:indptr[i + 1]]] = True
    return torch.as_tensor(keep, dtype=torch.long)


def _nms_iou(a: Tensor, b: Tensor) -> Tensor:
    """(M, N) IoU in the arithmetic of mmcv's CPU ``nms`` (float32,
    ``inter / (area_a + area_b - inter)``, no epsilon; areas of valid boxes,
    as detections are), so that the local NMS keeps exactly the boxes
    mmcv's does; rotated boxes: mmcv's ``box_iou_rotated``, the kernel
    ``nms_rotated`` calls (without :func:`rotated_iou`'s clamping)."""
    if is_rotated(a):
        from mmcv.ops import box_iou_rotated
        return box_iou_rotated(a.float(), b.float())
    inter = _intersection(a, b)
    return inter / (_area(a)[:, None] + _area(b)[None, :] - inter)


def merge_nms(bboxes: Tensor, scores: Tensor, labels: Tensor,
              iou_thr: float = 0.5) -> Tensor:
    """Class-aware NMS over the boxes of all windows.

    Args:
        bboxes (Tensor): (M, 4), or rotated (M, 5): ``nms_rotated``.
        scores (Tensor): (M,).
        labels (Tensor): (M,).
        iou_thr (float): the NMS IoU.

    Returns:
        Tensor: indices of the kept boxes, by descending score.
    """
    from mmcv.ops import batched_nms
    if len(bboxes) == 0:
        return torch.zeros(0, dtype=torch.long, device=bboxes.device)
    nms = 'nms_rotated' if is_rotated(bboxes) else 'nms'
    _, keep = batched_nms(bboxes, scores, labels,
                          dict(type=nms, iou_threshold=iou_thr))
    return keep


def weighted_boxes_fusion(
        bboxes: Tensor,
        scores: Tensor,
        labels: Tensor,
        iou_thr: float = 0.55,
        windows: Optional[Sequence[Window]] = None
) -> Tuple[Tensor, Tensor, Tensor]:
    """Weighted boxes fusion of the boxes of all windows, per class.

    Boxes are visited by descending score; each joins the first cluster
    (of its class) whose current fused box overlaps it by IoU > ``iou_thr``,
    or starts a new one. A cluster's box is the score-weighted mean of its
    boxes; its score is the mean score times ``min(n, T) / T``, n its
    number of boxes and T the number of ``windows`` that contain the fused
    box (1 when ``windows`` is None): an object that several windows see but
    only one detects is down-weighted.

    Args:
        bboxes (Tensor): (M, 4).
        scores (Tensor): (M,).
        labels (Tensor): (M,).
        iou_thr (float): IoU above which a box joins a cluster.
        windows (list[Window], optional): the windows, for T.

    Returns:
        tuple[Tensor, Tensor, Tensor]: fused boxes (K, 4), scores (K,) and
        labels (K,), by descending score.
    """
    if not 0 <= iou_thr <= 1:
        raise ValueError(f'iou_thr must be in [0, 1], got {iou_thr}')
    if is_rotated(bboxes):
        raise ValueError('weighted boxes fusion (--merge wbf) fuses '
                         'axis-aligned boxes; merge the rotated boxes of an '
                         'oriented model with --merge nms (rotated NMS)')
    out_boxes, out_scores, out_labels = [], [], []
    b64 = bboxes.double()
    for label in labels.unique(sorted=True).tolist():
        idx = (labels == label).nonzero().squeeze(1)
        idx = idx[scores[idx].argsort(descending=True, stable=True)]
        sums = []  # per cluster: sum of score * box, sum of score, n, max
        fused = torch.zeros((0, 4), dtype=torch.float64)
        for i in idx.tolist():
            box, score = b64[i], float(scores[i])
            j = -1
            if len(fused):
                iou = pairwise_iou(box[None], fused)[0]
                best = int(iou.argmax())
                if float(iou[best]) > iou_thr:
                    j = best
            if j < 0:
                sums.append([box * score, score, 1])
                fused = torch.cat([fused, box[None]])
            else:
                s = sums[j]
                s[0] = s[0] + box * score
                s[1] += score
                s[2] += 1
                fused[j] = s[0] / s[1]
        for (wbox, wsum, n), box in zip(sums, fused):
            views = 1
            if windows is not None:
                x1, y1, x2, y2 = box.tolist()
                views = max(1, sum(w.x0 <= x1 and w.y0 <= y1 and x2 <= w.x1
                                   and y2 <= w.y1 for w in windows))
            out_boxes.append(box)
            out_scores.append(wsum / n * min(n, views) / views)
            out_labels.append(label)
    if not out_boxes:
        return (bboxes.new_zeros((0, 4)), scores.new_zeros(0),
                labels.new_zeros(0))
    boxes = torch.stack(out_boxes).to(bboxes.dtype)
    scores_t = torch.tensor(out_scores, dtype=scores.dtype)
    labels_t = torch.tensor(out_labels, dtype=labels.dtype)
    order = scores_t.argsort(descending=True, stable=True)
    return boxes[order], scores_t[order], labels_t[order]


def as_numpy(t) -> np.ndarray:
    return t.detach().cpu().numpy() if isinstance(t, Tensor) else np.asarray(t)
