"""RetinaNet's post-processing: from dense maps to detections.

Small functions, each testable alone, that :class:`RetinaHead` calls in
:meth:`~RetinaHead.predict_by_feat` (the tiled-inference and export paths
reuse them):

* :func:`select_topk_candidates` -- the (anchor, class) pairs above
  ``score_thr``, the ``nms_pre`` best per image and level, selected image by
  image and level by level with a loose test on the logits first, so that
  only the survivors pass through the sigmoid (mmdet sigmoids every logit);
* :func:`gather_deltas` -- the box deltas of those anchors only;
* :func:`detections_of_image` -- decode, rescale, drop small boxes,
  class-aware NMS, keep ``max_per_img`` (mmdet's ``_bbox_post_process``);
* :func:`class_aware_nms` -- mmcv's ``batched_nms`` with an early stop;
  rotated boxes (``nms_rotated``) class by class
  (:func:`rotated_nms_per_class`).

Rotated boxes (cx, cy, w, h, angle; mmrotate's coder) pass through the same
functions: the coder decodes to mmrotate's ``RotatedBoxes``, whose
``rescale_`` and widths / heights mmdet's helpers call.

Deliberate difference from mmdet: ``nms_pre=-1`` (or any value <= 0) keeps
every candidate; mmdet's ``min(nms_pre, n)`` slice drops the lowest one of
each level there.
"""
import math
from typing import Dict, List, Sequence, Tuple

import torch
from mmcv.ops import batched_nms, nms
from mmdet.structures.bbox import get_box_tensor, get_box_wh, scale_boxes
from mmengine.structures import InstanceData
from torch import Tensor

__all__ = [
    'select_topk_candidates', 'gather_deltas', 'detections_of_image',
    'post_process', 'class_aware_nms', 'rotated_nms_per_class',
    'logit_threshold', 'predict_detections'
]


def logit_threshold(score_thr: float, dtype: torch.dtype) -> float:
    """A logit bound for ``sigmoid(x) > score_thr`` that is safe in ``dtype``.

    Maps are compared with this bound first, so that only the few survivors
    are passed through the sigmoid. A Python scalar compared with a tensor is
    cast to the tensor's dtype; in fp16 / bf16 (autocast) that rounding may go
    *up*, past logits whose score passes the exact test. The bound returned
    is representable in ``dtype`` and at most the true logit minus a margin,
    so the pre-threshold never drops a candidate the exact test keeps.

    Returns:
        float: the bound, ``-inf`` when ``score_thr`` is not in (0, 1).
    """
    if not 0 < score_thr < 1:
        return -math.inf
    # 1e-3 in logit units covers the fp32 sigmoid's rounding near the bound.
    exact = math.log(score_thr / (1 - score_thr)) - 1e-3
    bound = torch.tensor(exact, dtype=torch.float64).to(dtype)
    if float(bound) > exact:
        bound = torch.nextafter(bound, bound.new_tensor(-math.inf))
    return float(bound)


def select_topk_candidates(cls_scores: Sequence[Tensor], num_anchors: int,
                           score_thr: float, nms_pre: int) -> Dict[str, Tensor]:
    """(anchor, class) pairs kept before NMS, of every image and level.

    Selected per image and level (memory follows one image's candidates):
    sigmoid score > ``score_thr``, the ``nms_pre`` best
    (all if <= 0), in descending score; ties are broken by mmdet's flat index
    ((y * W + x) * A + a) * K + k, lowest first.

    Args:
        cls_scores (list[Tensor]): B x (A*K) x H_l x W_l logits per level.
        num_anchors (int): A.
        score_thr (float): score threshold.
        nms_pre (int): candidates per image and level; <= 0 keeps all.

    Returns:
        dict[str, Tensor]: ``img``, ``level``, ``anchor`` (index within the
        level), ``label``, ``score``; each (M,), ordered by image, level,
        then descending score. Scores are fp32 (the sigmoid of the logits
        in fp32, also for fp16 / bf16 maps).
    """
    groups = []
    for level, logits in enumerate(cls_scores):
        num_imgs, channels, height, width = logits.shape
        num_classes = channels // num_anchors
        hw = height * width
        # Loose test on the logits (no sigmoid over the whole map), then the
        # exact one on the survivors; image by image, so that memory follows
        # one image's candidates, not the batch's.
        logit_thr = logit_threshold(score_thr, logits.dtype)
        for i in range(num_imgs):
            flat_logits = logits[i].reshape(-1)
            idx = (flat_logits > logit_thr).nonzero().squeeze(1)
            score = flat_logits[idx].float().sigmoid()
            keep = score > score_thr
            idx, score = idx[keep], score[keep]
            idx, score = _top_scores(score, idx, hw, num_anchors,
                                     num_classes, nms_pre)
            # CHW position -> channel, cell; mmdet's per-image index is
            # ((y * W + x) * A + a) * K + k.
            chan, cell = idx // hw, idx % hw
            groups.append((i, level, cell * num_anchors + chan // num_classes,
                           chan % num_classes, score))
    groups.sort(key=lambda g: (g[0], g[1]))
    return dict(
        img=torch.cat([torch.full_like(g[2], g[0]) for g in groups]),
        level=torch.cat([torch.full_like(g[2], g[1]) for g in groups]),
        anchor=torch.cat([g[2] for g in groups]),
        label=torch.cat([g[3] for g in groups]),
        score=torch.cat([g[4] for g in groups]))


def _mmdet_order(idx: Tensor, hw: int, num_anchors: int,
                 num_classes: int) -> Tensor:
    """mmdet's flat index ((y * W + x) * A + a) * K + k of CHW positions
    ``idx`` (channel a * K + k, cell y * W + x)."""
    chan, cell = idx // hw, idx % hw
    return (cell * num_anchors + chan // num_classes) * num_classes + \
        chan % num_classes


def _top_scores(score: Tensor, idx: Tensor, hw: int, num_anchors: int,
                num_classes: int, k: int) -> Tuple[Tensor, Tensor]:
    """The k best candidates (all when k <= 0), by descending score, ties by
    ascending mmdet flat index, as mmdet's full sort orders them.

    Args:
        score (Tensor): (M,) scores.
        idx (Tensor): (M,) CHW positions in one image's map.

    Returns:
        tuple[Tensor, Tensor]: ``idx`` and ``score`` of the kept candidates,
        in order. The flat index is computed for the survivors only.
    """
    if 0 < k < score.numel():
        kth = score.topk(k, sorted=False).values.min()
        above = score > kth
        tied = (score == kth).nonzero().squeeze(1)
        tied = tied[_mmdet_order(idx[tied], hw, num_anchors,
                                 num_classes).argsort()][:k - int(above.sum())]
        sel = torch.cat([above.nonzero().squeeze(1), tied])
        idx, score = idx[sel], score[sel]
    order = _mmdet_order(idx, hw, num_anchors, num_classes).argsort()
    idx, score = idx[order], score[order]
    order = score.argsort(descending=True, stable=True)
    return idx[order], score[order]


def gather_deltas(bbox_pred: Tensor, img: int, anchor: Tensor,
                  num_anchors: int, dim: int) -> Tensor:
    """Deltas of the given anchors of one image and level.

    Args:
        bbox_pred (Tensor): B x (A*D) x H x W.
        img (int): image index.
        anchor (Tensor): (M,) indices (y * W + x) * A + a.
        num_anchors (int): A.
        dim (int): D, the box coder's encode size.

    Returns:
        Tensor: (M, D).
    """
    width = bbox_pred.size(-1)
    a = anchor % num_anchors
    cell = anchor // num_anchors
    y, x = cell // width, cell % width
    chans = a[:, None] * dim + torch.arange(dim, device=anchor.device)
    return bbox_pred[img][chans, y[:, None], x[:, None]]


def detections_of_image(cand: Dict[str, Tensor], img: int,
                        level_priors: Sequence[Tensor],
                        bbox_preds: Sequence[Tensor], num_anchors: int,
                        bbox_coder, img_meta: dict, cfg: dict,
                        rescale: bool, with_nms: bool) -> InstanceData:
    """Detections of one image from the batch's candidates.

    Args:
        cand (dict[str, Tensor]): output of :func:`select_topk_candidates`.
        img (int): image index in the batch.
        level_priors (list[Tensor]): (N_l, 4) anchors per level.
        bbox_preds (list[Tensor]): B x (A*D) x H_l x W_l per level.
        num_anchors (int): A.
        bbox_coder: the head's box coder (``decode``, ``encode_size``).
        img_meta (dict): ``img_shape`` (and ``scale_factor`` to rescale).
        cfg (dict): ``min_bbox_size``, ``nms``, ``max_per_img``.
        rescale (bool): map boxes back to the original image.
        with_nms (bool): apply NMS.

    Returns:
        InstanceData: ``bboxes`` (M, 4), ``scores`` (M,), ``labels`` (M,).
    """
    sel = cand['img'] == img
    level, anchor = cand['level'][sel], cand['anchor'][sel]
    priors = torch.cat([
        level_priors[lvl][anchor[level == lvl]]
        for lvl in range(len(level_priors))
    ])
    deltas = torch.cat([
        gather_deltas(bbox_preds[lvl], img, anchor[level == lvl],
                      num_anchors, bbox_coder.encode_size)
        for lvl in range(len(level_priors))
    ]).to(priors.dtype)  # fp16 / bf16 deltas decode in the priors' fp32
    result = InstanceData()
    result.bboxes = bbox_coder.decode(
        priors, deltas, max_shape=img_meta['img_shape'])
    result.scores = cand['score'][sel]
    result.labels = cand['label'][sel]
    return post_process(result, cfg, rescale, with_nms, img_meta)


def post_process(results: InstanceData, cfg: dict, rescale: bool,
                 with_nms: bool, img_meta: dict) -> InstanceData:
    """Rescale, drop small boxes, class-aware NMS, keep ``max_per_img``
    (mmdet's ``BaseDenseHead._bbox_post_process`` without score factors).

    Args:
        results (InstanceData): ``bboxes`` (M, 4) in the input image,
            ``scores`` (M,), ``labels`` (M,).
        cfg (dict): ``min_bbox_size``, ``nms``, ``max_per_img``.
        rescale (bool): divide boxes by ``img_meta['scale_factor']``.
        with_nms (bool): apply NMS and ``max_per_img``.
        img_meta (dict): the image's meta information.

    Returns:
        InstanceData: the kept detections, by descending score after NMS.
    """
    if rescale:
        if img_meta.get('scale_factor') is None:
            raise ValueError('rescale=True needs img_meta["scale_factor"]')
        scale_factor = [1 / s for s in img_meta['scale_factor']]
        results.bboxes = scale_boxes(results.bboxes, scale_factor)
    if cfg.get('min_bbox_size', -1) >= 0:
        w, h = get_box_wh(results.bboxes)
        keep = (w > cfg['min_bbox_size']) & (h > cfg['min_bbox_size'])
        if not keep.all():
            results = results[keep]
    if with_nms and results.bboxes.numel() > 0:
        det_scores, keep = class_aware_nms(
            get_box_tensor(results.bboxes), results.scores, results.labels,
            cfg['nms'], cfg['max_per_img'])
        results = results[keep]
        results.scores = det_scores
        results = results[:cfg['max_per_img']]
    return results


def class_aware_nms(bboxes: Tensor, scores: Tensor, labels: Tensor,
                    nms_cfg: dict, max_per_img: int) -> Tuple[Tensor, Tensor]:
    """mmcv's ``batched_nms``, stopping early once ``max_per_img`` boxes
    are kept.

    Greedy NMS decides each box from the higher-scored boxes alone, so the
    boxes kept among the top-m candidates are the first boxes the full run
    keeps. NMS runs on the top 4 * ``max_per_img`` candidates, then on 4x
    more while fewer than ``max_per_img`` survive. The class offsets use the
    largest coordinate of all candidates, as ``batched_nms`` does, so the
    IoUs and hence the results are mmcv's.

    Args:
        bboxes (Tensor): (M, 4) boxes.
        scores (Tensor): (M,) scores.
        labels (Tensor): (M,) class indices.
        nms_cfg (dict): mmcv NMS config (``type``, ``iou_threshold``, ...).
        max_per_img (int): boxes wanted; <= 0 means all.

    Returns:
        tuple[Tensor, Tensor]: scores after NMS and indices into the inputs
        of the kept boxes, by descending score.
    """
    cfg = dict(nms_cfg)
    nms_type = cfg.pop('type', 'nms')
    class_agnostic = cfg.pop('class_agnostic', False)
    split_thr = cfg.pop('split_thr', 10000)
    if nms_type == 'nms_rotated' and not class_agnostic and \
            bboxes.size(-1) == 5 and len(bboxes):
        return rotated_nms_per_class(bboxes, scores, labels, cfg)
    if (nms_type != 'nms' or max_per_img <= 0
            or len(bboxes) <= 4 * max_per_img or len(bboxes) >= split_thr):
        dets, keep = batched_nms(bboxes, scores, labels, nms_cfg,
                                 class_agnostic)
        return dets[:, -1], keep
    if class_agnostic:
        boxes_for_nms = bboxes
    else:
        max_coordinate = bboxes.max()
        offsets = labels.to(bboxes) * (
            max_coordinate + torch.tensor(1).to(bboxes))
        boxes_for_nms = bboxes + offsets[:, None]
    order = scores.argsort(descending=True, stable=True)
    num = 4 * max_per_img
    while True:
        top = order[:num]
        dets, keep = nms(boxes_for_nms[top], scores[top], **cfg)
        if len(keep) >= max_per_img or num >= len(order):
            return dets[:, -1], top[keep]
        num *= 4


def rotated_nms_per_class(bboxes: Tensor, scores: Tensor, labels: Tensor,
                          nms_args: dict) -> Tuple[Tensor, Tensor]:
    """mmcv's class-aware ``batched_nms`` with ``nms_rotated``, one class at
    a time.

    ``batched_nms`` shifts the centres of class c by c * (max centre + max
    side + 1), so that classes never overlap, and runs one rotated NMS over
    all candidates: its kernel computes the rotated IoU of every pair, also
    of the pairs of different classes (O(n^2) polygon clippings: 21 s for
    the 7,000 candidates of a 1024 px DOTA image with 15 classes on a
    2-core EPYC). Here the same shifted boxes go through ``nms_rotated``
    class by class, so every IoU is computed with mmcv's floats and the kept
    boxes are those of ``batched_nms``; the pairs of different classes,
    which cannot overlap, are skipped.

    Args:
        bboxes (Tensor): (M, 5) rotated boxes.
        scores (Tensor): (M,).
        labels (Tensor): (M,) class indices.
        nms_args (dict): ``nms_rotated``'s arguments (``iou_threshold``,
            ``clockwise``).

    Returns:
        tuple[Tensor, Tensor]: scores after NMS and indices into the inputs
        of the kept boxes, by descending score (exact ties may be ordered
        differently from ``batched_nms``).
    """
    from mmcv.ops import nms_rotated
    nms_args = {k: v for k, v in nms_args.items() if k != 'max_num'}
    max_coordinate = bboxes[:, :2].max() + bboxes[:, 2:4].max()
    offsets = labels.to(bboxes) * (max_coordinate +
                                   torch.tensor(1).to(bboxes))
    shifted = torch.cat([bboxes[:, :2] + offsets[:, None], bboxes[:, 2:5]],
                        dim=-1)
    keep = []
    for label in torch.unique(labels):
        members = (labels == label).nonzero().squeeze(1)
        _, kept = nms_rotated(shifted[members], scores[members], **nms_args)
        keep.append(members[kept])
    keep = torch.cat(keep)
    keep = keep[scores[keep].argsort(descending=True, stable=True)]
    return scores[keep], keep


def predict_detections(cls_scores: Sequence[Tensor],
                       bbox_preds: Sequence[Tensor],
                       level_priors: Sequence[Tensor], num_anchors: int,
                       bbox_coder, batch_img_metas: Sequence[dict],
                       cfg: dict, rescale: bool = False,
                       with_nms: bool = True) -> List[InstanceData]:
    """Detections of every image of a batch (the whole post-processing).

    Args:
        cls_scores (list[Tensor]): B x (A*K) x H_l x W_l logits per level.
        bbox_preds (list[Tensor]): B x (A*D) x H_l x W_l per level.
        level_priors (list[Tensor]): (H_l*W_l*A, 4) anchors per level.
        num_anchors (int): A.
        bbox_coder: the head's box coder.
        batch_img_metas (list[dict]): ``img_shape`` (``scale_factor``).
        cfg (dict): ``nms_pre``, ``score_thr``, ``min_bbox_size``, ``nms``,
            ``max_per_img``.
        rescale (bool): map boxes back to the original images.
        with_nms (bool): apply NMS.

    Returns:
        list[InstanceData]: ``bboxes`` (M_i, 4), ``scores`` (M_i,),
        ``labels`` (M_i,) per image.
    """
    cand = select_topk_candidates([s.detach() for s in cls_scores],
                                  num_anchors, cfg.get('score_thr', 0),
                                  cfg.get('nms_pre', -1))
    bbox_preds = [p.detach() for p in bbox_preds]
    return [
        detections_of_image(cand, i, level_priors, bbox_preds, num_anchors,
                            bbox_coder, meta, cfg, rescale, with_nms)
        for i, meta in enumerate(batch_img_metas)
    ]
