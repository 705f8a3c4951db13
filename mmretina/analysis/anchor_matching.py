"""How the anchors of a generator meet a set of boxes, measured with the
assigner's own parts, so the analysis cannot disagree with training.

* :func:`match`: best IoU per box (one anchor per level and shape: the grid
  point nearest to the box centre maximises the IoU, the intersection
  shrinking with the centre offset in x and y separately) and the number of
  anchors with IoU >= a threshold, counted in the windows of cells that the
  assigner's ``shape_windows`` bounds for that IoU.
* :func:`training_verdicts`: per box, what training makes of it -- the real
  ``MaxIoUAssigner`` (``assign_batch``) run on each image's anchors with the
  head's valid and inside flags: positive, low-quality match only, or none.
* :func:`match_exact`: the reference of :func:`match`, IoU with every anchor.

Every IoU is the assigner's arithmetic (``pairwise_iou`` / ``aligned_iou``).
Boxes are xyxy pixels of their (transformed) image; anchors are on the grid
of that image padded to the data preprocessor's divisor, ``ceil(pad /
stride)`` cells per axis as in training.
"""
import math
from typing import Dict, List, Sequence, Tuple

import numpy as np
import torch

# The head's inside flags, the assigner's window bound and window pairs (its
# engine module) and the package's IoU: imported, not copied, so the
# analysis follows them.
from mmretina.models.dense_heads.targets import inside_flags
from mmretina.models.task_modules.assigners.iou_engines import (
    shape_windows, window_pairs)
from mmretina.models.task_modules.assigners.max_iou_assigner import pad_boxes
from mmretina.models.task_modules.prior_generators import AnchorGenerator
from mmretina.structures import aligned_iou, pairwise_iou

__all__ = ['build_generator', 'count_window_positives',
           'match', 'match_exact',
           'training_verdicts', 'oracle_reach', 'POSITIVE', 'LOW_QUALITY',
           'NONE']

# training_verdicts codes
NONE, LOW_QUALITY, POSITIVE = 0, 1, 2


def build_generator(args: dict):
    """mmretina's ``AnchorGenerator`` from its arguments (no ``type``)."""
    return AnchorGenerator(**args)


def _featmap_sizes(gen, pad_h: int, pad_w: int) -> List[Tuple[int, int]]:
    return [(int(math.ceil(pad_h / s[1])), int(math.ceil(pad_w / s[0])))
            for s in gen.strides]


def _by_pad_shape(pad_hw: np.ndarray) -> Dict[Tuple[int, int], np.ndarray]:
    """Box indices grouped by their image's padded (h, w)."""
    groups: Dict[Tuple[int, int], list] = {}
    for i, (h, w) in enumerate(pad_hw.tolist()):
        groups.setdefault((int(h), int(w)), []).append(i)
    return {k: np.asarray(v) for k, v in groups.items()}


def count_window_positives(gen, boxes: np.ndarray, pad_hw: np.ndarray,
                           thr: float, chunk: int = 4096) -> np.ndarray:
    """Per box, its anchors with IoU >= ``thr`` (no competition between
    boxes): the IoUs of the cells in the assigner's ``shape_windows`` for
    that IoU, exact on each pair.

    Returns:
        ndarray: (N,) int64.
    """
    out = np.zeros(len(boxes), np.int64)
    for (ph, pw), idx in _by_pad_shape(pad_hw).items():
        sizes = _featmap_sizes(gen, ph, pw)
        layout = gen.grid_layout(sizes)
        priors = torch.cat(gen.grid_priors(sizes, device='cpu'))
        for s in range(0, len(idx), chunk):
            sub = idx[s:s + chunk]
            gt = torch.from_numpy(boxes[sub]).float()
            windows = [shape_windows(gt.double(), level, thr)
                       for level in layout]
            pair_gt, pair_anchor = window_pairs(
                windows, layout, torch.arange(len(sub)))
            iou = aligned_iou(gt[pair_gt], priors[pair_anchor])
            out[sub] = torch.bincount(pair_gt[iou >= thr],
                                      minlength=len(sub)).numpy()
    return out


def match(gen, boxes: np.ndarray, pad_hw: np.ndarray, pos_thr: float,
          count_positives: bool = True, chunk: int = 1 << 22) -> dict:
    """Best IoU of every box with the anchors of ``gen`` and its number of
    anchors with IoU >= ``pos_thr``.

    Args:
        gen (AnchorGenerator): mmretina's generator.
        boxes (ndarray): (N, 4) xyxy boxes, each in its image's pixels.
        pad_hw (ndarray): (N, 2) padded (h, w) of the box's image; level
            l has ``ceil(pad / stride_l)`` cells per axis, as in training.
        pos_thr (float): IoU threshold of a positive.
        count_positives (bool): also count positives
            (:func:`count_window_positives`).

    Returns:
        dict: ``best_iou`` (N,), ``level`` (N,) and ``anchor`` (N,) of the
        best anchor, ``num_pos`` (N,) int (if counted).
    """
    gt = torch.from_numpy(np.ascontiguousarray(boxes, np.float32))
    n = gt.shape[0]
    best = torch.full((n, ), -1.0)
    best_level = torch.zeros(n, dtype=torch.long)
    best_anchor = torch.zeros(n, dtype=torch.long)
    num_pos = np.zeros(n, np.int64)
    if n == 0:
        return dict(best_iou=best.numpy(), level=best_level.numpy(),
                    anchor=best_anchor.numpy(), num_pos=num_pos)
    pad = torch.from_numpy(pad_hw).float()
    gcx, gcy = (gt[:, 0] + gt[:, 2]) / 2, (gt[:, 1] + gt[:, 3]) / 2
    # all levels' base anchors side by side: (M, 4), with their strides
    bases = torch.cat([b.float() for b in gen.base_anchors])
    counts = [b.shape[0] for b in gen.base_anchors]
    level_of = torch.repeat_interleave(torch.arange(len(counts)),
                                       torch.tensor(counts))
    first = torch.tensor([0] + counts).cumsum(0)[:-1]
    sw = torch.tensor([float(s[0]) for s in gen.strides])[level_of]
    sh = torch.tensor([float(s[1]) for s in gen.strides])[level_of]
    acx, acy = (bases[:, 0] + bases[:, 2]) / 2, (bases[:, 1] + bases[:, 3]) / 2
    per = max(1, chunk // (bases.shape[0] * 4))
    for s in range(0, n, per):
        e = min(n, s + per)
        # nearest grid point per box and anchor shape, on the box's image
        # grid of ceil(pad / stride) cells: (n, M)
        feat_w = torch.ceil(pad[s:e, 1, None] / sw)
        feat_h = torch.ceil(pad[s:e, 0, None] / sh)
        jx = torch.round((gcx[s:e, None] - acx) / sw).clamp(min=0)
        jx = torch.minimum(jx, feat_w - 1) * sw
        iy = torch.round((gcy[s:e, None] - acy) / sh).clamp(min=0)
        iy = torch.minimum(iy, feat_h - 1) * sh
        iou = aligned_iou(gt[s:e, None, :],
                          bases + torch.stack([jx, iy, jx, iy], -1))
        best[s:e], arg = iou.max(1)
        best_level[s:e] = level_of[arg]
        best_anchor[s:e] = arg - first[level_of[arg]]
    if count_positives:
        num_pos = count_window_positives(gen, boxes, pad_hw, pos_thr)
    return dict(best_iou=best.numpy(), level=best_level.numpy(),
                anchor=best_anchor.numpy(), num_pos=num_pos)


def training_verdicts(gen, assigner, images: Sequence[Tuple[int, int,
                                                            np.ndarray]],
                      divisor: int, allowed_border: int = -1,
                      batch: int = 16) -> Dict[str, np.ndarray]:
    """What training makes of each box: the assigner run on every image.

    Each image (transformed size ``w x h``, padded to a multiple of
    ``divisor``) gets the anchors of ``gen`` on its padded grid; the anchors
    that take part are those the head keeps (``inside_flags`` with
    ``allowed_border``); ``assigner.assign_batch`` assigns them with the
    generator's grid layout, as the head does. Images of one padded size are
    assigned together.

    Args:
        gen (AnchorGenerator): mmretina's generator.
        assigner (MaxIoUAssigner): mmretina's assigner (the config's).
        images (list[tuple]): ``(w, h, boxes)`` per image, boxes (n, 4)
            float32 xyxy in the image's pixels.
        divisor (int): the data preprocessor's ``pad_size_divisor``.
        allowed_border (int): ``train_cfg.allowed_border``.

    Returns:
        dict: over all boxes, image by image: ``verdict`` (N,) int64 --
        :data:`POSITIVE` (an anchor assigned to the box has IoU >=
        ``pos_iou_thr`` with it), :data:`LOW_QUALITY` (anchors assigned,
        all below it: low-quality matches), :data:`NONE` (no anchor: the
        box is trained as background); ``num_assigned`` (N,) int64.
    """
    offsets = np.cumsum([0] + [len(b) for _, _, b in images])
    verdict = np.zeros(offsets[-1], np.int64)
    num_assigned = np.zeros(offsets[-1], np.int64)
    groups: Dict[Tuple[int, int], List[int]] = {}
    for i, (w, h, _) in enumerate(images):
        ph = int(math.ceil(h / divisor) * divisor)
        pw = int(math.ceil(w / divisor) * divisor)
        groups.setdefault((ph, pw), []).append(i)
    for (ph, pw), members in groups.items():
        sizes = _featmap_sizes(gen, ph, pw)
        layout = gen.grid_layout(sizes)
        priors = torch.cat(gen.grid_priors(sizes, device='cpu'))
        for s in range(0, len(members), batch):
            chunk = [i for i in members[s:s + batch] if len(images[i][2])]
            if not chunk:
                continue
            gts, gt_valid = pad_boxes(
                [torch.from_numpy(images[i][2]).float() for i in chunk])
            valid = torch.ones((len(chunk), len(priors)), dtype=torch.bool)
            inside = inside_flags(priors, valid,
                                  [(images[i][1], images[i][0])
                                   for i in chunk], allowed_border)
            gt_inds, _ = assigner.assign_batch(priors, gts, gt_valid,
                                               ~inside, layout)
            gt_inds = gt_inds.masked_fill(~inside, -1)
            for row, i in enumerate(chunk):
                n = len(images[i][2])
                pos = (gt_inds[row] > 0).nonzero().squeeze(1)
                owner = gt_inds[row, pos] - 1
                iou = aligned_iou(gts[row, owner], priors[pos])
                counts = torch.bincount(owner, minlength=n)[:n]
                strong = torch.bincount(
                    owner[iou >= assigner.pos_iou_thr], minlength=n)[:n]
                v = np.where(strong.numpy() > 0, POSITIVE,
                             np.where(counts.numpy() > 0, LOW_QUALITY, NONE))
                verdict[offsets[i]:offsets[i + 1]] = v
                num_assigned[offsets[i]:offsets[i + 1]] = counts.numpy()
    return dict(verdict=verdict, num_assigned=num_assigned)


def match_exact(gen, boxes: np.ndarray, pad_hw: np.ndarray, image_index,
                pos_thr: float) -> dict:
    """Reference for :func:`match`: IoU of each image's boxes with all its
    anchors (``grid_priors`` and the ``pairwise_iou``, in anchor
    chunks). Also counts positives with competition: an anchor is positive
    only for the box it overlaps most, as in ``MaxIoUAssigner``."""
    n = len(boxes)
    best = np.full(n, -1.0, np.float32)
    num_pos = np.zeros(n, np.int64)
    num_pos_comp = np.zeros(n, np.int64)
    cache = {}
    for img in np.unique(image_index):
        sel = np.nonzero(image_index == img)[0]
        ph, pw = (int(v) for v in pad_hw[sel[0]])
        if (ph, pw) not in cache:
            cache = {(ph, pw): torch.cat(gen.grid_priors(
                _featmap_sizes(gen, ph, pw), device='cpu'))}
        priors = cache[(ph, pw)]
        gt = torch.from_numpy(boxes[sel])[None]
        ious = torch.cat([pairwise_iou(gt, priors[s:s + 200000])[0]
                          for s in range(0, len(priors), 200000)], 1)
        best[sel] = ious.max(1).values.numpy()
        pos = ious >= pos_thr
        num_pos[sel] = pos.sum(1).numpy()
        owner = ious.argmax(0)
        mine = owner[None, :] == torch.arange(len(sel))[:, None]
        num_pos_comp[sel] = (pos & mine).sum(1).numpy()
    return dict(best_iou=best, num_pos=num_pos, num_pos_competing=num_pos_comp)


def oracle_reach(gen, boxes: np.ndarray, pad_hw: np.ndarray,
                 thr: float) -> np.ndarray:
    """Per box: could an anchor of exactly its own shape, on the grid of
    some level, reach IoU >= thr? (What no choice of scales and ratios can
    beat at these strides.)"""
    gt = torch.from_numpy(boxes)
    pad = torch.from_numpy(pad_hw).float()
    w, h = gt[:, 2] - gt[:, 0], gt[:, 3] - gt[:, 1]
    cx, cy = (gt[:, 0] + gt[:, 2]) / 2, (gt[:, 1] + gt[:, 3]) / 2
    best = torch.zeros(len(gt))
    for level, (sw, sh) in enumerate(gen.strides):
        base = gen.base_anchors[level]
        off_x = float((base[0, 0] + base[0, 2]) / 2)
        off_y = float((base[0, 1] + base[0, 3]) / 2)
        jx = torch.minimum(torch.round((cx - off_x) / sw).clamp(min=0),
                           torch.ceil(pad[:, 1] / sw) - 1)
        iy = torch.minimum(torch.round((cy - off_y) / sh).clamp(min=0),
                           torch.ceil(pad[:, 0] / sh) - 1)
        ax, ay = jx * sw + off_x, iy * sh + off_y
        anchor = torch.stack([ax - w / 2, ay - h / 2, ax + w / 2, ay + h / 2],
                             -1)
        best = torch.maximum(best, aligned_iou(gt, anchor))
    return (best >= thr).numpy()
