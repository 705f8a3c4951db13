"""Max-IoU anchor assignment (RetinaNet paper sec. 4, "Anchors").

An anchor is positive for the ground truth it overlaps most when that IoU is
>= 0.5, negative (background) when its best IoU is < 0.4, and ignored in
between. Low-quality matching then gives every ground truth its best
anchor(s) even below 0.5, so that no object goes without a positive.

The assignment of a whole batch is one tensor program
(:meth:`MaxIoUAssigner.assign_batch`): ground truths are padded per batch and
low-quality matching is vectorised. Given the anchors' regular grid
(``AnchorGenerator.grid_layout``), IoUs are computed only in the window of
anchors near each ground truth (:func:`windowed_reductions`; the cost follows
the objects, not objects x anchors); otherwise every IoU is computed
(:meth:`MaxIoUAssigner._dense_reductions`, in anchor chunks). Both give the
same assignment.

Deliberate difference from mmdet: a ground truth whose best IoU with every
anchor is 0 (a degenerate box, or one that no anchor touches) gets no
low-quality match. mmdet, with ``min_pos_iou=0``, makes every anchor with
IoU 0 to it a positive for it (open-mmlab/mmdetection#8289).
"""
import logging
from typing import Optional, Sequence, Tuple, Union

import torch
from mmdet.models.task_modules.assigners import AssignResult
from mmdet.structures.bbox import get_box_tensor
from mmengine.logging import print_log
from mmengine.structures import InstanceData
from torch import Tensor

from mmretina.registry import TASK_UTILS

# Ground truths x anchors (x images) above which the IoU is computed in
# anchor chunks: 2^22 fp32 values = 16 MiB per chunk.
_MAX_IOU_ELEMENTS = 1 << 22


def box_iou(gt_bboxes: Tensor,
            priors: Tensor,
            workspace: Optional[Tensor] = None) -> Tensor:
    """IoU of every ground truth with every prior, batched over images.

    Same arithmetic, hence the same floats, as mmdet's ``bbox_overlaps``
    (eps = 1e-6), without its (B, G, n, 2) corner tensors.

    Args:
        gt_bboxes (Tensor): (B, G, 4) boxes (x1, y1, x2, y2).
        priors (Tensor): (n, 4) boxes shared by all images.
        workspace (Tensor, optional): flat buffer of at least 3 * B * G * n
            elements to compute in; the result is then a view of it. Chunked
            callers pass one buffer for all chunks, so that memory does not
            grow with fragmented per-chunk allocations.

    Returns:
        Tensor: (B, G, n).
    """
    shape = gt_bboxes.shape[:2] + priors.shape[:1]
    size = shape.numel()
    if workspace is None:
        workspace = gt_bboxes.new_empty(3 * size)
    w, h, tmp = (workspace[i * size:(i + 1) * size].view(shape)
                 for i in range(3))
    area_gt = (gt_bboxes[..., 2] - gt_bboxes[..., 0]) * (
        gt_bboxes[..., 3] - gt_bboxes[..., 1])
    area_prior = (priors[:, 2] - priors[:, 0]) * (priors[:, 3] - priors[:, 1])
    gx1, gy1, gx2, gy2 = (gt_bboxes[..., i, None] for i in range(4))
    torch.minimum(gx2, priors[:, 2], out=w)
    w.sub_(torch.maximum(gx1, priors[:, 0], out=tmp)).clamp_(min=0)
    torch.minimum(gy2, priors[:, 3], out=h)
    h.sub_(torch.maximum(gy1, priors[:, 1], out=tmp)).clamp_(min=0)
    overlap = w.mul_(h)
    union = torch.add(area_gt[..., None], area_prior, out=h)
    union.sub_(overlap).clamp_(min=1e-6)
    return overlap.div_(union)


def pad_boxes(boxes: list, multiple: int = 8) -> Tuple[Tensor, Tensor]:
    """Stack per-image boxes into one padded tensor.

    The padded count is rounded up to ``multiple`` so that batches with
    similar counts share shapes, without padding to a fixed large maximum.

    Args:
        boxes (list[Tensor]): B tensors of shape (G_i, 4).

    Returns:
        tuple[Tensor, Tensor]: (B, G, 4) boxes (zeros where padded) and
        (B, G) bool mask of real boxes.
    """
    num = max([b.size(0) for b in boxes] + [0])
    size = -(-num // multiple) * multiple
    ref = boxes[0]
    padded = ref.new_zeros((len(boxes), size, 4))
    valid = torch.zeros((len(boxes), size),
                        dtype=torch.bool,
                        device=ref.device)
    for i, b in enumerate(boxes):
        padded[i, :b.size(0)] = b
        valid[i, :b.size(0)] = True
    return padded, valid


@TASK_UTILS.register_module()
class MaxIoUAssigner:
    """Assign each prior a ground truth (index >= 1), background (0) or
    nothing (-1, ignored).

    Args:
        pos_iou_thr (float): IoU >= this makes a positive (paper: 0.5).
        neg_iou_thr (float | tuple[float, float]): IoU < this (or within
            [lo, hi)) makes a negative (paper: 0.4).
        min_pos_iou (float): minimum IoU of a low-quality match.
        gt_max_assign_all (bool): give a ground truth all anchors tied at
            its best IoU (True) or only the first (False).
        ignore_iof_thr (float): IoF with an ignore box above which a prior
            is ignored; negative disables it.
        ignore_wrt_candidates (bool): IoF relative to the prior (True) or to
            the ignore box (False).
        match_low_quality (bool): enable low-quality matching.
        gpu_assign_thr (float): above this many ground truths, assign on the
            CPU to save device memory; negative disables it.
        iou_calculator (dict): config of the overlaps calculator.
    """

    def __init__(self,
                 pos_iou_thr: float,
                 neg_iou_thr: Union[float, Tuple[float, float]],
                 min_pos_iou: float = .0,
                 gt_max_assign_all: bool = True,
                 ignore_iof_thr: float = -1,
                 ignore_wrt_candidates: bool = True,
                 match_low_quality: bool = True,
                 gpu_assign_thr: float = -1,
                 iou_calculator: dict = dict(type='BboxOverlaps2D')) -> None:
        if isinstance(neg_iou_thr, (tuple, list)):
            if len(neg_iou_thr) != 2:
                raise ValueError('MaxIoUAssigner: neg_iou_thr as a tuple '
                                 f'needs 2 values, got {neg_iou_thr}')
            neg_iou_thr = tuple(neg_iou_thr)
        self.pos_iou_thr = pos_iou_thr
        self.neg_iou_thr = neg_iou_thr
        self.min_pos_iou = min_pos_iou
        self.gt_max_assign_all = gt_max_assign_all
        self.ignore_iof_thr = ignore_iof_thr
        self.ignore_wrt_candidates = ignore_wrt_candidates
        self.match_low_quality = match_low_quality
        self.gpu_assign_thr = gpu_assign_thr
        self.iou_calculator = TASK_UTILS.build(iou_calculator)
        # mmdet's plain IoU has a faster equivalent here.
        self._plain_iou = (iou_calculator.get('type') in (
            'BboxOverlaps2D', 'mmdet.BboxOverlaps2D')
                           and getattr(self.iou_calculator, 'scale', 1.) == 1.
                           and getattr(self.iou_calculator, 'dtype',
                                       None) is None)

    @property
    def label_iou_floor(self) -> float:
        """The lowest IoU threshold the labels depend on: an anchor's best
        IoU below it does not change its label (0 when every anchor's exact
        value matters, ``pos_iou_thr <= 0``)."""
        if self.pos_iou_thr <= 0:
            return 0.
        neg = self.neg_iou_thr if isinstance(self.neg_iou_thr, tuple) \
            else (self.neg_iou_thr, )
        # cuts <= 0 hold for every anchor that is not excluded
        return float(min(c for c in (self.pos_iou_thr, *neg) if c > 0))

    # ------------------------------------------------------------------
    # mmdet's per-image API
    # ------------------------------------------------------------------
    def assign(self,
               pred_instances: InstanceData,
               gt_instances: InstanceData,
               gt_instances_ignore: Optional[InstanceData] = None,
               **kwargs) -> AssignResult:
        """Assign the priors of one image.

        Args:
            pred_instances (InstanceData): ``priors`` (N, 4), a tensor or
                mmdet's ``HorizontalBoxes``.
            gt_instances (InstanceData): ``bboxes`` (G, 4) (tensor or
                ``HorizontalBoxes``), ``labels`` (G,).
            gt_instances_ignore (InstanceData, optional): ``bboxes`` (I, 4)
                (tensor or ``HorizontalBoxes``).

        Returns:
            AssignResult: ``gt_inds`` (N,) with -1 ignored, 0 background,
            i + 1 for ground truth i; ``max_overlaps`` (N,); ``labels`` (N,)
            with -1 for non-positives.
        """
        # mmdet's box types (HorizontalBoxes) or plain (n, 4) tensors.
        priors = get_box_tensor(pred_instances.priors)
        gt_bboxes = get_box_tensor(gt_instances.bboxes)
        gt_labels = gt_instances.labels
        ignore = (None if gt_instances_ignore is None else get_box_tensor(
            gt_instances_ignore.bboxes))
        device = priors.device
        if self.gpu_assign_thr > 0 and gt_bboxes.shape[0] > self.gpu_assign_thr:
            priors, gt_bboxes, gt_labels = (priors.cpu(), gt_bboxes.cpu(),
                                            gt_labels.cpu())
            ignore = None if ignore is None else ignore.cpu()
        num_gts, num_priors = gt_bboxes.size(0), priors.size(0)
        if num_gts == 0 or num_priors == 0:
            gt_inds = priors.new_full((num_priors, ),
                                      0 if num_gts == 0 else -1,
                                      dtype=torch.long)
            return AssignResult(
                num_gts=num_gts,
                gt_inds=gt_inds.to(device),
                max_overlaps=priors.new_zeros((num_priors, )).to(device),
                labels=torch.full_like(gt_inds, -1).to(device))
        ignored = None
        if ignore is not None:
            ignored = self.ignored_priors(priors[None], ignore[None],
                                          ignore.new_ones((1, len(ignore)),
                                                          dtype=torch.bool))
        gt_inds, max_overlaps = self.assign_batch(
            priors, gt_bboxes[None],
            torch.ones((1, num_gts), dtype=torch.bool, device=priors.device),
            ignored)
        gt_inds, max_overlaps = gt_inds[0], max_overlaps[0]
        labels = torch.full_like(gt_inds, -1)
        pos = gt_inds > 0
        labels[pos] = gt_labels[gt_inds[pos] - 1].long()
        return AssignResult(
            num_gts=num_gts,
            gt_inds=gt_inds.to(device),
            max_overlaps=max_overlaps.to(device),
            labels=labels.to(device))

    # ------------------------------------------------------------------
    # batched core
    # ------------------------------------------------------------------
    def ignored_priors(self, priors: Tensor, ignore: Tensor,
                       ignore_valid: Tensor) -> Optional[Tensor]:
        """Priors whose IoF with an ignore box exceeds ``ignore_iof_thr``.

        Args:
            priors (Tensor): (B, N, 4) or (1, N, 4).
            ignore (Tensor): (B, I, 4) padded ignore boxes.
            ignore_valid (Tensor): (B, I) mask of real ignore boxes.

        Returns:
            Tensor | None: (B, N) bool, or None when nothing is ignored.
        """
        if (self.ignore_iof_thr <= 0 or ignore.numel() == 0
                or priors.size(1) == 0 or not ignore_valid.any()):
            return None
        priors = priors.expand(ignore.size(0), -1, -1)
        if self.ignore_wrt_candidates:
            iof = self.iou_calculator(priors, ignore, mode='iof')  # B, N, I
            iof = iof.masked_fill(~ignore_valid[:, None, :], -1)
            max_iof = iof.max(dim=2).values
        else:
            iof = self.iou_calculator(ignore, priors, mode='iof')  # B, I, N
            iof = iof.masked_fill(~ignore_valid[:, :, None], -1)
            max_iof = iof.max(dim=1).values
        return max_iof > self.ignore_iof_thr

    def assign_batch(self,
                     priors: Tensor,
                     gt_bboxes: Tensor,
                     gt_valid: Tensor,
                     excluded: Optional[Tensor] = None,
                     layout: Optional[Sequence] = None,
                     exact_overlaps: bool = True
                     ) -> Tuple[Tensor, Tensor]:
        """Assign one set of priors in every image of a batch.

        Args:
            priors (Tensor): (N, 4) priors shared by all images.
            gt_bboxes (Tensor): (B, G, 4) padded ground truths.
            gt_valid (Tensor): (B, G) mask of real ground truths.
            excluded (Tensor, optional): (B, N) priors that take no part
                (outside the image or ignored): their IoU counts as -1, so
                they end up ignored (-1) and never win a low-quality match.
                Images without ground truth are all background, as in
                mmdet, whatever ``excluded`` says.
            layout (list[GridLevel], optional): the regular grid the priors
                were made on (``AnchorGenerator.grid_layout``). With it, IoUs
                are computed only in the window of anchors near each ground
                truth (:func:`windowed_reductions`), with results identical
                to the dense computation; without it, or where the windows
                would not be cheaper, every IoU is computed.
            exact_overlaps (bool): with a layout, whether ``max_overlaps``
                must be exact everywhere. False (what the head asks for: it
                only uses ``gt_inds``) computes only the pairs that reach the
                lowest IoU threshold the labels depend on; ``gt_inds`` is the
                same, ``max_overlaps`` is exact where it reaches that
                threshold and 0 below it.

        Returns:
            tuple[Tensor, Tensor]: ``gt_inds`` (B, N) int64 (-1 ignored, 0
            background, g + 1 for ground truth g) and ``max_overlaps`` (B, N).
        """
        num_imgs, num_gts = gt_valid.shape
        num_priors = priors.size(0)
        if num_gts == 0:
            # No image of the batch has a ground truth: all background, as
            # mmdet assigns an image without ground truth.
            return (torch.zeros((num_imgs, num_priors), dtype=torch.long,
                                device=priors.device),
                    priors.new_zeros((num_imgs, num_priors)))
        if (self.gpu_assign_thr > 0 and num_gts > self.gpu_assign_thr
                and priors.device.type != 'cpu'):
            # Many ground truths: assign on the CPU to spare device memory.
            gt_inds, max_overlaps = self.assign_batch(
                priors.cpu(), gt_bboxes.cpu(), gt_valid.cpu(),
                None if excluded is None else excluded.cpu(), layout)
            return gt_inds.to(priors.device), max_overlaps.to(priors.device)
        if excluded is not None:
            excluded = excluded & gt_valid.any(dim=1, keepdim=True)

        reduced = None
        if layout is not None and self._plain_iou:
            reduced = windowed_reductions(
                priors, gt_bboxes, gt_valid, excluded, layout,
                self.min_pos_iou,
                self.match_low_quality and self.gt_max_assign_all,
                0. if exact_overlaps else self.label_iou_floor)
        if reduced is None:
            reduced = self._dense_reductions(priors, gt_bboxes, gt_valid,
                                             excluded)
            path = 'dense'
        else:
            path = 'windowed'
        print_log(f'MaxIoUAssigner: {path} IoU for {num_imgs} images x '
                  f'{num_gts} ground truths x {num_priors} priors',
                  logger='current', level=logging.DEBUG)
        max_overlaps, argmax, gt_max, gt_argmax, low = reduced

        gt_inds = torch.full_like(argmax, -1)
        if isinstance(self.neg_iou_thr, tuple):
            lo, hi = self.neg_iou_thr
            gt_inds[(max_overlaps >= lo) & (max_overlaps < hi)] = 0
        else:
            gt_inds[(max_overlaps >= 0)
                    & (max_overlaps < self.neg_iou_thr)] = 0
        pos = max_overlaps >= self.pos_iou_thr
        gt_inds[pos] = argmax[pos] + 1
        # An image without ground truth is all background, as mmdet assigns
        # it, also when neg_iou_thr is a range that excludes IoU 0 (its
        # padded IoUs). No host sync: a masked fill over the batch.
        gt_inds.masked_fill_(~gt_valid.any(dim=1, keepdim=True), 0)

        if self.match_low_quality:
            if not self.gt_max_assign_all:
                # Each eligible ground truth takes its first best anchor;
                # later ground truths overwrite earlier ones (mmdet's loop
                # order), so each anchor takes the largest index.
                rank = _low_quality_rank(gt_valid, gt_max, self.min_pos_iou)
                low = torch.zeros_like(gt_inds)
                low.scatter_reduce_(1, gt_argmax, rank, reduce='amax')
            gt_inds = torch.where(low > 0, low, gt_inds)
        return gt_inds, max_overlaps

    def _dense_reductions(self, priors: Tensor, gt_bboxes: Tensor,
                          gt_valid: Tensor, excluded: Optional[Tensor]):
        """The reductions of the (B, G, N) IoU, computed in anchor chunks.

        Returns:
            tuple: ``max_overlaps`` (B, N), ``argmax`` (B, N) (lowest ground
            truth among ties), ``gt_max`` (B, G), ``gt_argmax`` (B, G)
            (lowest anchor among ties) and ``low`` (B, N), the low-quality
            match of each anchor with ``gt_max_assign_all`` (the largest
            eligible ground-truth index + 1 whose best IoU the anchor
            reaches; 0 for none), None without it.
        """
        num_imgs, num_gts = gt_valid.shape
        num_priors = priors.size(0)
        chunk = max(1, _MAX_IOU_ELEMENTS // max(1, num_imgs * num_gts))
        workspace = priors.new_empty(3 * num_imgs * num_gts *
                                     min(chunk, num_priors))

        def overlaps_of(start: int, end: int) -> Tensor:
            """(B, G, n) IoU; padded ground truths at 0, excluded priors
            at -1. A view of ``workspace`` for the plain IoU."""
            if self._plain_iou:
                ious = box_iou(gt_bboxes, priors[start:end], workspace)
            else:
                ious = self.iou_calculator(
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
        if self.match_low_quality and self.gt_max_assign_all:
            rank = _low_quality_rank(gt_valid, gt_max, self.min_pos_iou)
            eligible = rank > 0
            rank_f = rank.to(priors.dtype)
            zero = priors.new_zeros(())
            low = torch.zeros_like(argmax)
            for (start, end), chunk_max in zip(bounds, chunk_maxes):
                # Only chunks holding some eligible gt's best IoU can
                # change anything; usually few, so IoU is rarely redone.
                if not bool(((chunk_max == gt_max) & eligible).any()):
                    continue
                ious = cached if cached is not None else overlaps_of(
                    start, end)
                # Ranks are exact in fp32; where() writes back into the
                # IoU buffer instead of allocating an int64 tensor.
                hit = ious == gt_max[:, :, None]
                ranked = torch.where(hit, rank_f[:, :, None], zero, out=ious)
                low[:, start:end] = ranked.amax(dim=1).long()
        return max_overlaps, argmax, gt_max, gt_argmax, low

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(pos_iou_thr={self.pos_iou_thr}, '
                f'neg_iou_thr={self.neg_iou_thr}, '
                f'min_pos_iou={self.min_pos_iou}, '
                f'gt_max_assign_all={self.gt_max_assign_all}, '
                f'ignore_iof_thr={self.ignore_iof_thr}, '
                f'match_low_quality={self.match_low_quality})')


def _low_quality_rank(gt_valid: Tensor, gt_max: Tensor,
                      min_pos_iou: float) -> Tensor:
    """(B, G) int64: g + 1 for the ground truths that take part in
    low-quality matching, 0 for the others.

    A ground truth takes part if it is real, reaches ``min_pos_iou`` and
    overlaps some anchor at all (the #8289 difference: mmdet matches an
    unreachable ground truth to every anchor with IoU 0). Later ground truths
    overwrite earlier ones in mmdet's loop, so an anchor takes the largest
    rank.
    """
    eligible = gt_valid & (gt_max >= min_pos_iou) & (gt_max > 0)
    return torch.arange(
        1, gt_valid.size(1) + 1, device=gt_valid.device)[None, :] * eligible


# Windowed assignment is used while its IoU pairs are at most this share of
# the dense B x G x N (below it, the index arithmetic per pair costs more than
# the saved IoUs).
_WINDOWED_MAX_SHARE = 0.25
# IoU pairs per chunk of ground truths in the windowed path.
_MAX_WINDOW_PAIRS = 1 << 22
# Relative slack on an IoU floor when bounding windows: fp32 IoUs are exact
# to ~1e-7 relative, so no pair at or above the floor can fall outside.
_FLOOR_SLACK = 1e-4


def _shape_windows(boxes: Tensor, level, floor: float) -> Tuple[Tensor, ...]:
    """Per box and anchor shape, the cells of one level whose anchor can
    reach IoU >= ``floor`` with the box (> 0 when ``floor`` is 0).

    Anchor ``base[a] + (x * sw, y * sh)`` has x-overlap ``ox`` with the box.
    IoU >= t needs ``ox * oy >= t * union >= t * max(area_a, area_b)`` with
    ``oy <= min(h_a, h_b)``, so ``ox >= ox_min = t * max(areas) / min(h_a,
    h_b)``, which bounds x by ``x1 + ox_min - base[a, 2] <= x * sw <= x2 -
    ox_min - base[a, 0]`` (and y alike; ``ox > 0`` for t = 0). The floor is
    lowered by ``_FLOOR_SLACK`` and the window widened by one cell on each
    side, so rounding never leaves a qualifying anchor out; IoUs are then
    computed exactly on the window.

    Args:
        boxes (Tensor): (M, 4) float64.
        level (GridLevel): the level.
        floor (float): IoU the anchors must be able to reach.

    Returns:
        tuple[Tensor, ...]: int64 (M, A) each: first column x0, first row
        y0, window width wx and height wy (0 where empty).
    """
    base = level.base_anchors.to(boxes)  # A, 4
    bw, bh = base[:, 2] - base[:, 0], base[:, 3] - base[:, 1]
    gw = (boxes[:, 2] - boxes[:, 0])[:, None]
    gh = (boxes[:, 3] - boxes[:, 1])[:, None]
    t = max(floor, 0.) * (1 - _FLOOR_SLACK)
    need = t * torch.maximum(bw * bh, gw * gh)  # M, A
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


def _window_pairs(windows, layout, gts: Tensor) -> Tuple[Tensor, Tensor]:
    """All (ground truth, anchor) pairs of the windows of ``gts``.

    Args:
        windows (list[tuple]): :func:`_shape_windows` of every ground
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


def _pair_iou(gt_boxes: Tensor, priors: Tensor) -> Tensor:
    """IoU of paired boxes (P, 4) and (P, 4), with :func:`box_iou`'s
    arithmetic (hence the same floats)."""
    area_gt = (gt_boxes[:, 2] - gt_boxes[:, 0]) * (
        gt_boxes[:, 3] - gt_boxes[:, 1])
    area_prior = (priors[:, 2] - priors[:, 0]) * (priors[:, 3] - priors[:, 1])
    w = torch.minimum(gt_boxes[:, 2], priors[:, 2])
    w.sub_(torch.maximum(gt_boxes[:, 0], priors[:, 0])).clamp_(min=0)
    h = torch.minimum(gt_boxes[:, 3], priors[:, 3])
    h.sub_(torch.maximum(gt_boxes[:, 1], priors[:, 1])).clamp_(min=0)
    overlap = w.mul_(h)
    union = torch.add(area_gt, area_prior)
    union.sub_(overlap).clamp_(min=1e-6)
    return overlap.div_(union)


def windowed_reductions(priors: Tensor,
                        gt_bboxes: Tensor,
                        gt_valid: Tensor,
                        excluded: Optional[Tensor],
                        layout: Sequence,
                        min_pos_iou: float,
                        assign_all: bool,
                        iou_floor: float = 0.):
    """:meth:`MaxIoUAssigner._dense_reductions` from the IoUs near each
    ground truth only.

    On each level of a regular grid, the anchors of one shape that reach a
    given IoU with a box lie in a small window of cells
    (:func:`_shape_windows`). Only those IoUs are computed, with the dense
    path's arithmetic, and the reductions keep the dense tie rules (lowest
    ground truth per anchor, lowest anchor per ground truth, largest eligible
    ground truth in low-quality matching).

    With ``iou_floor=0`` the windows hold every overlapping pair, so all
    results equal the dense path's, bit for bit. With ``iou_floor > 0`` (the
    lowest IoU threshold the labels depend on) the windows hold the pairs
    with IoU >= ``iou_floor``, which are far fewer: per-anchor values are
    then exact where they reach the floor (below it ``max_overlaps`` reads 0
    and ``argmax`` 0; every label that depends on them is the same), and a
    ground truth whose best IoU is below the floor (a low-quality match) is
    redone with its full window, so ``gt_max``, ``gt_argmax`` and ``low`` are
    exact for every ground truth.

    Args:
        priors (Tensor): (N, 4), the grid's anchors concatenated.
        gt_bboxes (Tensor): (B, G, 4) padded ground truths.
        gt_valid (Tensor): (B, G) mask of real ground truths.
        excluded (Tensor, optional): (B, N) priors at IoU -1, already
            restricted to images with ground truth.
        layout (list[GridLevel]): the grid of ``priors``.
        min_pos_iou (float): low-quality matching threshold.
        assign_all (bool): compute ``low`` (``gt_max_assign_all``).
        iou_floor (float): see above.

    Returns:
        tuple | None: as :meth:`MaxIoUAssigner._dense_reductions`, or None
        where the windows would not be cheaper than the dense IoU (or the
        priors do not match the layout).
    """
    num_imgs, num_gts = gt_valid.shape
    num_priors = priors.size(0)
    last = layout[-1]
    if last.start + last.height * last.width * last.base_anchors.size(0) \
            != num_priors:
        return None
    device = priors.device
    flat_gts = gt_valid.reshape(-1).nonzero().squeeze(1)  # b * G + g order
    boxes = gt_bboxes.reshape(-1, 4)[flat_gts]
    if not bool(torch.isfinite(boxes).all()):
        return None
    boxes64 = boxes.double()

    def pairs_per_gt(windows):
        return sum(wx.mul(wy).sum(dim=1) for _, _, wx, wy in windows)

    windows = [_shape_windows(boxes64, level, iou_floor) for level in layout]
    counts = pairs_per_gt(windows)
    if int(counts.sum()) > _WINDOWED_MAX_SHARE * num_imgs * num_gts * \
            num_priors:
        return None

    img_of = flat_gts // num_gts
    gt_of = flat_gts % num_gts
    # Anchors that reach no ground truth: IoU 0 with all (dense: the max
    # over G of zeros, first index 0), or -1 where excluded.
    max_flat = priors.new_zeros(num_imgs * num_priors)
    if excluded is not None:
        max_flat.masked_fill_(excluded.reshape(-1), -1)
    arg_flat = torch.zeros(num_imgs * num_priors, dtype=torch.long,
                           device=device)
    gt_max = priors.new_zeros(num_imgs * num_gts)
    gt_argmax = torch.zeros(num_imgs * num_gts, dtype=torch.long,
                            device=device)
    low = (torch.zeros(num_imgs * num_priors, dtype=torch.long,
                       device=device) if assign_all else None)
    excluded_flat = None if excluded is None else excluded.reshape(-1)

    def run(members: Tensor, windows, counts, floor: float) -> None:
        """Reduce the window pairs of the ground truths ``members`` (indices
        into ``flat_gts``), in chunks of about ``_MAX_WINDOW_PAIRS``; only
        ground truths whose best IoU reaches ``floor`` (exact there) make
        low-quality matches."""
        nonlocal max_flat, arg_flat, gt_max, gt_argmax
        cum = torch.cumsum(counts[members], 0)
        c0 = 0
        while c0 < len(members):
            done = int(cum[c0 - 1]) if c0 else 0
            c1 = max(c0 + 1, int(torch.searchsorted(
                cum, done + _MAX_WINDOW_PAIRS, right=True)))
            gts = members[c0:c1]
            local_gt, pair_anchor = _window_pairs(windows, layout, gts)
            pair_gt = gts[local_gt]
            iou = _pair_iou(boxes[pair_gt], priors[pair_anchor])
            flat_anchor = img_of[pair_gt] * num_priors + pair_anchor
            keep = iou > 0
            if excluded_flat is not None:
                keep &= ~excluded_flat[flat_anchor]
            iou, pair_gt, pair_anchor, flat_anchor = (
                iou[keep], pair_gt[keep], pair_anchor[keep],
                flat_anchor[keep])
            g = gt_of[pair_gt]

            # Per anchor: best IoU, lowest ground truth among ties; merged by
            # (value, then lower index), so the order of chunks and passes
            # does not matter. -1 where untouched: never better than 0 (no
            # overlap) or -1 (excluded), while every kept IoU is > 0.
            chunk_max = priors.new_full((num_imgs * num_priors, ), -1.)
            chunk_max.scatter_reduce_(0, flat_anchor, iou, reduce='amax')
            tie = iou == chunk_max[flat_anchor]
            chunk_arg = torch.full_like(arg_flat, num_gts)
            chunk_arg.scatter_reduce_(0, flat_anchor[tie], g[tie],
                                      reduce='amin')
            better = (chunk_max > max_flat) | ((chunk_max == max_flat) &
                                               (chunk_arg < arg_flat))
            max_flat = torch.where(better, chunk_max, max_flat)
            arg_flat = torch.where(better, chunk_arg, arg_flat)

            # Per ground truth (all its pairs are in this chunk): best IoU
            # and the lowest anchor reaching it.
            slot = flat_gts[pair_gt]
            chunk_gt_max = torch.zeros_like(gt_max)
            chunk_gt_max.scatter_reduce_(0, slot, iou, reduce='amax')
            best = iou == chunk_gt_max[slot]
            first = torch.full_like(gt_argmax, num_priors)
            first.scatter_reduce_(0, slot[best], pair_anchor[best],
                                  reduce='amin')
            mine = torch.zeros_like(gt_argmax, dtype=torch.bool)
            mine[flat_gts[gts]] = True
            gt_max = torch.where(mine, chunk_gt_max, gt_max)
            gt_argmax = torch.where(mine & (first < num_priors), first,
                                    gt_argmax)
            if low is not None:
                value = chunk_gt_max[slot]
                hit = best & (value >= min_pos_iou) & (value > 0) & \
                    (value >= floor)
                low.scatter_reduce_(0, flat_anchor[hit], g[hit] + 1,
                                    reduce='amax')
            c0 = c1

    run(torch.arange(len(flat_gts), device=device), windows, counts,
        iou_floor)
    if iou_floor > 0:
        # Best IoU below the floor: redo those ground truths with every
        # overlapping anchor, for their exact best IoU and its ties.
        weak = (gt_max[flat_gts] < iou_floor).nonzero().squeeze(1)
        if len(weak):
            full = [_shape_windows(boxes64, level, 0.) for level in layout]
            run(weak, full, pairs_per_gt(full), 0.)
    return (max_flat.view(num_imgs, num_priors),
            arg_flat.view(num_imgs, num_priors),
            gt_max.view(num_imgs, num_gts),
            gt_argmax.view(num_imgs, num_gts),
            None if low is None else low.view(num_imgs, num_priors))
