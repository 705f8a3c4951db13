#!/usr/bin/env python
"""How well do the anchors of a config fit its training boxes?

    python tools/analysis_tools/analyze_anchors.py CONFIG [--optimize] \\
        [--out-dir DIR] [--anchors-per-location A] [--cfg-options ...]

Reads the training set of ``CONFIG`` (``train_dataloader.dataset``, built
with its own class: ``mmretina.CocoDataset`` drops the boxes it would not
train on), applies the geometric part of the training pipeline to each box
(``Resize`` / ``RandomResize`` / ``RandomChoiceResize``, 90-degree
``Rotate``, ``FilterAnnotations``; random ones drawn once per image with
``--seed``; photometric transforms and crops are not applied: the report
lists each transform and what was done with it), and computes for every
ground truth its best IoU with any anchor of the config's anchor generator
(``model.bbox_head.anchor_generator``, built as ``mmretina.AnchorGenerator``)
on that image's padded feature grid. With the assigner's thresholds
(``model.train_cfg.assigner``) each object is

* **positive**: some anchor has IoU >= ``pos_iou_thr``;
* **low-quality only**: its best anchor is below ``pos_iou_thr`` and is
  made positive only by low-quality matching (``match_low_quality``, best
  IoU >= ``min_pos_iou`` and > 0): one weak anchor;
* **none**: no anchor is positive for it: it is trained as background.

It prints these shares, the number of positive anchors per object and both
broken down by object size (COCO small / medium / large and finer), and
writes ``DIR/anchor_analysis.png`` (histogram of the best IoU, scatter of box
size against best IoU) and ``DIR/anchor_analysis.json``.

``--optimize`` searches ``octave_base_scale``, ``scales_per_octave`` and
``ratios`` (candidates from k-means of the boxes' log aspect ratios) for the
setting with the largest share of positive objects at at most
``--anchors-per-location`` anchors (default: the config's), keeping the
strides; it prints the config lines to paste and says when no setting can
reach the objects at these strides (too small for the finest level, larger
than the coarsest one).

Speed: the IoU of a box with anchors of one shape on a regular grid is
largest at the grid point nearest to the box centre (the intersection
shrinks with the centre offset in x and in y separately), so the best IoU
needs one anchor per level and shape, and positives are counted in the small
window of grid points that can reach ``pos_iou_thr``. ``--exact`` computes
the IoU with every anchor from ``grid_priors`` instead (mmretina's
``box_iou``; same numbers, much slower) and also counts positives with the
assigner's competition between neighbouring objects (an anchor goes to the
object it overlaps most).

Counted per object without that competition (except with ``--exact``);
random crops are not applied, so boxes cut by a crop are analysed whole.
"""
import argparse
import json
import math
import os
import os.path as osp
import sys
import time
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

# sqrt(area) bucket edges in pixels (after the pipeline's resize); COCO's
# small / medium / large are < 32^2, 32^2..96^2, > 96^2.
SIZE_EDGES = (0, 8, 16, 24, 32, 48, 64, 96, 128, 192, 256, 512, math.inf)
COCO_BUCKETS = (('small (<32)', 0, 32), ('medium (32-96)', 32, 96),
                ('large (>96)', 96, math.inf))
# transforms that change colours only: not applied, said so
PHOTOMETRIC = {
    'PhotoMetricDistortion', 'ColorTransform', 'Brightness', 'Contrast',
    'Sharpness', 'Color', 'Equalize', 'AutoContrast', 'Invert', 'Posterize',
    'Solarize', 'SolarizeAdd', 'RandomGaussianBlur', 'MatchImageStats',
    'YOLOXHSVRandomAug', 'Normalize', 'RandomGrayscale', 'CutOut',
    'RandomErasing', 'GaussianBlur',
}
PASSIVE = {'LoadImageFromFile', 'LoadAnnotations', 'PackDetInputs', 'Pad',
           'LoadImageFromNDArray', 'ToTensor', 'ImageToTensor'}
NO_SIZE_CHANGE = {'RandomFlip', 'Flip'}
CROPS = {'RandomCrop', 'RandomCenterCropPad', 'MinIoURandomCrop', 'Mosaic',
         'MixUp', 'RandomAffine', 'Expand', 'CopyPaste', 'CachedMosaic',
         'CachedMixUp', 'RandomShift', 'Translate', 'Shear'}


class AnalysisError(ValueError):
    """A config this tool cannot analyse; the message says why."""


# ---------------------------------------------------------------- config
def _short(type_name) -> str:
    name = type_name if isinstance(type_name, str) else type_name.__name__
    return name.split('.')[-1]


def anchor_args(cfg) -> dict:
    """The anchor generator's arguments (without ``type``)."""
    try:
        gen = cfg.model.bbox_head.anchor_generator
    except AttributeError:
        raise AnalysisError(
            'the config has no model.bbox_head.anchor_generator (an anchor-'
            'free head?): nothing to analyse.') from None
    args = dict(gen)
    kind = _short(args.pop('type', 'AnchorGenerator'))
    if kind != 'AnchorGenerator':
        raise AnalysisError(
            f'model.bbox_head.anchor_generator is {kind}; this tool handles '
            '(mmretina./mmdet) AnchorGenerator.')
    return args


def build_generator(args: dict):
    from mmretina.models.task_modules.prior_generators import AnchorGenerator
    return AnchorGenerator(**args)


def assigner_args(cfg) -> dict:
    try:
        a = dict(cfg.model.train_cfg.assigner)
    except AttributeError:
        raise AnalysisError('the config has no model.train_cfg.assigner.') \
            from None
    if 'pos_iou_thr' not in a:
        raise AnalysisError(
            f'model.train_cfg.assigner is {a.get("type")}, without '
            'pos_iou_thr; this tool analyses max-IoU assignment.')
    neg = a.get('neg_iou_thr', a['pos_iou_thr'])
    return dict(
        pos_iou_thr=float(a['pos_iou_thr']),
        neg_iou_thr=neg if not isinstance(neg, (list, tuple)) else tuple(neg),
        min_pos_iou=float(a.get('min_pos_iou', 0.0)),
        match_low_quality=bool(a.get('match_low_quality', True)))


def pad_divisor(cfg) -> int:
    pre = cfg.model.get('data_preprocessor', None) or {}
    return int(pre.get('pad_size_divisor', 1) or 1)


def _inner_dataset_cfg(ds_cfg):
    """Unwrap RepeatDataset / ClassBalancedDataset / ConcatDataset."""
    while 'dataset' in ds_cfg and _short(ds_cfg.get('type', '')) in (
            'RepeatDataset', 'ClassBalancedDataset', 'MultiImageMixDataset'):
        ds_cfg = ds_cfg['dataset']
    if _short(ds_cfg.get('type', '')) == 'ConcatDataset':
        return [c for d in ds_cfg['datasets'] for c in
                _as_list(_inner_dataset_cfg(d))]
    return ds_cfg


def _as_list(x):
    return x if isinstance(x, list) else [x]


def load_boxes(cfg, max_images: Optional[int] = None):
    """(pipeline, [(width, height, boxes (n, 4) xyxy float32)]) of the
    training set, read with the dataset's own class (no image decoding)."""
    from mmdet.registry import DATASETS
    try:
        ds_cfgs = _as_list(_inner_dataset_cfg(cfg.train_dataloader.dataset))
    except AttributeError:
        raise AnalysisError('the config has no train_dataloader.dataset.') \
            from None
    pipeline = list(ds_cfgs[0].get('pipeline', []))
    images = []
    for ds_cfg in ds_cfgs:
        ds_cfg = dict(ds_cfg)
        ds_cfg['pipeline'] = []
        ds_cfg['serialize_data'] = False
        ds_cfg.setdefault('test_mode', False)
        try:
            dataset = DATASETS.build(ds_cfg)
        except (FileNotFoundError, ValueError, KeyError, OSError) as e:
            raise AnalysisError(
                'cannot read the training set (train_dataloader.dataset, '
                f'{ds_cfg.get("type")}): {e}') from None
        for info in dataset.data_list:
            boxes = [ins['bbox'] for ins in info.get('instances', [])
                     if not ins.get('ignore_flag', 0)]
            images.append((int(info['width']), int(info['height']),
                           np.asarray(boxes, np.float32).reshape(-1, 4)))
            if max_images and len(images) >= max_images:
                return pipeline, images
    return pipeline, images


# -------------------------------------------------------------- pipeline
def _resize_keep_ratio(w, h, scale):
    """mmcv's ``rescale_size``: fit (w, h) into ``scale`` (w, h) keeping
    the aspect ratio: long edge <= max(scale), short edge <= min(scale)."""
    long_edge, short_edge = max(scale), min(scale)
    f = min(long_edge / max(h, w), short_edge / min(h, w))
    return int(w * f + 0.5), int(h * f + 0.5)


def _resize_step(keep_ratio, pick_scale):
    def step(w, h, boxes, rng):
        scale = pick_scale(w, h, rng)
        nw, nh = (_resize_keep_ratio(w, h, scale) if keep_ratio else
                  (int(scale[0]), int(scale[1])))
        boxes = boxes * np.array([nw / w, nh / h, nw / w, nh / h],
                                 np.float32)
        boxes[:, 0::2] = boxes[:, 0::2].clip(0, nw)
        boxes[:, 1::2] = boxes[:, 1::2].clip(0, nh)
        return nw, nh, boxes
    return step


def geometry(pipeline: Sequence[dict]):
    """(steps, report): the box-size-changing steps of the pipeline as
    functions ``(w, h, boxes, rng) -> (w, h, boxes)`` and one line per
    transform saying what was done with it."""
    steps, report = [], []
    for t in pipeline:
        name = _short(t.get('type', '?'))
        if name in PASSIVE:
            continue
        if name == 'Resize':
            if t.get('scale') is not None:
                scale = tuple(_pair(t['scale']))
                pick = (lambda w, h, rng, s=scale: s)
                what = f'scale={scale}'
            elif t.get('scale_factor') is not None:
                f = t['scale_factor']
                f = (f, f) if np.isscalar(f) else tuple(f)
                pick = (lambda w, h, rng, f=f: (int(w * f[0] + 0.5),
                                                int(h * f[1] + 0.5)))
                what = f'scale_factor={t["scale_factor"]}'
            else:
                report.append(f'{name}: no scale -- not applied')
                continue
            keep = t.get('keep_ratio', False)
            steps.append(_resize_step(keep, pick))
            report.append(f'{name}({what}, keep_ratio={keep}): applied')
        elif name == 'RandomResize':
            scale = t['scale']
            ratio_range = t.get('ratio_range')
            keep = t.get('keep_ratio', False)
            if ratio_range is not None:
                base = tuple(_pair(scale))

                def pick(w, h, rng, base=base, rr=tuple(ratio_range)):
                    r = rng.uniform(rr[0], rr[1])
                    return int(base[0] * r), int(base[1] * r)
                what = f'scale={base}, ratio_range={tuple(ratio_range)}'
            else:
                lo, hi = (tuple(s) for s in scale)

                def pick(w, h, rng, lo=lo, hi=hi):
                    longs = (max(lo), max(hi))
                    shorts = (min(lo), min(hi))
                    return (rng.randint(min(longs), max(longs) + 1),
                            rng.randint(min(shorts), max(shorts) + 1))
                what = f'scale={list(scale)}'
            steps.append(_resize_step(keep, pick))
            report.append(f'{name}({what}, keep_ratio={keep}): applied, a '
                          'random scale per image')
        elif name == 'RandomChoiceResize':
            scales = [tuple(_pair(s)) for s in t['scales']]
            keep = t.get('keep_ratio', False)
            steps.append(_resize_step(
                keep, lambda w, h, rng, s=scales: s[rng.randint(len(s))]))
            report.append(f'{name}({len(scales)} scales, keep_ratio={keep}):'
                          ' applied, a random choice per image')
        elif name == 'Rotate' and t.get('min_mag') == t.get('max_mag') == 90:
            steps.append(_rotate90_step(float(t.get('prob', 0.5))))
            report.append(f'{name}(90 degrees, prob={t.get("prob", 0.5)}): '
                          'applied (width and height swap)')
        elif name == 'FilterAnnotations':
            min_wh = _pair(t.get('min_gt_bbox_wh', (1, 1)))
            steps.append(_filter_step(min_wh))
            report.append(f'{name}(min_gt_bbox_wh={tuple(min_wh)}): applied')
        elif name in NO_SIZE_CHANGE:
            report.append(f'{name}: does not change box sizes -- not needed')
        elif name in PHOTOMETRIC:
            report.append(f'{name}: photometric -- not applied')
        elif name in CROPS:
            report.append(f'{name}: crop / mix / affine -- not applied '
                          '(boxes are analysed whole)')
        else:
            report.append(f'{name}: unknown to this tool -- not applied')
    return steps, report


def _pair(x):
    return (x, x) if np.isscalar(x) else tuple(x)


def _rotate90_step(prob):
    def step(w, h, boxes, rng):
        if rng.rand() >= prob or not len(boxes):
            return w, h, boxes
        # about the image centre, the image keeps its size (mmdet's Rotate)
        cx = (boxes[:, 0] + boxes[:, 2]) / 2
        cy = (boxes[:, 1] + boxes[:, 3]) / 2
        bw, bh = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
        s = 1 if rng.rand() < 0.5 else -1
        ncx = w / 2 + s * (cy - h / 2)
        ncy = h / 2 - s * (cx - w / 2)
        out = np.stack([ncx - bh / 2, ncy - bw / 2, ncx + bh / 2,
                        ncy + bw / 2], 1).astype(np.float32)
        out[:, 0::2] = out[:, 0::2].clip(0, w)
        out[:, 1::2] = out[:, 1::2].clip(0, h)
        return w, h, out
    return step


def _filter_step(min_wh):
    def step(w, h, boxes, rng):
        keep = ((boxes[:, 2] - boxes[:, 0] > min_wh[0])
                & (boxes[:, 3] - boxes[:, 1] > min_wh[1]))
        return w, h, boxes[keep]
    return step


def transformed_boxes(images, steps, divisor, seed=0):
    """Boxes after the pipeline's geometry.

    Returns:
        tuple: boxes (N, 4) float32 xyxy; the padded (h, w) of each box's
        image, (N, 2) int; the index of each box's image, (N,) int.
    """
    rng = np.random.RandomState(seed)
    all_boxes, all_pad, all_index = [], [], []
    for i, (w, h, boxes) in enumerate(images):
        for step in steps:
            w, h, boxes = step(w, h, boxes, rng)
        ok = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
        boxes = boxes[ok]
        ph = int(math.ceil(h / divisor) * divisor)
        pw = int(math.ceil(w / divisor) * divisor)
        all_boxes.append(boxes)
        all_pad.append(np.tile([[ph, pw]], (len(boxes), 1)))
        all_index.append(np.full(len(boxes), i))
    if not all_boxes:
        return (np.zeros((0, 4), np.float32), np.zeros((0, 2), np.int64),
                np.zeros(0, np.int64))
    return (np.concatenate(all_boxes).astype(np.float32),
            np.concatenate(all_pad).astype(np.int64),
            np.concatenate(all_index).astype(np.int64))


# ------------------------------------------------------------- matching
def aligned_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """IoU of boxes ``a[..., 4]`` and ``b[..., 4]`` element by element
    (broadcast); the arithmetic of mmretina's ``box_iou`` (eps 1e-6)."""
    w = (torch.minimum(a[..., 2], b[..., 2])
         - torch.maximum(a[..., 0], b[..., 0])).clamp(min=0)
    h = (torch.minimum(a[..., 3], b[..., 3])
         - torch.maximum(a[..., 1], b[..., 1])).clamp(min=0)
    overlap = w * h
    area_a = (a[..., 2] - a[..., 0]) * (a[..., 3] - a[..., 1])
    area_b = (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])
    return overlap / (area_a + area_b - overlap).clamp(min=1e-6)


def match(gen, boxes: np.ndarray, pad_hw: np.ndarray, pos_thr: float,
          count_positives: bool = True, chunk: int = 1 << 22):
    """Best IoU of every box with the anchors of ``gen`` and its number of
    anchors with IoU >= ``pos_thr``.

    Args:
        gen (AnchorGenerator): mmretina's generator.
        boxes (ndarray): (N, 4) xyxy boxes, each in its image's pixels.
        pad_hw (ndarray): (N, 2) padded (h, w) of the box's image; level
            l has ``ceil(pad / stride_l)`` cells per axis, as in training.
        pos_thr (float): IoU threshold of a positive.
        count_positives (bool): also count positives (the window search).

    Returns:
        dict with ``best_iou`` (N,), ``level`` (N,) and ``anchor`` (N,) of
        the best anchor, ``num_pos`` (N,) int (if counted).
    """
    gt = torch.from_numpy(np.ascontiguousarray(boxes, np.float32))
    n = gt.shape[0]
    best = torch.full((n, ), -1.0)
    best_level = torch.zeros(n, dtype=torch.long)
    best_anchor = torch.zeros(n, dtype=torch.long)
    num_pos = torch.zeros(n, dtype=torch.long)
    if n == 0:
        return dict(best_iou=best.numpy(), level=best_level.numpy(),
                    anchor=best_anchor.numpy(), num_pos=num_pos.numpy())
    pad = torch.from_numpy(pad_hw).float()
    gcx, gcy = (gt[:, 0] + gt[:, 2]) / 2, (gt[:, 1] + gt[:, 3]) / 2
    gw, gh = gt[:, 2] - gt[:, 0], gt[:, 3] - gt[:, 1]
    area_g = gw * gh
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
        for m in range(bases.shape[0]):
            level = int(level_of[m])
            stride_w, stride_h = (float(v) for v in gen.strides[level])
            num_pos += _count_window(
                gt, gcx, gcy, gw, gh, area_g, bases[m], float(acx[m]),
                float(acy[m]), float(bases[m, 2] - bases[m, 0]),
                float(bases[m, 3] - bases[m, 1]), stride_w, stride_h,
                torch.ceil(pad[:, 1] / stride_w),
                torch.ceil(pad[:, 0] / stride_h), pos_thr, chunk)
    return dict(best_iou=best.numpy(), level=best_level.numpy(),
                anchor=best_anchor.numpy(), num_pos=num_pos.numpy())


def _count_window(gt, gcx, gcy, gw, gh, area_g, base, acx, acy, aw, ah, sw,
                  sh, feat_w, feat_h, thr, chunk):
    """Anchors of one shape with IoU >= thr per box: only grid points whose
    centre offset can reach thr are tried (I >= thr * max(area) needs
    |dx| <= (w_g + w_a) / 2 - thr * max(area) / min(h_g, h_a))."""
    n = gt.shape[0]
    out = torch.zeros(n, dtype=torch.long)
    big = torch.maximum(area_g, torch.tensor(aw * ah))
    max_dx = (gw + aw) / 2 - thr * big / torch.minimum(gh, torch.tensor(ah))
    max_dy = (gh + ah) / 2 - thr * big / torch.minimum(gw, torch.tensor(aw))
    # cells j with |gcx - acx - j * sw| <= max_dx, on the grid
    x0 = torch.ceil((gcx - acx - max_dx) / sw).clamp(min=0)
    x1 = torch.minimum(torch.floor((gcx - acx + max_dx) / sw), feat_w - 1)
    y0 = torch.ceil((gcy - acy - max_dy) / sh).clamp(min=0)
    y1 = torch.minimum(torch.floor((gcy - acy + max_dy) / sh), feat_h - 1)
    nx, ny = (x1 - x0 + 1).clamp(min=0), (y1 - y0 + 1).clamp(min=0)
    cand = ((max_dx >= 0) & (max_dy >= 0) & (nx > 0) & (ny > 0)).nonzero()
    cand = cand[:, 0]
    if not len(cand):
        return out
    # group by window size so that few boxes with a big window do not blow
    # up the work of all the others
    kx, ky = nx[cand].long(), ny[cand].long()
    for size in torch.unique(torch.maximum(kx, ky)).tolist():
        idx = cand[torch.maximum(kx, ky) == size]
        per = max(1, chunk // (size * size))
        ox = torch.arange(size, dtype=torch.float32)
        for s in range(0, len(idx), per):
            sub = idx[s:s + per]
            xs = x0[sub, None] + ox  # (m, size)
            ys = y0[sub, None] + ox
            okx = xs <= x1[sub, None]
            oky = ys <= y1[sub, None]
            anchors = torch.stack(
                torch.broadcast_tensors(
                    base[0] + xs[:, None, :] * sw,
                    base[1] + ys[:, :, None] * sh,
                    base[2] + xs[:, None, :] * sw,
                    base[3] + ys[:, :, None] * sh), -1)  # (m, size, size, 4)
            iou = aligned_iou(gt[sub, None, None, :], anchors)
            ok = oky[:, :, None] & okx[:, None, :] & (iou >= thr)
            out[sub] += ok.flatten(1).sum(1)
    return out


def match_exact(gen, boxes: np.ndarray, pad_hw: np.ndarray, image_index,
                pos_thr: float):
    """Reference for :func:`match`: IoU of each image's boxes with all its
    anchors (``grid_priors`` and mmretina's ``box_iou``, in anchor
    chunks). Also counts positives with competition: an anchor is positive
    only for the box it overlaps most, as in ``MaxIoUAssigner``."""
    from mmretina.models.task_modules.assigners.max_iou_assigner import \
        box_iou
    n = len(boxes)
    best = np.full(n, -1.0, np.float32)
    num_pos = np.zeros(n, np.int64)
    num_pos_comp = np.zeros(n, np.int64)
    cache = {}
    for img in np.unique(image_index):
        sel = np.nonzero(image_index == img)[0]
        ph, pw = (int(v) for v in pad_hw[sel[0]])
        if (ph, pw) not in cache:
            sizes = [(int(math.ceil(ph / s[1])), int(math.ceil(pw / s[0])))
                     for s in gen.strides]
            cache = {(ph, pw): torch.cat(
                gen.grid_priors(sizes, device='cpu'))}
        priors = cache[(ph, pw)]
        gt = torch.from_numpy(boxes[sel])[None]
        ious = torch.cat([box_iou(gt, priors[s:s + 200000])[0]
                          for s in range(0, len(priors), 200000)], 1)
        best[sel] = ious.max(1).values.numpy()
        pos = ious >= pos_thr
        num_pos[sel] = pos.sum(1).numpy()
        owner = ious.argmax(0)
        mine = owner[None, :] == torch.arange(len(sel))[:, None]
        num_pos_comp[sel] = (pos & mine).sum(1).numpy()
    return dict(best_iou=best, num_pos=num_pos, num_pos_competing=num_pos_comp)


# --------------------------------------------------------------- report
def categorize(best: np.ndarray, assign: dict):
    """Boolean masks (positive, low-quality only, none) per object."""
    pos = best >= assign['pos_iou_thr']
    low = (~pos & assign['match_low_quality']
           & (best >= assign['min_pos_iou']) & (best > 0))
    return pos, low, ~pos & ~low


def summarize(boxes, result, assign) -> dict:
    best, num_pos = result['best_iou'], result.get('num_pos')
    pos, low, none = categorize(best, assign)
    side = np.sqrt((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]))
    n = max(len(best), 1)

    def row(mask, name):
        m = int(mask.sum())
        d = dict(name=name, boxes=m,
                 positive=float(pos[mask].mean()) if m else 0.0,
                 low_quality_only=float(low[mask].mean()) if m else 0.0,
                 none=float(none[mask].mean()) if m else 0.0,
                 median_best_iou=float(np.median(best[mask])) if m else 0.0)
        if num_pos is not None:
            d['mean_positives'] = float(num_pos[mask].mean()) if m else 0.0
        return d

    out = dict(boxes=int(len(best)), positive=float(pos.sum() / n),
               low_quality_only=float(low.sum() / n),
               none=float(none.sum() / n),
               median_best_iou=float(np.median(best)) if len(best) else 0.0,
               coco=[row((side >= lo) & (side < hi), name)
                     for name, lo, hi in COCO_BUCKETS],
               by_size=[row((side >= lo) & (side < hi),
                            f'{lo:g}-{hi:g}' if hi < math.inf else f'>{lo:g}')
                        for lo, hi in zip(SIZE_EDGES[:-1], SIZE_EDGES[1:])])
    out['by_size'] = [r for r in out['by_size'] if r['boxes']]
    if num_pos is not None:
        out['mean_positives'] = float(num_pos.mean()) if len(best) else 0.0
        out['median_positives'] = float(np.median(num_pos)) if len(
            best) else 0.0
        out['positives_histogram'] = {
            str(k): int((num_pos == k).sum()) for k in range(5)}
        out['positives_histogram']['>=5'] = int((num_pos >= 5).sum())
    return out


def format_summary(s: dict, title: str) -> str:
    pct = (lambda v: f'{100 * v:5.1f}%')
    lines = [f'{title}: {s["boxes"]} boxes: {pct(s["positive"])} positive, '
             f'{pct(s["low_quality_only"])} only a low-quality match, '
             f'{pct(s["none"])} none (median best IoU '
             f'{s["median_best_iou"]:.2f})']
    if 'mean_positives' in s:
        h = s['positives_histogram']
        lines.append(
            f'  positive anchors per object: mean {s["mean_positives"]:.1f},'
            f' median {s["median_positives"]:.0f}; objects with 0/1/2/3/4/'
            f'>=5: ' + '/'.join(str(h[k]) for k in
                                ('0', '1', '2', '3', '4', '>=5')))
    head = (f'  {"sqrt(area) px":>16} {"boxes":>6} {"positive":>9} '
            f'{"low-q.":>7} {"none":>7} {"best IoU":>8}'
            + (f' {"pos/obj":>7}' if 'mean_positives' in s else ''))
    lines.append(head)
    for r in s['coco'] + [None] + s['by_size']:
        if r is None:
            lines.append('  ' + '-' * (len(head) - 2))
            continue
        if not r['boxes']:
            continue
        lines.append(
            f'  {r["name"]:>16} {r["boxes"]:6d} {pct(r["positive"]):>9} '
            f'{pct(r["low_quality_only"]):>7} {pct(r["none"]):>7} '
            f'{r["median_best_iou"]:8.2f}'
            + (f' {r["mean_positives"]:7.1f}' if 'mean_positives' in r
               else ''))
    return '\n'.join(lines)


def anchor_sides(gen) -> Tuple[float, float]:
    """Smallest and largest anchor sqrt(area) over all levels."""
    sides = [float(torch.sqrt((b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])).min())
             for b in gen.base_anchors]
    sides_max = [float(torch.sqrt(
        (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])).max())
                 for b in gen.base_anchors]
    return min(sides), max(sides_max)


def diagnose(boxes, result, assign, gen) -> List[str]:
    """Why objects get no positive: too small / too large for the anchors,
    or shape and grid offset."""
    best = result['best_iou']
    miss = best < assign['pos_iou_thr']
    if not miss.any():
        return []
    side = np.sqrt((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]))
    lo, hi = anchor_sides(gen)
    t = assign['pos_iou_thr']
    # a square of side s inside/around one of side a has IoU (s/a)^2
    small = miss & (side < lo * math.sqrt(t))
    large = miss & (side > hi / math.sqrt(t))
    rest = miss & ~small & ~large
    n = len(best)
    out = []
    if small.any():
        out.append(
            f'{100 * small.sum() / n:.1f}% of the objects are smaller '
            f'(sqrt(area) < {lo * math.sqrt(t):.1f} px) than any anchor can '
            f'match at IoU {t:g} (smallest anchor {lo:.1f} px): lower '
            'octave_base_scale, or add a finer level.')
    if large.any():
        out.append(
            f'{100 * large.sum() / n:.1f}% of the objects are larger '
            f'(sqrt(area) > {hi / math.sqrt(t):.0f} px) than any anchor can '
            f'match at IoU {t:g} (largest anchor {hi:.0f} px): raise '
            'octave_base_scale / scales_per_octave, or add a coarser level.')
    if rest.any():
        out.append(
            f'{100 * rest.sum() / n:.1f}% of the objects are within the '
            'anchor sizes but miss IoU '
            f'{t:g}: their aspect ratio or the grid spacing (stride) does '
            'not fit; see --optimize.')
    return out


def oracle_reach(gen, boxes, pad_hw, thr) -> np.ndarray:
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


# -------------------------------------------------------------- optimize
def kmeans_1d(x: np.ndarray, k: int, iters: int = 30) -> np.ndarray:
    """Sorted centres of ``k`` clusters of the values ``x`` (Lloyd's
    algorithm started at quantiles)."""
    centres = np.quantile(x, (np.arange(k) + 0.5) / k)
    for _ in range(iters):
        assign = np.abs(x[:, None] - centres[None]).argmin(1)
        new = np.array([x[assign == i].mean() if (assign == i).any() else
                        centres[i] for i in range(k)])
        if np.allclose(new, centres):
            break
        centres = new
    return np.sort(centres)


def ratio_candidates(boxes, max_ratios: int) -> Dict[int, List[List[float]]]:
    """Per number of ratios, candidate ``ratios`` lists (height / width):
    k-means of log(h / w), and for odd counts the symmetric default-like
    spread around 1."""
    r = np.log((boxes[:, 3] - boxes[:, 1]) / (boxes[:, 2] - boxes[:, 0]))
    out = {}
    for k in range(1, max_ratios + 1):
        cands = [np.exp(kmeans_1d(r, k))]
        if k == 1:
            cands.append(np.array([1.0]))
        if k == 3:
            cands.append(np.array([0.5, 1.0, 2.0]))
        out[k] = []
        for c in cands:
            c = [float(f'{v:.3g}') for v in c]
            if c not in out[k] and len(set(c)) == len(c):
                out[k].append(c)
    return out


def _search_scale(base, spo, rat, boxes, pad_hw, t, grid):
    """Best octave_base_scale on ``grid`` (coarse, then refined around the
    best) for one scales_per_octave x ratios: (share, mean IoU, scale)."""

    def score(obs):
        gen = build_generator(dict(base, octave_base_scale=obs,
                                   scales_per_octave=spo, ratios=rat))
        r = match(gen, boxes, pad_hw, t, count_positives=False)
        return (float((r['best_iou'] >= t).mean()),
                float(r['best_iou'].mean()), obs)

    best = max(score(obs) for obs in grid)
    for step in (2 ** (1 / 8), 2 ** (1 / 16)):
        best = max([best, score(best[2] * step), score(best[2] / step)])
    return best


def optimize(args: dict, boxes, pad_hw, assign, budget: int,
             max_search_boxes: int = 2000, seed: int = 0):
    """Search octave_base_scale x scales_per_octave x ratios with at most
    ``budget`` anchors per location, the strides kept.

    The score of a setting is the share of objects with a positive anchor
    (best IoU >= pos_iou_thr); among settings within 0.2 points of the best
    share, the one with the highest mean best IoU wins (a better fit, not
    just a reach). The search runs on a random subset of at most
    ``max_search_boxes`` boxes.

    Returns:
        tuple: the generator arguments of the winner, and the table of the
        best setting per scales_per_octave x ratios (best first).
    """
    t = assign['pos_iou_thr']
    base = {k: v for k, v in args.items()
            if k not in ('scales', 'octave_base_scale', 'scales_per_octave',
                         'ratios')}
    if len(boxes) > max_search_boxes:
        sub = np.random.RandomState(seed).choice(len(boxes),
                                                 max_search_boxes, False)
        boxes, pad_hw = boxes[sub], pad_hw[sub]
    grid = [2 ** (i / 4) for i in range(-4, 21)]  # 0.5 .. 32
    ratios = ratio_candidates(boxes, min(budget, 7))
    results = []
    for spo in range(1, min(budget, 5) + 1):
        for k, cands in ratios.items():
            if spo * k > budget:
                continue
            for rat in cands:
                share, mean, obs = _search_scale(base, spo, rat, boxes,
                                                 pad_hw, t, grid)
                results.append(dict(
                    scales_per_octave=spo, ratios=rat,
                    octave_base_scale=float(f'{obs:.3g}'), positive=share,
                    mean_best_iou=mean, anchors=spo * k))
    top = max(d['positive'] for d in results)
    best = max((d for d in results if d['positive'] >= top - 0.002),
               key=lambda d: (d['mean_best_iou'], -d['anchors']))
    results.sort(key=lambda d: (d['positive'], d['mean_best_iou']),
                 reverse=True)
    best_args = dict(base, octave_base_scale=best['octave_base_scale'],
                     scales_per_octave=best['scales_per_octave'],
                     ratios=best['ratios'])
    return best_args, results


def paste_lines(best_args: dict, had_scales: bool) -> str:
    ratios = ', '.join(repr(float(r)) for r in best_args['ratios'])
    lines = [
        'model = dict(',
        '    bbox_head=dict(',
        '        anchor_generator=dict(',
        f'            octave_base_scale={best_args["octave_base_scale"]:g},',
        f'            scales_per_octave={best_args["scales_per_octave"]},',
        f'            ratios=[{ratios}],',
    ]
    if had_scales:
        lines.append('            scales=None,')
    lines[-1] = lines[-1].rstrip(',') + ')))'
    return '\n'.join(lines)


# ------------------------------------------------------------------ plot
def plot(path, boxes, results: List[Tuple[str, dict]], assign):
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    side = np.sqrt((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]))
    t = assign['pos_iou_thr']
    fig, axes = plt.subplots(len(results), 2, figsize=(12, 4.2 * len(results)),
                             squeeze=False)
    for row, (title, res) in enumerate(results):
        best = res['best_iou']
        pos, low, none = categorize(best, assign)
        ax = axes[row, 0]
        bins = np.linspace(0, 1, 41)
        ax.hist([best[pos], best[low], best[none]], bins=bins, stacked=True,
                color=['tab:green', 'tab:orange', 'tab:red'],
                label=[f'positive ({100 * pos.mean():.1f}%)',
                       f'low-quality only ({100 * low.mean():.1f}%)',
                       f'none ({100 * none.mean():.1f}%)'])
        ax.axvline(t, color='k', ls='--', lw=1)
        neg = assign['neg_iou_thr']
        if not isinstance(neg, tuple):
            ax.axvline(neg, color='gray', ls=':', lw=1)
        ax.set_xlabel('best IoU of a ground truth with any anchor')
        ax.set_ylabel('ground truths')
        ax.set_title(f'{title}: best anchor IoU per object')
        ax.legend(fontsize=8)
        ax = axes[row, 1]
        for mask, c in ((pos, 'tab:green'), (low, 'tab:orange'),
                        (none, 'tab:red')):
            ax.scatter(side[mask], best[mask], s=4, c=c, alpha=0.5)
        ax.axhline(t, color='k', ls='--', lw=1)
        ax.set_xscale('log')
        ax.set_xlabel('sqrt(box area) after the pipeline, px')
        ax.set_ylabel('best IoU')
        ax.set_ylim(0, 1)
        ax.set_title(f'{title}: box size vs best IoU')
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


# ------------------------------------------------------------------- CLI
def parse_args(argv=None):
    from mmengine.config import DictAction
    p = argparse.ArgumentParser(
        description=__doc__.split('\n')[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split('\n', 1)[1])
    p.add_argument('config')
    p.add_argument('--optimize', action='store_true',
                   help='search octave_base_scale, scales_per_octave and '
                   'ratios')
    p.add_argument('--anchors-per-location', type=int, default=None,
                   help='budget for --optimize (default: the config\'s)')
    p.add_argument('--out-dir', default=None,
                   help='write anchor_analysis.png / .json here (default: '
                   'work_dirs/<config name>/)')
    p.add_argument('--seed', type=int, default=0,
                   help='seed for the random resize / rotation draws')
    p.add_argument('--max-images', type=int, default=None,
                   help='analyse only the first N training images')
    p.add_argument('--exact', action='store_true',
                   help='IoU with every anchor (slow), and positives with '
                   'competition between objects')
    p.add_argument('--cfg-options', nargs='+', action=DictAction)
    return p.parse_args(argv)


def analyze(cfg, out_dir: Optional[str], optimize_anchors=False,
            budget: Optional[int] = None, seed=0, max_images=None,
            exact=False, log=print) -> dict:
    """Run the analysis on a loaded config; returns the JSON report."""
    t0 = time.perf_counter()
    gen_args = anchor_args(cfg)
    gen = build_generator(gen_args)
    assign = assigner_args(cfg)
    divisor = pad_divisor(cfg)
    pipeline, images = load_boxes(cfg, max_images)
    steps, transforms = geometry(pipeline)
    boxes, pad_hw, index = transformed_boxes(images, steps, divisor, seed)
    if not len(boxes):
        raise AnalysisError('the training set has no box to analyse.')
    t_load = time.perf_counter()
    log(f'anchor generator: strides {[s[0] for s in gen.strides]}, scales '
        f'{[round(float(s), 2) for s in gen.scales]}, ratios '
        f'{[round(float(r), 3) for r in gen.ratios]} '
        f'({gen.num_base_priors[0]} anchors per location); assigner: '
        f'pos_iou_thr={assign["pos_iou_thr"]}, neg_iou_thr='
        f'{assign["neg_iou_thr"]}, min_pos_iou={assign["min_pos_iou"]}, '
        f'match_low_quality={assign["match_low_quality"]}; '
        f'pad_size_divisor={divisor}')
    log('training pipeline geometry:')
    for line in transforms or ['(nothing that changes boxes)']:
        log(f'  {line}')
    log(f'{len(images)} images, {len(boxes)} boxes (seed {seed})')
    res = match(gen, boxes, pad_hw, assign['pos_iou_thr'])
    t_match = time.perf_counter()
    report = dict(config=dict(anchor_generator=gen_args, assigner=assign,
                              pad_size_divisor=divisor),
                  transforms=transforms, images=len(images),
                  current=summarize(boxes, res, assign))
    log(format_summary(report['current'], 'current anchors'))
    report['current']['diagnosis'] = diagnose(boxes, res, assign, gen)
    for line in report['current']['diagnosis']:
        log(f'  note: {line}')
    report['timing_s'] = dict(load=round(t_load - t0, 3),
                              match=round(t_match - t_load, 3))
    log(f'({len(boxes)} boxes matched in {t_match - t_load:.2f} s)')
    if exact:
        ex = match_exact(gen, boxes, pad_hw, index, assign['pos_iou_thr'])
        report['exact'] = dict(
            max_abs_diff_best_iou=float(np.abs(ex['best_iou']
                                               - res['best_iou']).max()),
            num_pos_equal=bool((ex['num_pos'] == res['num_pos']).all()),
            mean_positives_competing=float(ex['num_pos_competing'].mean()),
            positive_competing=float((ex['num_pos_competing'] > 0).mean()))
        log(f'--exact: all anchors: best IoU max |diff| '
            f'{report["exact"]["max_abs_diff_best_iou"]:.2e}, positive '
            f'counts equal: {report["exact"]["num_pos_equal"]}; with '
            'competition between objects (an anchor goes to the object it '
            'overlaps most): '
            f'{100 * report["exact"]["positive_competing"]:.1f}% of the '
            'objects have a positive, mean '
            f'{report["exact"]["mean_positives_competing"]:.1f} per object')
    plots = [('current', res)]
    if optimize_anchors:
        budget = budget or gen.num_base_priors[0]
        t1 = time.perf_counter()
        best_args, table = optimize(gen_args, boxes, pad_hw, assign, budget,
                                    seed=seed)
        best_gen = build_generator(best_args)
        best_res = match(best_gen, boxes, pad_hw, assign['pos_iou_thr'])
        reach = oracle_reach(gen, boxes, pad_hw, assign['pos_iou_thr'])
        report['optimized'] = summarize(boxes, best_res, assign)
        report['optimized']['anchor_generator'] = best_args
        report['optimized']['diagnosis'] = diagnose(boxes, best_res, assign,
                                                    best_gen)
        report['optimized']['reachable_at_these_strides'] = float(
            reach.mean())
        report['optimize_table'] = table[:10]
        report['timing_s']['optimize'] = round(time.perf_counter() - t1, 3)
        log(f'\n--optimize (<= {budget} anchors per location, strides kept;'
            f' {len(table)} scale/ratio sets x octave_base_scale searched in '
            f'{report["timing_s"]["optimize"]:.1f} s); best per '
            'scales_per_octave x ratios:')
        for d in table[:6]:
            log(f'  octave_base_scale={d["octave_base_scale"]:.3g} '
                f'scales_per_octave={d["scales_per_octave"]} ratios='
                f'{d["ratios"]} ({d["anchors"]} anchors): '
                f'{100 * d["positive"]:.1f}% positive')
        log(format_summary(report['optimized'], 'proposed anchors'))
        for line in report['optimized']['diagnosis']:
            log(f'  note: {line}')
        if reach.mean() < 0.99:
            log(f'  warning: only {100 * reach.mean():.1f}% of the objects '
                'can reach IoU '
                f'{assign["pos_iou_thr"]:g} with an anchor of their own exact'
                ' shape on these strides '
                f'({[s[0] for s in gen.strides]}): no scale or ratio fixes the'
                ' rest. Add a finer level (smaller stride) or enlarge the '
                'images (Resize scale) for the small ones.')
        gain = report['optimized']['positive'] - report['current']['positive']
        report['optimized']['gain'] = gain
        log('\nproposed vs current: '
            f'{100 * report["optimized"]["positive"]:.1f}% vs '
            f'{100 * report["current"]["positive"]:.1f}% of the objects '
            'with a positive anchor, median best IoU '
            f'{report["optimized"]["median_best_iou"]:.2f} vs '
            f'{report["current"]["median_best_iou"]:.2f}, '
            f'{best_gen.num_base_priors[0]} vs {gen.num_base_priors[0]} '
            'anchors per location.'
            + (' Under 1 point of gain: the current anchors already fit; '
               'a change is unlikely to matter.' if gain < 0.01 else ''))
        log('config lines to paste (the head\'s output channels change '
            'with the number of anchors):')
        log(paste_lines(best_args, 'scales' in gen_args
                        and gen_args['scales'] is not None))
        plots.append(('proposed', best_res))
    if out_dir:
        os.makedirs(out_dir, exist_ok=True)
        png = osp.join(out_dir, 'anchor_analysis.png')
        plot(png, boxes, plots, assign)
        with open(osp.join(out_dir, 'anchor_analysis.json'), 'w') as f:
            json.dump(report, f, indent=1)
        report['png'] = png
        log(f'\nwrote {png} and {osp.join(out_dir, "anchor_analysis.json")}')
    return report


def main(argv=None) -> int:
    args = parse_args(argv)
    from mmengine.config import Config
    from mmengine.registry import init_default_scope

    import mmretina  # noqa: F401  (registers mmretina.*)
    cfg = Config.fromfile(args.config)
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    init_default_scope(cfg.get('default_scope', 'mmdet'))
    out_dir = args.out_dir or osp.join(
        'work_dirs', osp.splitext(osp.basename(args.config))[0])
    try:
        analyze(cfg, out_dir, args.optimize, args.anchors_per_location,
                args.seed, args.max_images, args.exact)
    except AnalysisError as e:
        print(f'error: {e}', file=sys.stderr)
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())
