"""Training targets of a dense head, for the whole batch at once.

:func:`batch_targets` turns the anchors, their valid flags and the ground
truths of B images into per-anchor class labels and weights and the
regression targets of the positives. With ``mmretina.MaxIoUAssigner`` the
assignment is one batched call (:meth:`MaxIoUAssigner.assign_batch`); any
other mmdet assigner runs image by image (:func:`assign_per_image`).
"""
from typing import List, NamedTuple, Optional, Sequence, Tuple

import torch
from mmdet.structures.bbox import get_box_tensor
from mmdet.utils import InstanceList, OptInstanceList
from mmengine.structures import InstanceData
from torch import Tensor

from mmretina.models.task_modules.assigners.max_iou_assigner import (
    MaxIoUAssigner, pad_boxes)

__all__ = ['BatchTargets', 'inside_flags', 'batch_targets',
           'assign_per_image', 'check_gt_finite', 'positive_stats']


class BatchTargets(NamedTuple):
    """Training targets of a batch, anchors concatenated over levels.

    Attributes:
        labels (Tensor): (B, N) int64; class of positives, K elsewhere.
        label_weights (Tensor): (B, N) float; 0 for ignored / outside.
        pos_inds (Tensor): (P, 2) int64 (image, anchor) of positives.
        pos_gt_inds (Tensor): (P,) int64 index of each positive's ground
            truth within its image.
        bbox_targets (Tensor): (P, D) regression targets of positives.
        avg_factor (Tensor): scalar, sum over images of max(#pos, 1).
        gt_has_pos (Tensor): (B, G) bool, padded: the ground truths that got
            at least one positive anchor.
        num_gts (Tensor): (B,) int64 ground truths per image.
    """
    labels: Tensor
    label_weights: Tensor
    pos_inds: Tensor
    pos_gt_inds: Tensor
    bbox_targets: Tensor
    avg_factor: Tensor
    gt_has_pos: Tensor
    num_gts: Tensor


def positive_stats(targets: BatchTargets) -> Tuple[Tensor, Tensor, Tensor]:
    """How well the anchors cover the objects, from the targets alone (no
    host sync).

    Returns:
        tuple[Tensor, Tensor, Tensor]: fp32 scalars: positive anchors per
        image, ground truths with at least one positive, ground truths.
    """
    num_imgs = targets.labels.size(0)
    pos_per_img = targets.labels.new_tensor(
        targets.pos_inds.size(0) / max(num_imgs, 1), dtype=torch.float32)
    return (pos_per_img, targets.gt_has_pos.sum().float(),
            targets.num_gts.sum().float())


def inside_flags(anchors: Tensor, valid: Tensor, img_shapes: Sequence[tuple],
                 allowed_border: int) -> Tensor:
    """Anchors that take part in training (mmdet's ``anchor_inside_flags``).

    Args:
        anchors (Tensor): (N, 4) anchors of all levels, or (N, 5) rotated
            ones, which are inside when their centre is (mmrotate's
            ``RotatedBoxes.is_inside``).
        valid (Tensor): (B, N) valid flags (the anchor's cell is on the
            padded image).
        img_shapes (list[tuple]): (h, w, ...) per image.
        allowed_border (int): how far (px) an anchor may reach past the
            image; negative keeps every valid anchor.

    Returns:
        Tensor: (B, N) bool.
    """
    if allowed_border < 0:
        return valid
    img_hw = anchors.new_tensor([s[:2] for s in img_shapes])  # B, 2
    if anchors.size(-1) == 5:
        cx, cy = anchors[None, :, 0], anchors[None, :, 1]
        return valid & (cx >= -allowed_border) & (cy >= -allowed_border) & \
            (cx <= img_hw[:, 1:2] + allowed_border) & \
            (cy <= img_hw[:, 0:1] + allowed_border)
    return valid & (anchors[None, :, 0] >= -allowed_border) & \
        (anchors[None, :, 1] >= -allowed_border) & \
        (anchors[None, :, 2] < img_hw[:, 1:2] + allowed_border) & \
        (anchors[None, :, 3] < img_hw[:, 0:1] + allowed_border)


def check_gt_finite(batch_gt_instances: InstanceList,
                    batch_img_metas: List[dict]) -> None:
    """Reject ground truths that would silently poison the loss."""
    for i, gt in enumerate(batch_gt_instances):
        boxes = get_box_tensor(gt.bboxes)
        if boxes.numel() and not bool(torch.isfinite(boxes).all()):
            bad = (~torch.isfinite(boxes)).any(dim=1).nonzero().flatten()
            name = batch_img_metas[i].get('img_path', f'image {i}')
            raise ValueError(
                f'mmretina.RetinaHead: ground-truth boxes of {name} contain '
                f'NaN or inf (box indices {bad.tolist()[:10]}): '
                f'{boxes[bad[:3]].tolist()}. Check the annotations and the '
                'data pipeline.')


def assign_per_image(assigner, anchors: Tensor, inside: Tensor,
                     batch_gt_instances: InstanceList,
                     batch_gt_instances_ignore: OptInstanceList) -> Tensor:
    """Assignment with any mmdet assigner, one image at a time.

    Args:
        assigner: an mmdet assigner (``assign(pred, gt, ignore)``).
        anchors (Tensor): (N, 4).
        inside (Tensor): (B, N) anchors that take part.

    Returns:
        Tensor: (B, N) gt_inds, -1 outside the image.
    """
    gt_inds = torch.full(inside.shape, -1, dtype=torch.long,
                         device=anchors.device)
    for i, gt in enumerate(batch_gt_instances):
        ignore = (None if batch_gt_instances_ignore is None else
                  batch_gt_instances_ignore[i])
        result = assigner.assign(
            InstanceData(priors=anchors[inside[i]]), gt, ignore)
        gt_inds[i, inside[i]] = result.gt_inds
    return gt_inds


def _assign_batched(assigner: MaxIoUAssigner, anchors: Tensor,
                    inside: Tensor, gt_boxes: Tensor, gt_valid: Tensor,
                    batch_gt_instances_ignore: OptInstanceList,
                    prior_layout: Optional[list]) -> Tensor:
    """(B, N) gt_inds from one batched max-IoU assignment."""
    excluded = ~inside
    if batch_gt_instances_ignore is not None and any(
            g is not None for g in batch_gt_instances_ignore):
        ignore, ignore_valid = pad_boxes([
            anchors.new_zeros((0, anchors.size(-1))) if g is None else
            get_box_tensor(g.bboxes).to(anchors)
            for g in batch_gt_instances_ignore
        ])
        ignored = assigner.ignored_priors(anchors[None], ignore, ignore_valid)
        if ignored is not None:
            excluded = excluded | ignored
    # only gt_inds is used: the windowed path may skip IoUs below the
    # thresholds (same labels)
    gt_inds, _ = assigner.assign_batch(anchors, gt_boxes, gt_valid, excluded,
                                       prior_layout, exact_overlaps=False)
    return gt_inds.masked_fill(~inside, -1)


def batch_targets(assigner,
                  bbox_coder,
                  num_classes: int,
                  anchors: Tensor,
                  valid: Tensor,
                  batch_gt_instances: InstanceList,
                  batch_img_metas: List[dict],
                  batch_gt_instances_ignore: OptInstanceList = None,
                  allowed_border: int = 0,
                  pos_weight: float = -1,
                  reg_decoded_bbox: bool = False,
                  prior_layout: Optional[list] = None,
                  box_type: Optional[type] = None) -> BatchTargets:
    """Targets of every anchor of every image.

    Args:
        assigner: ``mmretina.MaxIoUAssigner`` (batched) or any mmdet
            assigner (per image).
        bbox_coder: encodes the regression targets of positives.
        num_classes (int): K; background is labelled K.
        anchors (Tensor): (N, D) anchors of all levels (D = 4, or 5
            rotated: (cx, cy, w, h, angle)).
        valid (Tensor): (B, N) valid flags.
        batch_gt_instances (list[InstanceData]): ``bboxes`` (G_i, D) and
            ``labels`` (G_i,) per image.
        batch_img_metas (list[dict]): ``img_shape`` per image.
        batch_gt_instances_ignore (list[InstanceData], optional):
            ``bboxes`` to ignore per image.
        allowed_border (int): see :func:`inside_flags`.
        pos_weight (float): classification weight of positives; <= 0 is 1.
        reg_decoded_bbox (bool): targets are boxes, not encoded deltas.
        prior_layout (list[GridLevel], optional): the regular grid of
            ``anchors`` (``AnchorGenerator.grid_layout``), for the windowed
            assignment of ``mmretina.MaxIoUAssigner``.
        box_type (type, optional): the box type the prior generator made
            (mmdet's ``HorizontalBoxes``, mmrotate's ``RotatedBoxes``):
            anchors and ground truths are wrapped in it for the coder, as
            mmdet's ``AnchorHead`` hands them over (mmrotate's coder needs
            ``RotatedBoxes``).

    Returns:
        BatchTargets
    """
    inside = inside_flags(anchors, valid,
                          [m['img_shape'] for m in batch_img_metas],
                          allowed_border)
    if not bool(inside.any(dim=1).all()):
        raise ValueError(
            'There is no valid anchor inside the image boundary. Please '
            'check the image size and anchor sizes, or set '
            '``allowed_border`` to -1 to skip the condition.')
    gt_boxes, gt_valid = pad_boxes(
        [get_box_tensor(g.bboxes).to(anchors) for g in batch_gt_instances])
    gt_labels = torch.full(gt_valid.shape, num_classes, dtype=torch.long,
                           device=anchors.device)
    for i, g in enumerate(batch_gt_instances):
        gt_labels[i, :len(g.labels)] = g.labels
    if isinstance(assigner, MaxIoUAssigner):
        gt_inds = _assign_batched(assigner, anchors, inside, gt_boxes,
                                  gt_valid, batch_gt_instances_ignore,
                                  prior_layout)
    else:
        gt_inds = assign_per_image(assigner, anchors, inside,
                                   batch_gt_instances,
                                   batch_gt_instances_ignore)
    pos = gt_inds > 0
    pos_inds = pos.nonzero()
    pos_img, pos_anchor = pos_inds.unbind(1)
    pos_gt = gt_inds[pos_img, pos_anchor] - 1
    labels = torch.full_like(gt_inds, num_classes)
    labels[pos_img, pos_anchor] = gt_labels[pos_img, pos_gt]
    label_weights = (gt_inds >= 0).float()
    if pos_weight > 0:
        label_weights[pos] = pos_weight
    pos_gt_boxes = gt_boxes[pos_img, pos_gt]
    if reg_decoded_bbox:
        bbox_targets = pos_gt_boxes
    elif box_type is not None:
        bbox_targets = bbox_coder.encode(
            box_type(anchors[pos_anchor], clone=False),
            box_type(pos_gt_boxes, clone=False))
    else:
        bbox_targets = bbox_coder.encode(anchors[pos_anchor], pos_gt_boxes)
    avg_factor = pos.sum(dim=1).clamp(min=1).sum()
    gt_has_pos = torch.zeros_like(gt_valid)
    gt_has_pos[pos_img, pos_gt] = True
    return BatchTargets(labels, label_weights, pos_inds, pos_gt,
                        bbox_targets, avg_factor, gt_has_pos,
                        gt_valid.sum(dim=1))
