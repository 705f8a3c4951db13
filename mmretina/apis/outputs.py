"""Writing detections: PNG with boxes, COCO results JSON, DeepForest-style
CSV and, for a GeoTIFF with a geotransform, GeoJSON in map coordinates.

The geotransform is read with PIL from the GeoTIFF tags (no GDAL / rasterio
needed): ``ModelPixelScaleTag`` (33550) with ``ModelTiepointTag`` (33922),
or ``ModelTransformationTag`` (34264); the EPSG code of the projected (3072)
or geographic (2048) CRS and the raster type (1025: pixel is area / point)
come from ``GeoKeyDirectoryTag`` (34735).
"""
import csv
import json
import os
import os.path as osp
from typing import Dict, List, NamedTuple, Optional, Sequence

import numpy as np

__all__ = [
    'GeoTransform', 'read_geotransform', 'write_csv', 'write_coco_json',
    'write_geojson', 'draw_detections', 'CSV_HEADER'
]

CSV_HEADER = ('image_path', 'xmin', 'ymin', 'xmax', 'ymax', 'label', 'score')


class GeoTransform(NamedTuple):
    """Affine pixel -> map transform of a raster.

    ``X = a * col + b * row + c``, ``Y = d * col + e * row + f`` where
    (col, row) are continuous pixel coordinates, (0, 0) being the top-left
    corner of the top-left pixel (the convention of detection boxes).
    """
    a: float
    b: float
    c: float
    d: float
    e: float
    f: float
    epsg: Optional[int] = None

    def apply(self, cols: np.ndarray, rows: np.ndarray):
        return (self.a * cols + self.b * rows + self.c,
                self.d * cols + self.e * rows + self.f)


def _geokeys(tags) -> Dict[int, int]:
    """GeoKeyDirectory entries stored inline (TIFFTagLocation 0)."""
    raw = tags.get(34735)
    if not raw or len(raw) < 4:
        return {}
    keys = {}
    for i in range(int(raw[3])):
        key, loc, _count, value = raw[4 + 4 * i:8 + 4 * i]
        if loc == 0:
            keys[int(key)] = int(value)
    return keys


def read_geotransform(path: str) -> Optional[GeoTransform]:
    """The geotransform of a GeoTIFF, or None when ``path`` is not a TIFF
    or carries no georeferencing tags."""
    from PIL import Image
    try:
        with Image.open(path) as im:
            if im.format != 'TIFF':
                return None
            tags = dict(im.tag_v2)
    except (OSError, ValueError):
        return None
    keys = _geokeys(tags)
    epsg = keys.get(3072) or keys.get(2048)
    if epsg in (None, 0, 32767):  # 32767: user-defined
        epsg = None
    # GTRasterTypeGeoKey 2 (PixelIsPoint): the tie point is a pixel centre.
    shift = 0.5 if keys.get(1025) == 2 else 0.0
    if 34264 in tags:
        m = [float(v) for v in tags[34264]]
        if len(m) != 16:
            raise ValueError(f'{path}: ModelTransformationTag has {len(m)} '
                             'values, expected 16')
        a, b, d, e = m[0], m[1], m[4], m[5]
        c = m[3] - shift * (a + b)
        f = m[7] - shift * (d + e)
        return GeoTransform(a, b, c, d, e, f, epsg)
    if 33550 in tags and 33922 in tags:
        sx, sy = float(tags[33550][0]), float(tags[33550][1])
        tie = [float(v) for v in tags[33922]]
        if len(tie) < 6:
            raise ValueError(f'{path}: ModelTiepointTag has {len(tie)} values')
        i, j, x, y = tie[0], tie[1], tie[3], tie[4]
        # X = x + (col - i) * sx;  Y = y - (row - j) * sy
        return GeoTransform(sx, 0.0, x - (i + shift) * sx, 0.0, -sy,
                            y + (j + shift) * sy, epsg)
    return None


def _rows(bboxes, scores, labels):
    bboxes = np.asarray(bboxes, dtype=np.float64).reshape(-1, 4)
    return bboxes, np.asarray(scores, dtype=np.float64).reshape(-1), \
        np.asarray(labels).reshape(-1).astype(np.int64)


def _name(classes: Sequence[str], label: int) -> str:
    return str(classes[label]) if 0 <= label < len(classes) else str(label)


def write_csv(path: str, results: List[dict],
              classes: Sequence[str]) -> None:
    """``image_path,xmin,ymin,xmax,ymax,label,score`` (DeepForest's format),
    one row per detection; ``results`` holds dicts with ``image_path``,
    ``bboxes``, ``scores``, ``labels``."""
    _makedirs(path)
    with open(path, 'w', newline='') as f:
        w = csv.writer(f)
        w.writerow(CSV_HEADER)
        for r in results:
            bboxes, scores, labels = _rows(r['bboxes'], r['scores'],
                                           r['labels'])
            for box, score, label in zip(bboxes, scores, labels):
                w.writerow([r['image_path']] +
                           [f'{v:.2f}' for v in box] +
                           [_name(classes, int(label)), f'{score:.5f}'])


def write_coco_json(path: str, results: List[dict],
                    category_ids: Optional[Sequence[int]] = None) -> None:
    """COCO results (``loadRes`` format): ``image_id``, ``category_id``,
    ``bbox`` [x, y, w, h], ``score``. ``image_id`` is each result's
    ``image_id`` (default: its 1-based position) and ``category_id`` is
    ``category_ids[label]`` (default ``label + 1``)."""
    out = []
    for k, r in enumerate(results):
        bboxes, scores, labels = _rows(r['bboxes'], r['scores'], r['labels'])
        image_id = r.get('image_id', k + 1)
        for box, score, label in zip(bboxes, scores, labels):
            x1, y1, x2, y2 = (float(v) for v in box)
            cat = (category_ids[label]
                   if category_ids is not None else int(label) + 1)
            out.append(
                dict(
                    image_id=image_id,
                    category_id=int(cat),
                    bbox=[round(x1, 2), round(y1, 2), round(x2 - x1, 2),
                          round(y2 - y1, 2)],
                    score=round(float(score), 5)))
    _makedirs(path)
    with open(path, 'w') as f:
        json.dump(out, f)


def write_geojson(path: str, result: dict, transform: GeoTransform,
                  classes: Sequence[str]) -> None:
    """One polygon per box, in the raster's map coordinates, with ``label``
    and ``score`` properties; a ``crs`` member names the EPSG code when
    the GeoTIFF has one (GeoJSON 2008 style, read by GDAL / QGIS)."""
    bboxes, scores, labels = _rows(result['bboxes'], result['scores'],
                                   result['labels'])
    features = []
    for box, score, label in zip(bboxes, scores, labels):
        x1, y1, x2, y2 = box
        cols = np.array([x1, x2, x2, x1, x1])
        rows = np.array([y1, y1, y2, y2, y1])
        xs, ys = transform.apply(cols, rows)
        features.append(
            dict(
                type='Feature',
                geometry=dict(
                    type='Polygon',
                    coordinates=[[[float(x), float(y)]
                                  for x, y in zip(xs, ys)]]),
                properties=dict(
                    label=_name(classes, int(label)),
                    score=round(float(score), 5),
                    image_path=result.get('image_path'))))
    collection = dict(type='FeatureCollection', features=features)
    if transform.epsg:
        collection['crs'] = dict(
            type='name',
            properties=dict(name=f'urn:ogc:def:crs:EPSG::{transform.epsg}'))
    _makedirs(path)
    with open(path, 'w') as f:
        json.dump(collection, f)


def draw_detections(path: str, img_bgr: np.ndarray, result: dict,
                    classes: Sequence[str], score_thr: float = 0.3,
                    palette=None) -> int:
    """The image with the boxes of score >= ``score_thr`` and their scores,
    drawn with OpenCV (mmdet's matplotlib visualiser needs ~6 ms a box:
    minutes for the thousands of a large raster), saved to ``path``.
    ``palette``: RGB colour per class. Returns the number of boxes drawn."""
    import cv2
    bboxes, scores, labels = _rows(result['bboxes'], result['scores'],
                                   result['labels'])
    canvas = np.ascontiguousarray(img_bgr).copy()
    height, width = canvas.shape[:2]
    thick = max(1, int(round(max(height, width) / 600)))
    keep = scores >= score_thr
    for box, score, label in zip(bboxes[keep], scores[keep], labels[keep]):
        rgb = (palette[label % len(palette)]
               if palette else _PALETTE[label % len(_PALETTE)])
        color = tuple(int(c) for c in rgb[::-1])
        x1, y1, x2, y2 = (int(round(v)) for v in box)
        cv2.rectangle(canvas, (x1, y1), (x2, y2), color, thick)
        text = f'{_name(classes, int(label))} {score:.2f}'
        cv2.putText(canvas, text, (x1, max(y1 - 3, 8)),
                    cv2.FONT_HERSHEY_SIMPLEX, 0.3 * thick, color, 1,
                    cv2.LINE_AA)
    _makedirs(path)
    if not cv2.imwrite(path, canvas):
        raise OSError(f'cannot write {path!r}')
    return int(keep.sum())


# a few distinct colours (RGB) for configs without a palette
_PALETTE = [(255, 56, 56), (56, 255, 56), (56, 56, 255), (255, 178, 29),
            (207, 210, 49), (72, 249, 10), (146, 204, 23), (61, 219, 134),
            (26, 147, 52), (0, 212, 187), (44, 153, 168), (0, 194, 255)]


def _makedirs(path: str) -> None:
    d = osp.dirname(osp.abspath(path))
    os.makedirs(d, exist_ok=True)
