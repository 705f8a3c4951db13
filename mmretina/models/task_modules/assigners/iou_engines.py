"""IoU engines of :class:`~.max_iou_assigner.MaxIoUAssigner`.

The matching policy (thresholds, low-quality matches, ignored priors) lives
in ``max_iou_assigner.py`` and consumes only the reductions of the
B x G x N IoU of padded ground truths with priors that an engine returns as
:class:`IoUReductions`, as detectron2's ``Matcher`` consumes a quality
matrix. Two engines give the same reductions:

* :func:`dense_reductions` computes every IoU, in prior chunks of bounded
  memory; it works for any priors and any IoU calculator;
* :func:`windowed_reductions` uses the regular grid of the anchors
  (``AnchorGenerator.grid_layout``): on each level the anchors of one shape
  that reach a given IoU with a box lie in a small window of cells
  (:func:`shape_windows`), so only those pairs are computed and the cost
  follows the objects, not objects x anchors.

Boxes are (x1, y1, x2, y2) in pixels of the padded batch input; the IoU is
:func:`mmretina.structures.pairwise_iou` / :func:`~mmretina.structures.
aligned_iou` (mmdet's ``bbox_overlaps`` arithmetic, hence mmdet's floats).
Rotated boxes (cx, cy, w, h, angle) take mmrotate's rotated IoU
(:func:`mmretina.structures.rotated.rotated_iou`) in both engines.
"""
from functools import partial
from typing import Callable, List, NamedTuple, Optional, Sequence, Tuple

import torch
from torch import Tensor

from mmretina.structures import aligned_iou, pairwise_iou
from mmretina.structures.rotated import rbox_to_hbox, rotated_iou

__all__ = [
    'IoUReductions', 'dense_reductions', 'windowed_reductions',
    'shape_windows', 'window_pairs', 'low_quality_rank'
]

# Ground truths x anchors (x images) above which the dense IoU is computed
# in anchor chunks: 2^22 fp32 values = 16 MiB per chunk.
_MAX_IOU_ELEMENTS = 1 << 22
# Windowed assignment is used while its IoU pairs are at most this share of
# the dense B x G x N (below it, the index arithmetic per pair costs more than
# the saved IoUs).
_WINDOWED_MAX_SHARE = 0.25
# IoU pairs per chunk of ground truths in the windowed path.
_MAX_WINDOW_PAIRS = 1 << 22
# Relative slack on an IoU floor when bounding windows: fp32 IoUs are exact
# to ~1e-7 relative, so no pair at or above the floor can fall outside.
_FLOOR_SLACK = 1e-4
# Margin (px) around the enclosing boxes in the rotated pair bound: mmcv's
# kernel clips the fp32 polygons, the bound uses fp64 enclosing boxes.
_HULL_MARGIN = 1e-2

Windows = List[Tuple[Tensor, Tensor, Tensor, Tensor]]


class IoUReductions(NamedTuple):
    """What the matching policy needs of the B x G x N IoU matrix.

    Padded ground truths count as IoU 0 and excluded priors as IoU -1.

    Attributes:
        max_overlaps (Tensor): B x N, best IoU of each prior.
        argmax (Tensor): B x N int64, the ground truth (0 .. G-1) reaching
            it, the lowest among ties.
        gt_max (Tensor): B x G, best IoU of each ground truth.
        gt_argmax (Tensor): B x G int64, the prior (0 .. N-1) reaching it,
            the lowest among ties.
        low (Tensor | None): B x N int64, the low-quality match of each
            prior under ``gt_max_assign_all``: the largest g + 1 among the
            eligible ground truths (:func:`low_quality_rank`) whose best IoU
            the prior reaches, 0 for none. None when not asked for.
    """
    max_overlaps: Tensor
    argmax: Tensor
    gt_max: Tensor
    gt_argmax: Tensor
    low: Optional[Tensor]


def low_quality_rank(gt_valid: Tensor, gt_max: Tensor,
                     min_pos_iou: float) -> Tensor:
    """Ranks of the ground truths that take part in low-quality matching.

    A ground truth takes part if it is real, reaches ``min_pos_iou`` and
    overlaps some anchor at all (the #8289 difference: mmdet matches an
    unreachable ground truth to every anchor with IoU 0). Later ground truths
    overwrite earlier ones in mmdet's loop, so an anchor takes the largest
    rank.

    Args:
        gt_valid (Tensor): B x G bool, real (not padded) ground truths.
        gt_max (Tensor): B x G, best IoU of each ground truth.
        min_pos_iou (float): the assigner's ``min_pos_iou``.

    Returns:
        Tensor: B x G int64, g + 1 for the eligible ground truths, 0 for the
        others.
    """
    eligible = gt_valid & (gt_max >= min_pos_iou) & (gt_max > 0)
    return torch.arange(
        1, gt_valid.size(1) + 1, device=gt_valid.device)[None, :] * eligible


# ---------------------------------------------------------------- dense
def dense_reductions(
        priors: Tensor,
        gt_bboxes: Tensor,
        gt_valid: Tensor,
        excluded: Optional[Tensor],
        min_pos_iou: float,
        assign_all: bool,
        iou_calculator: Optional[Callable[[Tensor, Tensor], Tensor]] = None
) -> IoUReductions:
    """The reductions of the B x G x N IoU, computed in anchor chunks.

    Args:
        priors (Tensor): N x 4 priors shared by all images.
        gt_bboxes (Tensor): B x G x 4 padded ground truths.
        gt_valid (Tensor): B x G bool mask of real ground truths.
        excluded (Tensor, optional): B x N bool, priors at IoU -1.
        min_pos_iou (float): low-quality matching threshold.
        assign_all (bool): compute ``low`` (low-quality matching with
            ``gt_max_assign_all``).
        iou_calculator (callable, optional): ``f(gt_bboxes (B, G, 4),
            priors (B, n, 4)) -> (B, G, n)`` (mmdet's ``BboxOverlaps2D`` and
            alike); None for :func:`~mmretina.structures.pairwise_iou`.

    Returns:
        IoUReductions
    """
    num_imgs, num_gts = gt_valid.shape
    num_priors = priors.size(0)
    chunk = max(1, _MAX_IOU_ELEMENTS // max(1, num_imgs * num_gts))
    # One buffer for all chunks, so that memory does not fragment.
    workspace = priors.new_empty(3 * num_imgs * num_gts *
                                 min(chunk, num_priors))

    def overlaps_of(start: int, end: int) -> Tensor:
        """B x G x n IoU; padded ground truths at 0, excluded priors at -1.
        A view of ``workspace`` for the plain IoU."""
        if iou_calculator is None:
            ious = pairwise_iou(gt_bboxes, priors[start:end], workspace)
        else:
            ious = iou_calculator(
                gt_bboxes, priors[start:end].expand(num_imgs, -1, -1))
        ious.masked_fill_(~gt_valid[:, :, None], 0)
        if excluded is not None:
            ious.masked_fill_(excluded[:, None, start:end], -1)
        return ious

    bounds = [(s, min(num_priors, s + chunk))
              for s in range(0, num_priors, chunk)]
    max_overlaps = priors.new_empty((num_imgs, num_priors))
    argmax = torch.empty((num_imgs, num_priors),
                         dtype=torch.long,
                         device=priors.device)
    gt_max = priors.new_full((num_imgs, num_gts), -1.)
    gt_argmax = torch.zeros((num_imgs, num_gts),
                            dtype=torch.long,
                            device=priors.device)
    cached = None
    chunk_maxes = []
    for start, end in bounds:
        ious = overlaps_of(start, end)
        if len(bounds) == 1:
            cached = ious
        # First index wins ties, as in torch.max: lowest gt for an anchor.
        max_overlaps[:, start:end], argmax[:, start:end] = ious.max(dim=1)
        chunk_max, chunk_arg = ious.max(dim=2)
        chunk_maxes.append(chunk_max)
        better = chunk_max > gt_max  # strict: earlier anchor wins ties
        gt_max = torch.where(better, chunk_max, gt_max)
        gt_argmax = torch.where(better, chunk_arg + start, gt_argmax)
        del ious

    low = None
    if assign_all:
        rank = low_quality_rank(gt_valid, gt_max, min_pos_iou)
        eligible = rank > 0
        rank_f = rank.to(priors.dtype)
        zero = priors.new_zeros(())
        low = torch.zeros_like(argmax)
        for (start, end), chunk_max in zip(bounds, chunk_maxes):
            # Only chunks holding some eligible gt's best IoU can change
            # anything; usually few, so IoU is rarely redone.
            if not bool(((chunk_max == gt_max) & eligible).any()):
                continue
            ious = cached if cached is not None else overlaps_of(start, end)
            # Ranks are exact in fp32; where() writes back into the IoU
            # buffer instead of allocating an int64 tensor.
            hit = ious == gt_max[:, :, None]
            ranked = torch.where(hit, rank_f[:, :, None], zero, out=ious)
            low[:, start:end] = ranked.amax(dim=1).long()
    return IoUReductions(max_overlaps, argmax, gt_max, gt_argmax, low)


# ------------------------------------------------------------- windowed
def shape_windows(boxes: Tensor, level, floor: float,
                  areas: Optional[Tensor] = None) -> Tuple[Tensor, ...]:
    """Per box and anchor shape, the cells of one level whose anchor can
    reach IoU >= ``floor`` with the box (> 0 when ``floor`` is 0).

    Anchor ``base[a] + (x * sw, y * sh)`` has x-overlap ``ox`` with the box.
    IoU >= t needs ``ox * oy >= t * union >= t * max(area_a, area_b)`` with
    ``oy <= min(h_a, h_b)``, so ``ox >= ox_min = t * max(areas) / min(h_a,
    h_b)``, which bounds x by ``x1 + ox_min - base[a, 2] <= x * sw <= x2 -
    ox_min - base[a, 0]`` (and y alike; ``ox > 0`` for t = 0). The floor is
    lowered by ``_FLOOR_SLACK`` and the window widened by one cell on each
    side, so rounding never leaves a qualifying anchor out; IoUs are then
    computed exactly on the window. The bound holds for any box, so it also
    answers "which anchors can reach IoU t with this box" outside training.

    For a rotated ground truth, ``boxes`` is its enclosing axis-aligned box
    and ``areas`` its own area: the intersection with an anchor is at most
    ``ox * oy`` of the enclosing box, and the union at least the larger of
    the two true areas, so the same bound holds.

    Args:
        boxes (Tensor): M x 4 float64 boxes, pixels of the padded input.
        level (GridLevel): the level (``AnchorGenerator.grid_layout``).
        floor (float): IoU the anchors must be able to reach.
        areas (Tensor, optional): M float64 areas of the objects (default:
            those of ``boxes``).

    Returns:
        tuple[Tensor, ...]: int64 M x A each: first column x0, first row
        y0, window width wx and height wy in cells (0 where empty).
    """
    base = level.base_anchors.to(boxes)  # A, 4
    bw, bh = base[:, 2] - base[:, 0], base[:, 3] - base[:, 1]
    gw = (boxes[:, 2] - boxes[:, 0])[:, None]
    gh = (boxes[:, 3] - boxes[:, 1])[:, None]
    t = max(floor, 0.) * (1 - _FLOOR_SLACK)
    area = gw * gh if areas is None else areas[:, None]
    need = t * torch.maximum(bw * bh, area)  # M, A
    ox_min = need / torch.minimum(bh, gh).clamp(min=1e-12)
    oy_min = need / torch.minimum(bw, gw).clamp(min=1e-12)
    reachable = (ox_min <= torch.minimum(bw, gw)) & \
        (oy_min <= torch.minimum(bh, gh))
    x_lo = torch.ceil((boxes[:, 0, None] + ox_min - base[:, 2]) /
                      level.stride_w) - 1
    x_hi = torch.floor((boxes[:, 2, None] - ox_min - base[:, 0]) /
                       level.stride_w) + 1
    y_lo = torch.ceil((boxes[:, 1, None] + oy_min - base[:, 3]) /
                      level.stride_h) - 1
    y_hi = torch.floor((boxes[:, 3, None] - oy_min - base[:, 1]) /
                       level.stride_h) + 1
    x0 = x_lo.clamp(min=0, max=level.width).long()
    y0 = y_lo.clamp(min=0, max=level.height).long()
    wx = (x_hi.clamp(min=-1, max=level.width - 1).long() - x0 + 1).clamp(
        min=0) * reachable
    wy = (y_hi.clamp(min=-1, max=level.height - 1).long() - y0 + 1).clamp(
        min=0) * reachable
    return x0, y0, wx, wy


def window_pairs(windows: Windows, layout: Sequence,
                  gts: Tensor) -> Tuple[Tensor, Tensor]:
    """All (ground truth, anchor) pairs of the windows of ``gts``.

    Args:
        windows (list[tuple]): :func:`shape_windows` of every ground
            truth, per level.
        layout (list[GridLevel]): the levels.
        gts (Tensor): (M,) indices of the ground truths to pair.

    Returns:
        tuple[Tensor, Tensor]: (P,) each: index into ``gts`` (0 .. M-1) and
        the anchor's index in the concatenated priors.
    """
    pair_gt, pair_anchor = [], []
    device = gts.device
    for (x0, y0, wx, wy), level in zip(windows, layout):
        num_base = level.base_anchors.size(0)
        x0, y0 = x0[gts].reshape(-1), y0[gts].reshape(-1)
        wx, wy = wx[gts].reshape(-1), wy[gts].reshape(-1)
        counts = wx * wy  # per (gt, shape), gt-major
        owner = torch.repeat_interleave(
            torch.arange(counts.numel(), device=device), counts)
        first = torch.cumsum(counts, 0) - counts
        local = torch.arange(owner.numel(), device=device) - first[owner]
        dy = local // wx[owner]
        dx = local - dy * wx[owner]
        cell = (y0[owner] + dy) * level.width + x0[owner] + dx
        pair_gt.append(owner // num_base)
        pair_anchor.append(level.start + cell * num_base + owner % num_base)
    return torch.cat(pair_gt), torch.cat(pair_anchor)


def _pairs_per_gt(windows: Windows) -> Tensor:
    """(M,) number of anchors in the windows of each ground truth."""
    return sum(wx.mul(wy).sum(dim=1) for _, _, wx, wy in windows)


class _WindowProblem(NamedTuple):
    """The fixed inputs of one windowed assignment, flattened: the real
    ground truths are numbered 0 .. M-1 in ``b * G + g`` order."""
    priors: Tensor  # N x D
    boxes: Tensor  # M x D, the real ground truths
    flat_gts: Tensor  # (M,) their index b * G + g in the padded B x G
    img_of: Tensor  # (M,) b
    gt_of: Tensor  # (M,) g
    excluded: Optional[Tensor]  # (B * N,) bool
    layout: Sequence
    num_imgs: int
    num_gts: int
    min_pos_iou: float
    pair_iou: Callable[[Tensor, Tensor], Tensor]  # aligned IoU of pairs
    # rotated only: float64 enclosing boxes and areas of the ground truths
    # (M x 4, M) and of the priors (N x 4, N), for the pair bound
    bounds: Optional[Tuple[Tensor, Tensor, Tensor, Tensor]] = None


def _reachable_pairs(pr: _WindowProblem, pair_gt: Tensor,
                     pair_anchor: Tensor, floor: float) -> Tensor:
    """Rotated pairs whose IoU can reach ``floor`` (> 0 for 0): the
    intersection is at most that of the two enclosing boxes (widened by
    ``_HULL_MARGIN``), the union at least the larger area. A bound per pair
    costs a few float ops; the rotated IoU it saves, a polygon clipping."""
    gt_hull, gt_area, prior_hull, prior_area = pr.bounds
    g, a = gt_hull[pair_gt], prior_hull[pair_anchor]
    ox = (torch.minimum(g[:, 2], a[:, 2]) - torch.maximum(g[:, 0], a[:, 0]) +
          2 * _HULL_MARGIN).clamp(min=0)
    oy = (torch.minimum(g[:, 3], a[:, 3]) - torch.maximum(g[:, 1], a[:, 1]) +
          2 * _HULL_MARGIN).clamp(min=0)
    inter = ox * oy
    need = max(floor, 0.) * (1 - _FLOOR_SLACK) * torch.maximum(
        gt_area[pair_gt], prior_area[pair_anchor])
    return (inter > 0) & (inter >= need)


def _reduce_windows(problem: _WindowProblem, acc: IoUReductions,
                    members: Tensor, windows: Windows, counts: Tensor,
                    floor: float) -> IoUReductions:
    """Merge the window pairs of the ground truths ``members`` (indices
    0 .. M-1) into ``acc`` (flat: B * N and B * G), in chunks of about
    ``_MAX_WINDOW_PAIRS`` pairs; only ground truths whose best IoU reaches
    ``floor`` (exact there) make low-quality matches.

    Per anchor, values merge by (IoU, then lower ground truth), so the
    order of chunks and calls does not matter. Per ground truth, all its
    pairs are in one chunk, so its best IoU is replaced, not merged.
    """
    pr = problem
    num_priors = pr.priors.size(0)
    cum = torch.cumsum(counts[members], 0)
    c0 = 0
    while c0 < len(members):
        done = int(cum[c0 - 1]) if c0 else 0
        c1 = max(c0 + 1, int(torch.searchsorted(
            cum, done + _MAX_WINDOW_PAIRS, right=True)))
        gts = members[c0:c1]
        local_gt, pair_anchor = window_pairs(windows, pr.layout, gts)
        pair_gt = gts[local_gt]
        if pr.bounds is not None:
            possible = _reachable_pairs(pr, pair_gt, pair_anchor, floor)
            pair_gt, pair_anchor = pair_gt[possible], pair_anchor[possible]
        iou = pr.pair_iou(pr.boxes[pair_gt], pr.priors[pair_anchor])
        flat_anchor = pr.img_of[pair_gt] * num_priors + pair_anchor
        keep = iou > 0
        if pr.excluded is not None:
            keep &= ~pr.excluded[flat_anchor]
        iou, pair_gt, pair_anchor, flat_anchor = (
            iou[keep], pair_gt[keep], pair_anchor[keep], flat_anchor[keep])
        g = pr.gt_of[pair_gt]

        # Per anchor: best IoU, lowest ground truth among ties. -1 where
        # untouched: never better than 0 (no overlap) or -1 (excluded),
        # while every kept IoU is > 0.
        chunk_max = torch.full_like(acc.max_overlaps, -1.)
        chunk_max.scatter_reduce_(0, flat_anchor, iou, reduce='amax')
        tie = iou == chunk_max[flat_anchor]
        chunk_arg = torch.full_like(acc.argmax, pr.num_gts)
        chunk_arg.scatter_reduce_(0, flat_anchor[tie], g[tie], reduce='amin')
        better = (chunk_max > acc.max_overlaps) | (
            (chunk_max == acc.max_overlaps) & (chunk_arg < acc.argmax))

        # Per ground truth: best IoU and the lowest anchor reaching it.
        slot = pr.flat_gts[pair_gt]
        chunk_gt_max = torch.zeros_like(acc.gt_max)
        chunk_gt_max.scatter_reduce_(0, slot, iou, reduce='amax')
        best = iou == chunk_gt_max[slot]
        first = torch.full_like(acc.gt_argmax, num_priors)
        first.scatter_reduce_(0, slot[best], pair_anchor[best], reduce='amin')
        mine = torch.zeros_like(acc.gt_argmax, dtype=torch.bool)
        mine[pr.flat_gts[gts]] = True

        low = acc.low
        if low is not None:
            value = chunk_gt_max[slot]
            hit = best & (value >= pr.min_pos_iou) & (value > 0) & \
                (value >= floor)
            low = low.scatter_reduce(0, flat_anchor[hit], g[hit] + 1,
                                     reduce='amax')
        acc = IoUReductions(
            max_overlaps=torch.where(better, chunk_max, acc.max_overlaps),
            argmax=torch.where(better, chunk_arg, acc.argmax),
            gt_max=torch.where(mine, chunk_gt_max, acc.gt_max),
            gt_argmax=torch.where(mine & (first < num_priors), first,
                                  acc.gt_argmax),
            low=low)
        c0 = c1
    return acc


def windowed_reductions(priors: Tensor,
                        gt_bboxes: Tensor,
                        gt_valid: Tensor,
                        excluded: Optional[Tensor],
                        layout: Sequence,
                        min_pos_iou: float,
                        assign_all: bool,
                        iou_floor: float = 0.,
                        rotated: bool = False) -> Optional[IoUReductions]:
    """:func:`dense_reductions` from the IoUs near each ground truth only.

    Only the pairs in the windows of :func:`shape_windows` are computed,
    with the dense path's arithmetic, and the reductions keep the dense tie
    rules (lowest ground truth per anchor, lowest anchor per ground truth,
    largest eligible ground truth in low-quality matching).

    With ``iou_floor=0`` the windows hold every overlapping pair, so all
    results equal the dense path's, bit for bit. With ``iou_floor > 0`` (the
    lowest IoU threshold the labels depend on) the windows hold the pairs
    with IoU >= ``iou_floor``, which are far fewer: per-anchor values are
    then exact where they reach the floor (below it ``max_overlaps`` reads 0
    and ``argmax`` 0; every label that depends on them is the same), and a
    ground truth whose best IoU is below the floor (a low-quality match) is
    redone with its full window, so ``gt_max``, ``gt_argmax`` and ``low`` are
    exact for every ground truth.

    Rotated boxes (``rotated=True``: ground truths and anchors
    ``(cx, cy, w, h, angle)``, the anchors those of the horizontal grid, as
    ``FakeRotatedAnchorGenerator`` makes them) take their windows from the
    ground truth's enclosing box and true area (:func:`shape_windows`) and
    their IoUs from :func:`~mmretina.structures.rotated.rotated_iou`
    (mmrotate's arithmetic; the aligned kernel gives the pairwise one's
    floats). A rotated IoU costs far more than the window bookkeeping, so
    the windows are used whatever their share of the dense matrix.

    Args:
        priors (Tensor): N x D (D = 4, or 5 rotated), the grid's anchors
            concatenated.
        gt_bboxes (Tensor): B x G x D padded ground truths.
        gt_valid (Tensor): B x G bool mask of real ground truths.
        excluded (Tensor, optional): B x N bool, priors at IoU -1, already
            restricted to images with ground truth.
        layout (list[GridLevel]): the grid of ``priors``.
        min_pos_iou (float): low-quality matching threshold.
        assign_all (bool): compute ``low`` (``gt_max_assign_all``).
        iou_floor (float): see above.
        rotated (bool): boxes are rotated (D = 5).

    Returns:
        IoUReductions | None: as :func:`dense_reductions`, or None where the
        windows would not be cheaper than the dense IoU, a box is not
        finite, or the priors do not match the layout.
    """
    num_imgs, num_gts = gt_valid.shape
    num_priors = priors.size(0)
    last = layout[-1]
    if last.start + last.height * last.width * last.base_anchors.size(0) \
            != num_priors:
        return None
    device = priors.device
    flat_gts = gt_valid.reshape(-1).nonzero().squeeze(1)  # b * G + g order
    boxes = gt_bboxes.reshape(-1, gt_bboxes.size(-1))[flat_gts]
    if not bool(torch.isfinite(boxes).all()):
        return None
    areas = bounds = None
    if rotated:
        pair_iou = partial(rotated_iou, aligned=True)
        wh = boxes[:, 2:4].double().clamp(min=1e-3)  # mmrotate's clamp
        areas = wh[:, 0] * wh[:, 1]
        boxes64 = rbox_to_hbox(boxes.double())
        prior_wh = priors[:, 2:4].double().clamp(min=1e-3)
        bounds = (boxes64, areas, rbox_to_hbox(priors.double()),
                  prior_wh[:, 0] * prior_wh[:, 1])
    else:
        pair_iou = aligned_iou
        boxes64 = boxes.double()

    windows = [shape_windows(boxes64, level, iou_floor, areas)
               for level in layout]
    counts = _pairs_per_gt(windows)
    if not rotated and int(counts.sum()) > \
            _WINDOWED_MAX_SHARE * num_imgs * num_gts * num_priors:
        return None

    problem = _WindowProblem(
        priors=priors, boxes=boxes, flat_gts=flat_gts,
        img_of=flat_gts // num_gts, gt_of=flat_gts % num_gts,
        excluded=None if excluded is None else excluded.reshape(-1),
        layout=layout, num_imgs=num_imgs, num_gts=num_gts,
        min_pos_iou=min_pos_iou, pair_iou=pair_iou, bounds=bounds)
    # Anchors that reach no ground truth: IoU 0 with all (dense: the max
    # over G of zeros, first index 0), or -1 where excluded.
    max_flat = priors.new_zeros(num_imgs * num_priors)
    if excluded is not None:
        max_flat.masked_fill_(problem.excluded, -1)
    zeros_n = torch.zeros(num_imgs * num_priors, dtype=torch.long,
                          device=device)
    acc = IoUReductions(
        max_overlaps=max_flat,
        argmax=zeros_n,
        gt_max=priors.new_zeros(num_imgs * num_gts),
        gt_argmax=torch.zeros(num_imgs * num_gts, dtype=torch.long,
                              device=device),
        low=zeros_n.clone() if assign_all else None)

    acc = _reduce_windows(problem, acc,
                          torch.arange(len(flat_gts), device=device),
                          windows, counts, iou_floor)
    if iou_floor > 0:
        # Best IoU below the floor: redo those ground truths with every
        # overlapping anchor, for their exact best IoU and its ties.
        weak = (acc.gt_max[flat_gts] < iou_floor).nonzero().squeeze(1)
        if len(weak):
            full = [shape_windows(boxes64, level, 0., areas)
                    for level in layout]
            acc = _reduce_windows(problem, acc, weak, full,
                                  _pairs_per_gt(full), 0.)
    return IoUReductions(
        max_overlaps=acc.max_overlaps.view(num_imgs, num_priors),
        argmax=acc.argmax.view(num_imgs, num_priors),
        gt_max=acc.gt_max.view(num_imgs, num_gts),
        gt_argmax=acc.gt_argmax.view(num_imgs, num_gts),
        low=None if acc.low is None else acc.low.view(num_imgs, num_priors))
