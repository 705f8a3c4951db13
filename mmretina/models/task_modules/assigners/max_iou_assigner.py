"""Max-IoU anchor assignment (RetinaNet paper sec. 4, "Anchors"): the
matching policy.

An anchor is positive for the ground truth it overlaps most when that IoU is
>= 0.5, negative (background) when its best IoU is < 0.4, and ignored in
between. Low-quality matching then gives every ground truth its best
anchor(s) even below 0.5, so that no object goes without a positive.

The assignment of a whole batch is one tensor program
(:meth:`MaxIoUAssigner.assign_batch`): ground truths are padded per batch and
low-quality matching is vectorised. The policy here consumes only the
reductions of the IoU matrix (:class:`~.iou_engines.IoUReductions`), as
detectron2's ``Matcher`` consumes a quality matrix; computing them is the
job of the engines in :mod:`.iou_engines`: given the anchors' regular grid
(``AnchorGenerator.grid_layout``), IoUs only in the window of anchors near
each ground truth (:func:`~.iou_engines.windowed_reductions`; the cost follows
the objects, not objects x anchors), otherwise every IoU
(:func:`~.iou_engines.dense_reductions`, in anchor chunks). Both give the
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
from mmretina.structures.rotated import rotated_iou
from .iou_engines import (IoUReductions, dense_reductions, low_quality_rank,
                          windowed_reductions)

__all__ = ['MaxIoUAssigner', 'pad_boxes']


def pad_boxes(boxes: list, multiple: int = 8) -> Tuple[Tensor, Tensor]:
    """Stack per-image boxes into one padded tensor.

    The padded count is rounded up to ``multiple`` so that batches with
    similar counts share shapes, without padding to a fixed large maximum.

    Args:
        boxes (list[Tensor]): B tensors of shape (G_i, D) (D = 4, or 5 for
            rotated boxes).

    Returns:
        tuple[Tensor, Tensor]: (B, G, D) boxes (zeros where padded) and
        (B, G) bool mask of real boxes.
    """
    num = max([b.size(0) for b in boxes] + [0])
    size = -(-num // multiple) * multiple
    ref = boxes[0]
    padded = ref.new_zeros((len(boxes), size, ref.size(-1)))
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
        iou_calculator (dict): config of the overlaps calculator. mmrotate's
            ``RBboxOverlaps2D`` (or ``mmretina.RBboxOverlaps2D``) makes this
            a rotated assigner: priors and ground truths (cx, cy, w, h,
            angle), IoUs with mmrotate's arithmetic, computed only near each
            ground truth where the priors come with their grid.
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
        iou_type = str(iou_calculator.get('type')).split('.')[-1]
        self.rotated = iou_type == 'RBboxOverlaps2D'
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
            pred_instances (InstanceData): ``priors`` (N, 4) (or (N, 5)
                rotated), a tensor or
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
        overlaps = rotated_iou if self.rotated else self.iou_calculator
        if self.ignore_wrt_candidates:
            iof = overlaps(priors, ignore, mode='iof')  # B, N, I
            iof = iof.masked_fill(~ignore_valid[:, None, :], -1)
            max_iof = iof.max(dim=2).values
        else:
            iof = overlaps(ignore, priors, mode='iof')  # B, I, N
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
            priors (Tensor): (N, D) priors shared by all images (D = 4, or
                5 for a rotated assigner).
            gt_bboxes (Tensor): (B, G, D) padded ground truths.
            gt_valid (Tensor): (B, G) mask of real ground truths.
            excluded (Tensor, optional): (B, N) priors that take no part
                (outside the image or ignored): their IoU counts as -1, so
                they end up ignored (-1) and never win a low-quality match.
                Images without ground truth are all background, as in
                mmdet, whatever ``excluded`` says.
            layout (list[GridLevel], optional): the regular grid the priors
                were made on (``AnchorGenerator.grid_layout``). With it, IoUs
                are computed only in the window of anchors near each ground
                truth (:func:`~.iou_engines.windowed_reductions`), with
                results identical to the dense computation; without it, or
                where the windows would not be cheaper, every IoU is
                computed.
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

        reduced = self._reductions(priors, gt_bboxes, gt_valid, excluded,
                                   layout, exact_overlaps)
        max_overlaps, argmax = reduced.max_overlaps, reduced.argmax

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
                rank = low_quality_rank(gt_valid, reduced.gt_max,
                                        self.min_pos_iou)
                low = torch.zeros_like(gt_inds)
                low.scatter_reduce_(1, reduced.gt_argmax, rank,
                                    reduce='amax')
            else:
                low = reduced.low
            gt_inds = torch.where(low > 0, low, gt_inds)
        return gt_inds, max_overlaps

    def _reductions(self, priors: Tensor, gt_bboxes: Tensor,
                    gt_valid: Tensor, excluded: Optional[Tensor],
                    layout: Optional[Sequence],
                    exact_overlaps: bool) -> IoUReductions:
        """The IoU reductions from the windowed engine where it applies
        (a layout, the plain IoU, windows cheaper than the dense matrix),
        else from the dense one; arguments as :meth:`assign_batch`."""
        assign_all = self.match_low_quality and self.gt_max_assign_all
        reduced = None
        if layout is not None and (self._plain_iou or self.rotated):
            reduced = windowed_reductions(
                priors, gt_bboxes, gt_valid, excluded, layout,
                self.min_pos_iou, assign_all,
                0. if exact_overlaps else self.label_iou_floor,
                rotated=self.rotated)
        path = 'windowed'
        if reduced is None:
            if self.rotated:
                iou = rotated_iou
            else:
                iou = None if self._plain_iou else self.iou_calculator
            reduced = dense_reductions(
                priors, gt_bboxes, gt_valid, excluded, self.min_pos_iou,
                assign_all, iou)
            path = 'dense'
        num_imgs, num_gts = gt_valid.shape
        print_log(f'MaxIoUAssigner: {path} IoU for {num_imgs} images x '
                  f'{num_gts} ground truths x {priors.size(0)} priors',
                  logger='current', level=logging.DEBUG)
        return reduced

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(pos_iou_thr={self.pos_iou_thr}, '
                f'neg_iou_thr={self.neg_iou_thr}, '
                f'min_pos_iou={self.min_pos_iou}, '
                f'gt_max_assign_all={self.gt_max_assign_all}, '
                f'ignore_iof_thr={self.ignore_iof_thr}, '
                f'match_low_quality={self.match_low_quality})')
