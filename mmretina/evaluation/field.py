"""Box precision and recall at IoU 0.4, as the tree-crown literature reports
them (Weinstein et al., "A benchmark dataset for canopy crown detection and
delineation in co-registered airborne RGB, LiDAR and hyperspectral imagery
from the National Ecological Observation Network", 2021; DeepForest's
``evaluate_boxes``), beside COCO mAP and mAP50 (pycocotools).

All boxes are ``(x1, y1, x2, y2)`` in continuous pixels of one image (a
raster or a chip): the image spans ``[0, W] x [0, H]``; or, for an oriented
model, rotated boxes ``(cx, cy, w, h, angle)`` (mmrotate's, radians) in the
same pixels.

Rotated boxes are matched at their rotated IoU
(:func:`mmretina.structures.rotated.rotated_iou`, mmrotate's arithmetic,
the IoU of mmrotate's DOTA metric), by the same rule below. Where only one
side is rotated (axis-aligned labels against an oriented model), the
axis-aligned boxes are rotated boxes of angle 0 (the same rectangles).
Ground-truth polygons become rotated boxes before matching (their
minimum-area rectangles: :mod:`.field_run`); mAP is then COCO's at rotated
IoU.

The rule, per image:

1. predictions with a score below ``score_thr`` are left out (they still
   count for mAP, which integrates over scores);
2. ground truth and predictions are matched one to one, regardless of
   class, by the Hungarian method (``scipy.optimize.linear_sum_assignment``)
   maximising the summed IoU (:func:`mmretina.structures.pairwise_iou`, in
   float64) of the pairs whose IoU is above ``iou_thr``; a pair at or below
   it is no match (DeepForest: ``match = IoU > 0.4``).
   DeepForest maximises the sum over *all* IoUs and then discards the weak
   pairs, so a pair of weak overlaps can displace a match above the
   threshold; zeroing them first gives the largest-IoU matching among the
   pairs that count. Equal IoUs go to the higher score;
3. ``recall = TP / #ground truth`` and ``precision = TP / #predictions``.

Over a set of images (a site, all rasters), precision and recall are the
means of the per-image values, as DeepForest's ``evaluate_boxes`` averages
them: an image without ground truth is left out of both means (its
predictions appear in the matches as false positives); an image with ground
truth and no prediction counts recall 0 and is left out of the precision
mean. Without predictions at all, recall is 0 and precision undefined
(``None``); without ground truth at all, recall is undefined and precision 0.

Per-class figures follow DeepForest's ``compute_class_recall``: among the
matched ground truth of class ``c``, the fraction whose prediction has class
``c`` (``recall``), and among the matched predictions of class ``c``, the
fraction whose ground truth is ``c`` (``precision``); ``size`` is the number
of ground truth boxes of ``c`` (all of them, matched or not), ``found`` the
fraction of them matched by a prediction of class ``c``.
"""
import contextlib
import csv
import io
import json
import os
import os.path as osp
from typing import Dict, List, Optional, Sequence

import numpy as np
import torch

from mmretina.geo.writers import box_array, box_outlines
from mmretina.structures import pairwise_iou

__all__ = [
    'IOU_THR', 'ImageMatches', 'match_boxes', 'match_ious', 'box_ious',
    'match_image',
    'precision_recall', 'class_recall', 'coco_map', 'field_summary',
    'write_summary', 'write_matches_csv', 'draw_matches', 'format_table'
]

# DeepForest and the NEON tree-crown benchmark count a match above IoU 0.4
# (crowns are irregular; their boxes disagree more than COCO objects').
IOU_THR = 0.4

# a match, a false positive, a miss: BGR for OpenCV (green, red, yellow)
COLOURS = dict(tp=(0, 200, 0), fp=(0, 0, 230), miss=(0, 215, 255))


def _as_rboxes(boxes: np.ndarray) -> torch.Tensor:
    """M x 4 or M x 5 -> M x 5 rotated boxes (an axis-aligned box is the
    rotated box of angle 0; mmrotate's ``hbox2rbox``)."""
    t = torch.tensor(boxes)  # a copy: read-only arrays (GeoDataFrame bounds)
    if boxes.shape[1] == 5:
        return t
    from mmretina.utils.mmrotate import require_mmrotate
    require_mmrotate('rotated IoU', models=False)
    from mmrotate.structures.bbox import hbox2rbox
    return hbox2rbox(t)


def box_ious(gt, pred) -> np.ndarray:
    """M x N float64 IoU of ground truth and predictions of one image:
    :func:`mmretina.structures.pairwise_iou` (mmdet's arithmetic) for
    axis-aligned boxes; the rotated IoU (:func:`mmretina.structures.
    rotated.rotated_iou`, mmrotate's arithmetic, float32 widened) when
    either side is rotated (M x 5 / N x 5)."""
    gt = box_array(gt, 'ground truth boxes')
    pred = box_array(pred, 'predictions')
    if gt.shape[1] == pred.shape[1] == 4:
        # copies: torch warns on read-only arrays (GeoDataFrame bounds)
        return pairwise_iou(torch.tensor(gt), torch.tensor(pred)).numpy()
    from mmretina.structures.rotated import rotated_iou
    return rotated_iou(_as_rboxes(gt), _as_rboxes(pred)).double().numpy()


def match_boxes(gt: np.ndarray,
                pred: np.ndarray,
                iou_thr: float = IOU_THR,
                scores: Optional[np.ndarray] = None):
    """One-to-one matching of ground truth and predictions at ``iou_thr``.

    Args:
        gt (ndarray): M x 4 ground truth boxes, pixels (or rotated M x 5).
        pred (ndarray): N x 4 predicted boxes, same image (or rotated
            N x 5).
        iou_thr (float): a pair is a match when its IoU
            (:func:`box_ious`) is > ``iou_thr``.
        scores (ndarray, optional): N scores; among pairs of equal IoU the
            higher score wins.

    Returns:
        tuple: ``(gt_idx, pred_idx, ious, iou_matrix)``: K matched indices
        into ``gt`` and ``pred`` (sorted by ``gt_idx``), their K IoUs, and
        the M x N IoU matrix.
    """
    ious = box_ious(gt, pred)
    g, p = match_ious(ious, iou_thr, scores)
    return g, p, ious[g, p], ious


def match_ious(ious: np.ndarray,
               iou_thr: float = IOU_THR,
               scores: Optional[np.ndarray] = None):
    """The matching of :func:`match_boxes` from an M x N IoU matrix (ground
    truth x predictions): Hungarian on the IoUs above ``iou_thr`` (the
    others zeroed), ties to the higher of the N ``scores``.

    Returns:
        tuple: ``(gt_idx, pred_idx)``, K int64 indices each.
    """
    from scipy.optimize import linear_sum_assignment
    ious = np.asarray(ious, np.float64)
    if ious.size == 0:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty
    weight = np.where(ious > iou_thr, ious, 0.0)
    if scores is not None and len(scores):
        # a tie-break far below any IoU difference that matters (1e-9)
        s = np.asarray(scores, np.float64)
        weight = weight + (weight > 0) * 1e-9 * (s - s.min() + 1) / (
            s.max() - s.min() + 1)
    rows, cols = linear_sum_assignment(weight, maximize=True)
    ok = ious[rows, cols] > iou_thr
    return rows[ok].astype(np.int64), cols[ok].astype(np.int64)


class ImageMatches:
    """The matching of one image.

    Attributes:
        name (str): the image (raster path or chip file name).
        site (str): its site (``''`` when none).
        gt_boxes (ndarray): M x 4 (or rotated M x 5), pixels;
            ``gt_labels`` (M,) int.
        pred_boxes (ndarray): N x 4 (or rotated N x 5), pixels, score >=
            ``score_thr``; ``pred_scores`` (N,), ``pred_labels`` (N,) int.
        all_pred (tuple): ``(boxes, scores, labels)`` of every prediction
            (for mAP).
        gt_idx, pred_idx (ndarray): K matched indices; ``ious`` (K,).
        width, height (int): image size in pixels (0 when unknown).
    """

    def __init__(self, name, site, gt_boxes, gt_labels, pred_boxes,
                 pred_scores, pred_labels, score_thr, iou_thr, width=0,
                 height=0):
        self.name, self.site = name, site or ''
        self.width, self.height = int(width), int(height)
        self.gt_boxes = box_array(gt_boxes, f'{name}: ground truth boxes')
        self.gt_labels = np.asarray(gt_labels, np.int64).reshape(-1)
        boxes = box_array(pred_boxes, f'{name}: predictions')
        scores = np.asarray(pred_scores, np.float64).reshape(-1)
        labels = np.asarray(pred_labels, np.int64).reshape(-1)
        if not (len(boxes) == len(scores) == len(labels)):
            raise ValueError(f'{name}: {len(boxes)} boxes, {len(scores)} '
                             f'scores and {len(labels)} labels')
        if len(self.gt_boxes) != len(self.gt_labels):
            raise ValueError(f'{name}: {len(self.gt_boxes)} ground truth '
                             f'boxes but {len(self.gt_labels)} labels')
        self.all_pred = (boxes, scores, labels)
        keep = scores >= score_thr
        self.pred_boxes, self.pred_scores, self.pred_labels = (
            boxes[keep], scores[keep], labels[keep])
        self.score_thr, self.iou_thr = score_thr, iou_thr
        self.gt_idx, self.pred_idx, self.ious, _ = match_boxes(
            self.gt_boxes, self.pred_boxes, iou_thr, self.pred_scores)

    @property
    def rotated(self) -> bool:
        """Matched at rotated IoU (either side's boxes are M x 5)."""
        return 5 in (self.gt_boxes.shape[1], self.all_pred[0].shape[1])

    @property
    def tp(self) -> int:
        return len(self.gt_idx)

    @property
    def n_gt(self) -> int:
        return len(self.gt_boxes)

    @property
    def n_pred(self) -> int:
        return len(self.pred_boxes)

    def rows(self, classes: Sequence[str]) -> List[dict]:
        """One row per ground truth box (``tp`` or ``miss``) and per
        unmatched prediction (``fp``); boxes in pixels (``xmin, ymin,
        xmax, ymax``; rotated: ``cx, cy, w, h, angle``)."""
        name = (lambda i: classes[i] if 0 <= i < len(classes) else str(i))
        pred_of = dict(zip(self.gt_idx.tolist(), self.pred_idx.tolist()))
        iou_of = dict(zip(self.gt_idx.tolist(), self.ious.tolist()))
        out = []
        for g in range(self.n_gt):
            p = pred_of.get(g)
            out.append(self._row(
                'tp' if p is not None else 'miss', g, p,
                iou_of.get(g, 0.0), name))
        matched = set(self.pred_idx.tolist())
        for p in range(self.n_pred):
            if p not in matched:
                out.append(self._row('fp', None, p, 0.0, name))
        return out

    def _row(self, status, g, p, iou, name):
        row = dict(image=self.name, site=self.site, status=status,
                   truth_id='' if g is None else g,
                   prediction_id='' if p is None else p,
                   iou=round(float(iou), 6))
        row['true_label'] = '' if g is None else name(int(self.gt_labels[g]))
        row['predicted_label'] = ('' if p is None else
                                  name(int(self.pred_labels[p])))
        row['score'] = '' if p is None else round(
            float(self.pred_scores[p]), 6)
        names = ROTATED_BOX_FIELDS if self.rotated else BOX_FIELDS
        for key, box in (('gt', None if g is None else self.gt_boxes[g]),
                         ('pred', None if p is None else self.pred_boxes[p])):
            if box is not None and len(box) < len(names):  # angle 0
                box = _as_rboxes(box[None]).numpy()[0]
            for k, v in zip(names, box if box is not None else
                            [''] * len(names)):
                row[f'{key}_{k}'] = v if v == '' else round(
                    float(v), 6 if k == 'angle' else 3)
        return row


def match_image(name: str,
                gt_boxes,
                gt_labels,
                pred_boxes,
                pred_scores,
                pred_labels,
                score_thr: float = 0.3,
                iou_thr: float = IOU_THR,
                site: str = '',
                width: int = 0,
                height: int = 0) -> ImageMatches:
    """Match the predictions of one image to its ground truth (see the
    module's rule). Boxes: M x 4 / N x 4 ``(x1, y1, x2, y2)`` pixels of the
    image, or rotated M x 5 / N x 5 ``(cx, cy, w, h, angle)``; labels
    0-based class indices."""
    return ImageMatches(name, site, gt_boxes, gt_labels, pred_boxes,
                        pred_scores, pred_labels, score_thr, iou_thr, width,
                        height)


def precision_recall(images: Sequence[ImageMatches]) -> dict:
    """Box precision and recall averaged over images as DeepForest's
    ``evaluate_boxes`` does (see the module docstring).

    Returns:
        dict: ``precision``, ``recall`` (float or None), ``tp``,
        ``n_gt``, ``n_pred`` (totals), ``n_images``.
    """
    tot = dict(tp=sum(m.tp for m in images),
               n_gt=sum(m.n_gt for m in images),
               n_pred=sum(m.n_pred for m in images), n_images=len(images))
    if tot['n_pred'] == 0:
        return dict(precision=None, recall=0.0 if tot['n_gt'] else None,
                    **tot)
    with_gt = [m for m in images if m.n_gt]
    if not with_gt:
        return dict(precision=0.0, recall=None, **tot)
    recalls = [m.tp / m.n_gt for m in with_gt]
    precisions = [m.tp / m.n_pred for m in with_gt if m.n_pred]
    return dict(
        precision=float(np.mean(precisions)) if precisions else None,
        recall=float(np.mean(recalls)), **tot)


def class_recall(images: Sequence[ImageMatches],
                 classes: Sequence[str]) -> Dict[str, dict]:
    """Per class (DeepForest's ``compute_class_recall`` on the matched
    pairs, plus the share of all its ground truth found with the right
    class): ``{name: {recall, precision, size, found}}``; ``recall`` /
    ``precision`` are None for a class with no matched ground truth /
    prediction, ``found`` None without ground truth."""
    out = {}
    for c, cname in enumerate(classes):
        size = matched_gt = right_gt = matched_pred = right_pred = 0
        for m in images:
            size += int((m.gt_labels == c).sum())
            t = m.gt_labels[m.gt_idx]
            p = m.pred_labels[m.pred_idx]
            matched_gt += int((t == c).sum())
            right_gt += int(((t == c) & (p == c)).sum())
            matched_pred += int((p == c).sum())
            right_pred += int(((p == c) & (t == c)).sum())
        out[cname] = dict(
            recall=right_gt / matched_gt if matched_gt else None,
            precision=right_pred / matched_pred if matched_pred else None,
            size=size, found=right_gt / size if size else None)
    return out


def coco_map(images: Sequence[ImageMatches],
             classes: Sequence[str]) -> Dict[str, Optional[float]]:
    """COCO mAP (IoU 0.50:0.95) and mAP50 of every prediction of
    ``images`` (all scores), with pycocotools' ``COCOeval``.

    Rasters hold thousands of objects: the detections kept per image are at
    most the largest number any image has (at least COCO's 100), not 100.
    Rotated boxes (images matched at rotated IoU): the same COCOeval with
    the rotated IoU of the boxes (:func:`box_ious`) in place of the
    axis-aligned one.

    Returns:
        dict: ``mAP``, ``mAP50``; None without ground truth (COCO's -1).
    """
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval
    gt = dict(images=[], annotations=[],
              categories=[dict(id=i + 1, name=n) for i, n in
                          enumerate(classes)])
    dets = []
    max_dets = 100
    rotated = any(m.rotated for m in images)
    for i, m in enumerate(images):
        gt['images'].append(dict(id=i + 1, width=m.width, height=m.height))
        boxes = m.gt_boxes
        if rotated:
            rboxes = _as_rboxes(boxes).numpy()
            boxes = _enclosing(rboxes)
        for k, (b, label) in enumerate(zip(boxes, m.gt_labels)):
            w, h = b[2] - b[0], b[3] - b[1]
            gt['annotations'].append(dict(
                id=len(gt['annotations']) + 1, image_id=i + 1,
                category_id=int(label) + 1, bbox=[b[0], b[1], w, h],
                area=(rboxes[k, 2] * rboxes[k, 3]) if rotated else w * h,
                iscrowd=0, **(dict(rbox=rboxes[k]) if rotated else {})))
        boxes, scores, labels = m.all_pred
        max_dets = max(max_dets, len(boxes))
        if rotated:
            rboxes = _as_rboxes(boxes).numpy()
            boxes = _enclosing(rboxes)
        for k, (b, s, label) in enumerate(zip(boxes, scores, labels)):
            dets.append(dict(image_id=i + 1, category_id=int(label) + 1,
                             bbox=[b[0], b[1], b[2] - b[0], b[3] - b[1]],
                             score=float(s),
                             **(dict(rbox=rboxes[k]) if rotated else {})))
    if not gt['annotations']:
        return dict(mAP=None, mAP50=None)
    if not dets:
        return dict(mAP=0.0, mAP50=0.0)
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO()
        coco_gt.dataset = gt
        coco_gt.createIndex()
        coco_dt = coco_gt.loadRes(dets)
        ev = (_rotated_cocoeval() if rotated else COCOeval)(
            coco_gt, coco_dt, 'bbox')
        ev.params.maxDets = [1, 10, max_dets]
        ev.evaluate()
        ev.accumulate()
    # COCOeval.summarize reads stats[0] at maxDets=100 whatever the params
    # say: average its precision table (iou x recall x class x area x
    # maxDets) directly, area 'all', the last maxDets
    prec = ev.eval['precision'][:, :, :, 0, -1]

    def mean(p):
        p = p[p > -1]
        return float(p.mean()) if p.size else None

    return dict(mAP=mean(prec), mAP50=mean(prec[0]))


def _enclosing(rboxes: np.ndarray) -> np.ndarray:
    """M x 5 rotated -> M x 4 enclosing (x1, y1, x2, y2): the ``bbox``
    pycocotools needs beside the ``rbox`` it is evaluated on."""
    from mmretina.structures.rotated import rbox_to_hbox
    return rbox_to_hbox(torch.from_numpy(rboxes)).numpy().reshape(-1, 4)


def _rotated_cocoeval() -> type:
    """pycocotools' COCOeval at rotated IoU (a class made when needed:
    pycocotools is imported only by the evaluation)."""
    from pycocotools.cocoeval import COCOeval

    class RotatedCOCOeval(COCOeval):
        """pycocotools' COCOeval with the rotated IoU of the annotations'
        ``rbox`` (:func:`box_ious`); the rest of COCO's protocol (101-point
        precision, IoU 0.50:0.95, ``maxDets``) unchanged."""

        def computeIoU(self, imgId, catId):
            gt = self._gts[imgId, catId]
            dt = self._dts[imgId, catId]
            if len(gt) == 0 or len(dt) == 0:
                return []
            # by descending score, stable (COCOeval's mergesort)
            dt = sorted(dt, key=lambda d: -d['score'])
            dt = dt[:self.params.maxDets[-1]]
            return box_ious(np.array([d['rbox'] for d in dt]),
                            np.array([g['rbox'] for g in gt]))

    return RotatedCOCOeval


def _metrics(images: Sequence[ImageMatches], classes) -> dict:
    out = precision_recall(images)
    out.update(coco_map(images, classes))
    out['class_recall'] = class_recall(images, classes)
    return out


def field_summary(images: Sequence[ImageMatches],
                  classes: Sequence[str],
                  per_raster: Optional[Dict[str, List[ImageMatches]]] = None
                  ) -> dict:
    """``{"overall": {...}, "per_raster": {...}, "per_site": {...}}``, each
    entry holding ``precision``, ``recall``, ``mAP``, ``mAP50``,
    ``class_recall`` and the counts (``tp``, ``n_gt``, ``n_pred``,
    ``n_images``), plus ``iou_thr`` and ``score_thr`` at the top.

    Args:
        images: every image evaluated (rasters, or chips of a COCO split).
        classes: class names, index = label.
        per_raster: raster -> its images; default: each image is a raster.
    """
    if per_raster is None:
        per_raster = {m.name: [m] for m in images}
    sites: Dict[str, List[ImageMatches]] = {}
    for m in images:
        sites.setdefault(m.site, []).append(m)
    thr = images[0] if images else None
    return dict(
        iou_thr=thr.iou_thr if thr else IOU_THR,
        score_thr=thr.score_thr if thr else None,
        classes=list(classes),
        overall=_metrics(images, classes),
        per_raster={k: _metrics(v, classes) for k, v in per_raster.items()},
        per_site={k: _metrics(v, classes) for k, v in sites.items()
                  if k} if any(sites) else {})


def write_summary(path: str, summary: dict) -> None:
    os.makedirs(osp.dirname(osp.abspath(path)), exist_ok=True)
    with open(path, 'w') as f:
        json.dump(summary, f, indent=1)


MATCH_FIELDS = ('image', 'site', 'status', 'truth_id', 'prediction_id',
                'iou', 'true_label', 'predicted_label', 'score', 'gt_xmin',
                'gt_ymin', 'gt_xmax', 'gt_ymax', 'pred_xmin', 'pred_ymin',
                'pred_xmax', 'pred_ymax')
BOX_FIELDS = ('xmin', 'ymin', 'xmax', 'ymax')
# images matched at rotated IoU: their boxes as (cx, cy, w, h, angle)
ROTATED_BOX_FIELDS = ('cx', 'cy', 'w', 'h', 'angle')
ROTATED_MATCH_FIELDS = MATCH_FIELDS[:9] + tuple(
    f'{key}_{k}' for key in ('gt', 'pred') for k in ROTATED_BOX_FIELDS)


def write_matches_csv(path: str, images: Sequence[ImageMatches],
                      classes: Sequence[str]) -> int:
    """The matches of every image: one row per ground truth box (``tp`` or
    ``miss``) and per unmatched prediction (``fp``); boxes in pixels of the
    image (:data:`MATCH_FIELDS`; images matched at rotated IoU:
    :data:`ROTATED_MATCH_FIELDS`, the boxes as ``cx, cy, w, h, angle``).
    Returns the number of rows."""
    kinds = {m.rotated for m in images}
    if len(kinds) > 1:
        raise ValueError(f'{path}: some images were matched at rotated IoU '
                         'and others not; write their matches apart')
    os.makedirs(osp.dirname(osp.abspath(path)), exist_ok=True)
    n = 0
    with open(path, 'w', newline='') as f:
        w = csv.DictWriter(f, fieldnames=ROTATED_MATCH_FIELDS if True in kinds
                           else MATCH_FIELDS)
        w.writeheader()
        for m in images:
            for row in m.rows(classes):
                w.writerow(row)
                n += 1
    return n


def draw_matches(path: str, img_bgr: np.ndarray, m: ImageMatches,
                 scale: float = 1.0) -> dict:
    """The image with true positives (green: the prediction), false
    positives (red) and misses (yellow: the ground truth), written to
    ``path``; rotated boxes drawn as rotated rectangles. ``img_bgr``:
    H x W x 3 uint8, the image decimated ``scale`` times (boxes are divided
    by it). Returns the counts drawn."""
    import cv2
    from mmretina.geo.raster import scale_boxes
    canvas = np.ascontiguousarray(img_bgr).copy()
    thick = max(1, int(round(max(canvas.shape[:2]) / 600)))
    matched_pred = set(m.pred_idx.tolist())
    matched_gt = set(m.gt_idx.tolist())
    groups = dict(
        tp=m.pred_boxes[sorted(matched_pred)],
        fp=m.pred_boxes[[i for i in range(m.n_pred)
                         if i not in matched_pred]],
        miss=m.gt_boxes[[i for i in range(m.n_gt) if i not in matched_gt]])
    for key, boxes in groups.items():
        rings = box_outlines(scale_boxes(boxes, 1 / scale, 1 / scale))
        for ring in np.rint(rings[:, :4]).astype(np.int32):
            cv2.polylines(canvas, [ring], True, COLOURS[key], thick)
    legend = (f"TP {len(groups['tp'])} (green)  FP {len(groups['fp'])} "
              f"(red)  miss {len(groups['miss'])} (yellow)")
    cv2.putText(canvas, legend, (5, 15), cv2.FONT_HERSHEY_SIMPLEX, 0.45,
                (255, 255, 255), 2, cv2.LINE_AA)
    cv2.putText(canvas, legend, (5, 15), cv2.FONT_HERSHEY_SIMPLEX, 0.45,
                (0, 0, 0), 1, cv2.LINE_AA)
    os.makedirs(osp.dirname(osp.abspath(path)), exist_ok=True)
    if not cv2.imwrite(path, canvas):
        raise OSError(f'cannot write {path!r} (check the folder and the '
                      'extension)')
    return {k: len(v) for k, v in groups.items()}


def format_table(summary: dict) -> str:
    """The per-raster / per-site / overall figures as a text table."""

    def f(v):
        return '   -  ' if v is None else f'{v:6.3f}'

    lines = [f"{'':32s} {'prec.':>6s} {'recall':>6s} {'mAP':>6s} "
             f"{'mAP50':>6s} {'TP':>6s} {'GT':>6s} {'pred':>6s}"]

    def add(name, r):
        name = name if len(name) <= 32 else '...' + name[-29:]
        lines.append(
            f"{name:32s} {f(r['precision'])} {f(r['recall'])} "
            f"{f(r['mAP'])} {f(r['mAP50'])} {r['tp']:6d} {r['n_gt']:6d} "
            f"{r['n_pred']:6d}")

    for section in ('per_raster', 'per_site'):
        if summary.get(section):
            lines.append(f'-- {section.replace("_", " ")}')
            for k, r in summary[section].items():
                add(osp.basename(k) if section == 'per_raster' else k, r)
    lines.append('-- overall')
    add('all', summary['overall'])
    return '\n'.join(lines)
