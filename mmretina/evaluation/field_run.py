"""The field evaluation of a trained model: the tiled inference users run
(:func:`mmretina.inference.tiled.detect_raster`: windows from disk, the bands
and scaling rule, the cut-box rule and NMS across windows), then
:mod:`.field`'s figures per raster, per site and overall.

Ground truth is either vector labels over rasters (read, reprojected and
put into pixels by :mod:`mmretina.datasets.converters.raster`, as the
training chips were) or a COCO split (``iscrowd=1`` regions are left out).

A raster's site: the most common value of ``site_field`` among its labels,
or, without it, the part of its file name before the first ``_`` (NEON's
plots: ``OSBS_029.tif`` is at ``OSBS``). A chip of a COCO split written by
``raster_to_coco.py`` counts for the raster it was cut from.

An oriented model (its detections are rotated boxes, K x 5) is evaluated at
rotated IoU (:mod:`.field`). Its ground truth is rotated too
(:func:`label_rboxes`): each label, in the raster's pixels and clipped to
the raster as the axis-aligned labels are, becomes its minimum-area
rectangle (the rectangle ``raster_to_coco --rotated`` writes for training:
:func:`~mmretina.structures.rotated.min_area_rboxes`), the
rectangle an annotator of rotated boxes draws. A polygon IoU was the
alternative; it would score a perfect rotated detection of an irregular
crown or a ship's pointed bow below 1, and differ from the IoU of
mmrotate's DOTA metric. Points are squares; COCO annotations give the
minimum-area rectangle of their polygon ``segmentation``, else their
``bbox`` at angle 0.
"""
import json
import os
import os.path as osp
from collections import Counter, OrderedDict
from typing import Callable, Dict, List, Optional, Sequence

import numpy as np

from mmretina.datasets.converters.raster import (
    ConversionError, extent_message, list_layers, list_rasters, load_labels,
    pixel_boxes, pixel_vertices)
from mmretina.geo.raster import RasterSource
from mmretina.inference.records import as_arrays
from mmretina.inference.tiled import detect_raster
from mmretina.structures.box_validity import DROPPED, box_verdicts
from mmretina.structures.rotated import min_area_rboxes
from .field import (ImageMatches, draw_matches, field_summary, format_table,
                    match_image, write_matches_csv, write_summary)

__all__ = ['site_of', 'label_rboxes', 'FieldEvaluator']

# at most this many PNGs (images of a COCO split can be thousands)
MAX_PNGS = 200


def site_of(path: str) -> str:
    """``'OSBS_029.tif'`` -> ``'OSBS'``."""
    return osp.splitext(osp.basename(path))[0].split('_')[0]


def label_rboxes(labels, raster: str, georef, width: int, height: int,
                 point_radius: Optional[float] = None) -> np.ndarray:
    """The labels of one raster as rotated boxes in its pixels.

    Each label's vertices in the raster's pixels (:func:`~mmretina.
    datasets.converters.raster.pixel_vertices`: reprojected, points
    buffered to squares, through the inverse affine transform), their convex
    hull clipped to ``[0, width] x [0, height]`` (as the axis-aligned labels
    are clipped), and the minimum-area rectangle of what is left
    (:func:`~mmretina.structures.rotated.min_area_rboxes`, the
    rectangle ``raster_to_coco --rotated`` writes; it depends on the points
    through their hull only, so a label inside the raster gets exactly that
    rectangle).

    Args:
        labels (Labels): from ``load_labels``.
        raster (str): its path (for messages).
        georef (Georef | None): the raster's (None: labels in pixels).
        width, height (int): raster size in px.
        point_radius (float, optional): half the side of a point's square,
            metres.

    Returns:
        ndarray: N x 5 float64 ``(cx, cy, w, h, angle)`` (le90) per label of
        ``labels.frame``; NaN where a vertex does not project or the label
        misses the raster.
    """
    import shapely
    coords, which = pixel_vertices(labels, raster, georef, point_radius)
    n = len(labels.frame)
    bad = np.zeros(n, bool)
    np.logical_or.at(bad, which, ~np.isfinite(coords).all(axis=1))
    keep = ~bad[which]
    ids, dense = np.unique(which[keep], return_inverse=True)
    if not len(ids):
        return np.full((n, 5), np.nan)
    hulls = shapely.convex_hull(shapely.multipoints(coords[keep],
                                                    indices=dense))
    clipped = shapely.clip_by_rect(hulls, 0, 0, width, height)
    pts, part = shapely.get_coordinates(clipped, return_index=True)
    return min_area_rboxes(pts, ids[part], n)


def _coco_rbox(ann: dict) -> np.ndarray:
    """A COCO annotation's rotated box: the minimum-area rectangle of its
    polygon ``segmentation`` (DOTA's four corners), else its ``bbox`` at
    angle 0."""
    seg = ann.get('segmentation')
    if isinstance(seg, list) and seg and isinstance(seg[0], list):
        pts = np.concatenate([np.reshape(p, (-1, 2)) for p in seg])
        if len(pts) >= 3:
            return min_area_rboxes(pts, np.zeros(len(pts), np.int64), 1)[0]
    x, y, w, h = ann['bbox']
    return np.array([x + w / 2, y + h / 2, w, h, 0.0])


class FieldEvaluator:
    """Detect with a model over rasters (or a COCO split's images) and
    evaluate against ground truth.

    Args:
        inferencer (TiledInferencer): the model (its backend) and the
            window / merge settings, as ``tools/infer.py --tile`` builds it.
        classes (list[str]): the model's classes (index = label).
        score_thr (float): predictions counted for precision / recall.
        iou_thr (float): match threshold (0.4).
        bands, scale, gsd: as at inference (:class:`~mmretina.geo.raster.
            RasterSource`; ``gsd``: rasters with a CRS read at the model's
            ground sample distance, None: at their own).
        log (callable): prints a line.
    """

    def __init__(self, inferencer, classes: Sequence[str],
                 score_thr: float = 0.3, iou_thr: float = 0.4, bands=None,
                 scale=None, gsd: Optional[float] = None,
                 log: Callable[[str], None] = print) -> None:
        self.inferencer = inferencer
        self.classes = tuple(classes)
        self.score_thr, self.iou_thr = score_thr, iou_thr
        self.bands, self.scale, self.gsd = bands, scale, gsd
        self.log = log

    def detect(self, path: str):
        """(RasterSource, (boxes K x 4 raster px, or rotated K x 5 from an
        oriented model; scores K; labels K))."""
        source = RasterSource(path, self.bands, self.scale, self.gsd)
        if source.resampled:
            self.log(source.resampling_note())
        # progress lines per raster when the inferencer shows progress
        return source, as_arrays(detect_raster(self.inferencer, source))

    def _label_index(self, names, where: List[str]) -> np.ndarray:
        if len(self.classes) == 1 and set(names) <= {'object'}:
            return np.zeros(len(names), np.int64)
        out = []
        for name, w in zip(names, where):
            if name not in self.classes:
                raise ValueError(
                    f'{w}: class {name!r} is not one of the model\'s '
                    f'classes {self.classes}; give --class-field naming the '
                    'attribute that holds them (or fix the feature)')
            out.append(self.classes.index(name))
        return np.asarray(out, np.int64)

    # ------------------------------------------------------------ rasters
    def rasters(self, rasters: str, labels: Optional[str],
                class_field: Optional[str] = None,
                site_field: Optional[str] = None,
                point_radius: Optional[float] = None,
                label_crs: Optional[str] = None) -> List[ImageMatches]:
        """Match the detections of each raster of ``rasters`` (a file, a
        folder, a CSV of raster,labels rows) to ``labels`` (an oriented
        model's at rotated IoU, against :func:`label_rboxes`)."""
        pairs = list_rasters(rasters)
        if labels is None and any(lab is None for _, lab in pairs):
            raise ConversionError('give --labels, or RASTERS as a CSV of '
                                  'raster,labels rows')
        shared = (load_labels(list_layers(labels), class_field, label_crs,
                              self.log) if labels is not None else None)
        if site_field and shared is not None and \
                site_field not in shared.frame.columns:
            raise ConversionError(
                f'{labels}: no attribute {site_field!r} (--site-field); '
                f'the layer has {list(shared.frame.columns)}')
        out = []
        for path, lab_path in pairs:
            lab = (load_labels(list_layers(lab_path), class_field, label_crs,
                               self.log) if lab_path else shared)
            source, pred = self.detect(path)
            boxes, idx, on = pixel_boxes(lab, path, source.georef,
                                         source.native_width, source.native_height,
                                         point_radius)
            if lab_path and not on.any():
                raise ConversionError(extent_message(
                    lab, path, source.georef, source.native_width, source.native_height))
            boxes, verdicts = box_verdicts(boxes[on], source.native_width,
                                           source.native_height, clip=True)
            keep = np.array([v not in DROPPED for v in verdicts], bool)
            frame = lab.frame.iloc[idx[on][keep]]
            boxes = boxes[keep]
            if pred[0].shape[1] == 5:  # an oriented model
                boxes = label_rboxes(
                    lab, path, source.georef, source.native_width,
                    source.native_height, point_radius)[idx[on][keep]]
                ok = np.isfinite(boxes).all(axis=1)
                frame, boxes = frame.iloc[np.flatnonzero(ok)], boxes[ok]
            gt_labels = self._label_index(
                [str(v) for v in frame.label],
                [f'{s}: feature {f}' for s, f in zip(frame.source,
                                                     frame.fid)])
            site = site_of(path)
            if site_field and len(frame):
                site = str(Counter(frame[site_field].astype(str))
                           .most_common(1)[0][0])
            m = match_image(path, boxes, gt_labels, *pred,
                            score_thr=self.score_thr, iou_thr=self.iou_thr,
                            site=site, width=source.native_width,
                            height=source.native_height)
            m.source = source
            out.append(m)
            self.log(f'{path}: {m.n_gt} labels, {m.n_pred} detections >= '
                     f'{self.score_thr}, {m.tp} matched at IoU > '
                     f'{self.iou_thr}')
        if shared is not None and not any(m.n_gt for m in out):
            s = out[0].source
            raise ConversionError(extent_message(shared, s.path, s.georef,
                                                 s.native_width, s.native_height))
        return out

    # --------------------------------------------------------- COCO split
    def coco(self, ann_file: str, img_dir: str) -> List[ImageMatches]:
        """Match the detections of each image of a COCO file (images under
        ``img_dir``); categories are matched to the model's classes by
        name. An oriented model's at rotated IoU, against
        :func:`_coco_rbox` of each annotation."""
        with open(ann_file) as f:
            coco = json.load(f)
        cats = {c['id']: c['name'] for c in coco.get('categories', [])}
        unknown = sorted(set(cats.values()) - set(self.classes))
        if unknown and not (len(self.classes) == 1 and len(cats) == 1):
            raise ValueError(f'{ann_file}: categories {unknown} are not '
                             f'among the model\'s classes {self.classes}')
        by_img: Dict[int, list] = {}
        for a in coco.get('annotations', []):
            if not a.get('iscrowd', 0):
                by_img.setdefault(a['image_id'], []).append(a)
        out = []
        for im in coco['images']:
            path = osp.join(img_dir, im['file_name'])
            source, pred = self.detect(path)
            anns = by_img.get(im['id'], [])
            boxes = np.array([[a['bbox'][0], a['bbox'][1],
                               a['bbox'][0] + a['bbox'][2],
                               a['bbox'][1] + a['bbox'][3]] for a in anns],
                             np.float64).reshape(-1, 4)
            if pred[0].shape[1] == 5:  # an oriented model
                boxes = np.array([_coco_rbox(a) for a in anns],
                                 np.float64).reshape(-1, 5)
            labels = (np.zeros(len(anns), np.int64) if len(self.classes) == 1
                      else np.array([self.classes.index(
                          cats[a['category_id']]) for a in anns], np.int64))
            m = match_image(path, boxes, labels, *pred,
                            score_thr=self.score_thr, iou_thr=self.iou_thr,
                            site=site_of(im.get('raster', path)),
                            width=source.native_width, height=source.native_height)
            m.source = source
            m.raster = im.get('raster', path)
            out.append(m)
        return out

    # ------------------------------------------------------------ outputs
    def write(self, images: List[ImageMatches], out_dir: str) -> dict:
        """``summary.json``, ``matches.csv`` and a PNG per raster (at most
        :data:`MAX_PNGS`) in ``out_dir``; prints the table. Returns the
        summary."""
        os.makedirs(out_dir, exist_ok=True)
        per_raster: Dict[str, List[ImageMatches]] = OrderedDict()
        for m in images:
            per_raster.setdefault(getattr(m, 'raster', m.name), []).append(m)
        summary = field_summary(images, self.classes, per_raster)
        write_summary(osp.join(out_dir, 'summary.json'), summary)
        n = write_matches_csv(osp.join(out_dir, 'matches.csv'), images,
                              self.classes)
        drawn = 0
        for m in images[:MAX_PNGS]:
            img, f = m.source.overview(4096)
            stem = osp.splitext(osp.basename(m.name))[0]
            draw_matches(osp.join(out_dir, f'{stem}_matches.png'), img, m,
                         scale=f)
            drawn += 1
        self.log(format_table(summary))
        self.log(f'wrote {osp.join(out_dir, "summary.json")}, '
                 f'{osp.join(out_dir, "matches.csv")} ({n} rows) and '
                 f'{drawn} PNG(s) (TP green, FP red, miss yellow)'
                 + (f'; the first {MAX_PNGS} of {len(images)} images drawn'
                    if len(images) > MAX_PNGS else ''))
        return summary
