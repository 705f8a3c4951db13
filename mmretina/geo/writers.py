"""Writing detections: PNG with boxes, COCO results JSON, DeepForest-style
CSV and, for a georeferenced raster, a GIS layer (GeoPackage, Shapefile,
GeoJSON, FlatGeobuf or CSV with WKT geometry) in the raster's CRS.

Boxes are axis-aligned M x 4 ``(x1, y1, x2, y2)`` or, from an oriented
model, rotated M x 5 ``(cx, cy, w, h, angle)`` (mmrotate's, angle in radians,
pixels of the raster); every writer takes both, told apart by the last
dimension:

* GIS layer: a rotated box is the polygon of its four corners
  (:func:`~mmretina.structures.rotated.rbox_corners`, mmrotate's
  ``rbox2qbox`` order) mapped through the raster's affine transform, with
  columns ``cx, cy, w, h, angle`` (pixels, radians) instead of ``x1, y1, x2,
  y2``;
* CSV: ``image_path,cx,cy,w,h,angle,label,score`` (:data:`ROTATED_CSV_HEADER`);
* COCO results: ``bbox`` the enclosing axis-aligned box (what COCO tools
  read) and ``rbox`` ``[cx, cy, w, h, angle]``;
* PNG: the rotated rectangles drawn as closed polylines.

The georeferencing comes from rasterio (:func:`mmretina.geo.raster.
read_georef`: affine transform and CRS as WKT); the layers are written with
geopandas / pyogrio (the ``geo`` extra, ``pip install -r requirements/geo.txt``).
"""
import csv
import json
import os
import os.path as osp
import shutil
import tempfile
import warnings
from typing import List, Optional, Sequence

import numpy as np

from mmretina.geo.formats import require
from mmretina.geo.raster import RasterSource, crs_groups

__all__ = [
    'write_csv', 'write_coco_json', 'draw_detections', 'CSV_HEADER',
    'ROTATED_CSV_HEADER', 'VECTOR_FORMATS', 'detections_frame',
    'write_layer', 'plot_layer_on_raster', 'box_array', 'box_outlines'
]

CSV_HEADER = ('image_path', 'xmin', 'ymin', 'xmax', 'ymax', 'label', 'score')
# rotated boxes: mmrotate's (cx, cy, w, h, angle), pixels and radians
ROTATED_CSV_HEADER = ('image_path', 'cx', 'cy', 'w', 'h', 'angle', 'label',
                      'score')

# --format -> (OGR driver, file extension)
VECTOR_FORMATS = {
    'gpkg': ('GPKG', '.gpkg'),
    'shp': ('ESRI Shapefile', '.shp'),
    'geojson': ('GeoJSON', '.geojson'),
    'fgb': ('FlatGeobuf', '.fgb'),
    'csv': ('CSV', '.csv'),
}
LAYER_COLUMNS = ('label', 'class_name', 'score', 'source', 'x1', 'y1', 'x2',
                 'y2')
BOX_COLUMNS = {4: ('x1', 'y1', 'x2', 'y2'), 5: ('cx', 'cy', 'w', 'h', 'angle')}


def box_array(bboxes, what: str = 'boxes') -> np.ndarray:
    """Boxes as an M x 4 ``(x1, y1, x2, y2)`` or rotated M x 5 ``(cx, cy,
    w, h, angle)`` float64 array (an empty list: 0 x 4).

    Raises:
        ValueError: another width, naming ``what``.
    """
    b = np.asarray(bboxes, dtype=np.float64)
    if b.ndim != 2:
        b = b.reshape(-1, 4)
    if b.shape[1] not in (4, 5):
        raise ValueError(f'{what} must be M x 4 (x1, y1, x2, y2) or M x 5 '
                         f'(cx, cy, w, h, angle), got {b.shape}')
    return b


def _rows(bboxes, scores, labels):
    return (box_array(bboxes),
            np.asarray(scores, dtype=np.float64).reshape(-1),
            np.asarray(labels).reshape(-1).astype(np.int64))


def _box_dim(results: List[dict]) -> int:
    """4 or 5: the box width of ``results`` (mixing both is refused; an
    empty M x 4 result goes with either)."""
    dims = {box_array(r['bboxes']).shape[1] for r in results
            if len(r['bboxes'])} or {
        box_array(r['bboxes']).shape[1] for r in results} or {4}
    if len(dims) > 1:
        names = [r['image_path'] for r in results]
        raise ValueError(f'{", ".join(names[:3])}: axis-aligned (M x 4) and '
                         'rotated (M x 5) boxes cannot share one file; '
                         'write the results of each model apart')
    return dims.pop()


def box_outlines(bboxes) -> np.ndarray:
    """The closed outline of each box, float64.

    Args:
        bboxes (array-like): M x 4 (x1, y1, x2, y2) or rotated M x 5 (cx,
            cy, w, h, angle), pixels.

    Returns:
        ndarray: M x 5 x 2 (x, y) ring: an axis-aligned box's corners from
        (x1, y1) clockwise on the image (y down); a rotated box's four
        corners in :func:`~mmretina.structures.rotated.rbox_corners`'s
        order; the first point repeated.
    """
    b = box_array(bboxes)
    if b.shape[1] == 5:
        import torch
        from mmretina.structures.rotated import rbox_corners
        corners = rbox_corners(torch.from_numpy(b)).numpy()
    else:
        x1, y1, x2, y2 = b.T
        corners = np.stack([np.stack([x1, x2, x2, x1], 1),
                            np.stack([y1, y1, y2, y2], 1)], 2)
    return np.concatenate([corners, corners[:, :1]], axis=1)


def _name(classes: Sequence[str], label: int) -> str:
    return str(classes[label]) if 0 <= label < len(classes) else str(label)


def write_csv(path: str, results: List[dict],
              classes: Sequence[str]) -> None:
    """``image_path,xmin,ymin,xmax,ymax,label,score`` (DeepForest's format),
    one row per detection; rotated boxes: ``image_path,cx,cy,w,h,angle,
    label,score`` (pixels to 0.01, the angle in radians to 1e-6).
    ``results`` holds dicts with ``image_path``, ``bboxes`` (M x 4 or
    M x 5), ``scores``, ``labels``."""
    rotated = _box_dim(results) == 5
    _makedirs(path)
    with open(path, 'w', newline='') as f:
        w = csv.writer(f)
        w.writerow(ROTATED_CSV_HEADER if rotated else CSV_HEADER)
        for r in results:
            bboxes, scores, labels = _rows(r['bboxes'], r['scores'],
                                           r['labels'])
            for box, score, label in zip(bboxes, scores, labels):
                w.writerow([r['image_path']] +
                           [f'{v:.2f}' for v in box[:4]] +
                           ([f'{box[4]:.6f}'] if rotated else []) +
                           [_name(classes, int(label)), f'{score:.5f}'])


def write_coco_json(path: str, results: List[dict],
                    category_ids: Optional[Sequence[int]] = None) -> None:
    """COCO results (``loadRes`` format): ``image_id``, ``category_id``,
    ``bbox`` [x, y, w, h], ``score``. ``image_id`` is each result's
    ``image_id`` (default: its 1-based position) and ``category_id`` is
    ``category_ids[label]`` (default ``label + 1``). Rotated boxes
    (M x 5): ``bbox`` is the enclosing axis-aligned box and ``rbox`` the
    rotated box ``[cx, cy, w, h, angle]`` (pixels, radians)."""
    # written row by row with %-formatting: json.dump of a raster's 200,000
    # detections as dicts took 9 s, this takes well under one
    _makedirs(path)
    with open(path, 'w') as f:
        f.write('[')
        sep = ''
        for k, r in enumerate(results):
            bboxes, scores, labels = _rows(r['bboxes'], r['scores'],
                                           r['labels'])
            image_id = json.dumps(r.get('image_id', k + 1))
            cats = [int(category_ids[v]) if category_ids is not None else
                    int(v) + 1 for v in labels.tolist()]
            rboxes = [None] * len(bboxes)
            if bboxes.shape[1] == 5:
                rboxes = [', '.join(repr(round(v, 2)) for v in b[:4])
                          + f', {round(b[4], 6)!r}' for b in bboxes.tolist()]
                ring = box_outlines(bboxes)
                bboxes = np.concatenate([ring.min(1), ring.max(1)], axis=1)
            xywh = np.concatenate(
                [bboxes[:, :2], bboxes[:, 2:] - bboxes[:, :2]], axis=1)
            for (x, y, w, h), score, cat, rbox in zip(
                    xywh.tolist(), scores.tolist(), cats, rboxes):
                f.write(f'{sep}{{"image_id": {image_id}, "category_id": '
                        f'{cat}, "bbox": [{round(x, 2)!r}, {round(y, 2)!r}, '
                        f'{round(w, 2)!r}, {round(h, 2)!r}], '
                        + (f'"rbox": [{rbox}], ' if rbox else '') +
                        f'"score": {round(score, 5)!r}}}')
                sep = ', '
        f.write(']')


def detections_frame(results: List[dict], classes: Sequence[str],
                     georefs: Optional[List] = None):
    """A GeoDataFrame of the detections of one or more rasters: one
    polygon per box, the box's corners mapped through its raster's affine
    transform (pixel coordinates, x right and y down, when its georef is
    None), in the raster's CRS. A rotated box's polygon is its four corners
    (:func:`box_outlines`) mapped the same way: the affine transform maps
    the rectangle exactly (a rotated or sheared geotransform included).

    Args:
        results (list[dict]): per raster, ``image_path``, ``bboxes`` (M, 4)
            (x1, y1, x2, y2) or rotated (M, 5) (cx, cy, w, h, angle) in the
            raster's pixels, ``scores`` (M,), ``labels`` (M,).
        classes (list[str]): class names.
        georefs (list[Georef | None], optional): per result; all must share
            one CRS (reproject before merging).

    Returns:
        GeoDataFrame: columns ``label`` (int), ``class_name``, ``score``,
        ``source`` (the raster's path), ``x1, y1, x2, y2`` (the pixel box;
        rotated: ``cx, cy, w, h, angle``, pixels and radians) and
        ``geometry``; CRS the rasters' (None without one).
    """
    geopandas, shapely = require('writing GIS layers', 'geopandas',
                                  'shapely')
    georefs = georefs or [None] * len(results)
    crs = crs_groups([g.crs_wkt if g is not None else None
                      for g in georefs])
    if len(crs) > 1:
        raise ValueError('detections_frame: the rasters have different CRSs '
                         '(or some have none); write one layer per raster')
    box_columns = BOX_COLUMNS[_box_dim(results)]
    cols = {k: [] for k in LAYER_COLUMNS[:4] + box_columns}
    rings = []
    for r, g in zip(results, georefs):
        bboxes, scores, labels = _rows(r['bboxes'], r['scores'], r['labels'])
        if bboxes.shape[1] != len(box_columns):  # an empty M x 4
            bboxes = np.zeros((0, len(box_columns)))
        ring = box_outlines(bboxes)
        xs, ys = ring[..., 0], ring[..., 1]
        if g is not None:
            xs, ys = g.apply(xs, ys)
        rings.append(np.stack([xs, ys], axis=2))
        cols['label'].append(labels)
        cols['class_name'].append(
            np.array([_name(classes, int(v)) for v in labels], dtype=object))
        cols['score'].append(scores)
        cols['source'].append(
            np.array([r['image_path']] * len(labels), dtype=object))
        for i, k in enumerate(box_columns):
            cols[k].append(bboxes[:, i])
    data = {
        k: (np.concatenate(v) if v else np.zeros(0))
        for k, v in cols.items()
    }
    rings = np.concatenate(rings) if rings else np.zeros((0, 5, 2))
    geometry = shapely.polygons(rings) if len(rings) else []
    return geopandas.GeoDataFrame(data, geometry=geometry,
                                  crs=crs[0][0] if crs else None)


def write_layer(path: str, frame, fmt: str = 'gpkg',
                keep_crs: bool = False, layer: Optional[str] = None) -> str:
    """Write ``frame`` (:func:`detections_frame`) as one layer.

    GeoJSON follows RFC 7946 (coordinates in WGS 84 lon / lat, no ``crs``
    member) unless ``keep_crs``; the other formats keep the frame's CRS
    (CSV: geometry as WKT, no CRS). The file appears whole or not at all
    (written in a temporary folder beside it, then moved).

    Args:
        path (str): output file, its extension that of ``fmt``.
        fmt (str): a key of :data:`VECTOR_FORMATS`.
        keep_crs (bool): GeoJSON in the raster's CRS (not RFC 7946).
        layer (str, optional): layer name (default: the file's stem).

    Returns:
        str: ``path``.
    """
    require('writing GIS layers', 'geopandas', 'shapely')
    if fmt not in VECTOR_FORMATS:
        raise ValueError(f'format {fmt!r}: choose one of '
                         f'{", ".join(VECTOR_FORMATS)}')
    driver, ext = VECTOR_FORMATS[fmt]
    layer = layer or osp.splitext(osp.basename(path))[0]
    options = {}
    if fmt == 'geojson' and not keep_crs:
        if frame.crs is not None:
            frame = frame.to_crs(4326)
        options['RFC7946'] = 'YES'
    if fmt == 'csv':
        options['GEOMETRY'] = 'AS_WKT'
    out_dir = osp.dirname(osp.abspath(path))
    os.makedirs(out_dir, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix='.tmp_layer_', dir=out_dir)
    try:
        tmp_path = osp.join(tmp, osp.basename(path))
        with warnings.catch_warnings():
            # a CSV has no CRS: GDAL's warning says so, and so do our docs
            warnings.simplefilter('ignore', RuntimeWarning)
            warnings.filterwarnings('ignore', "'crs' was not provided")
            frame.to_file(tmp_path, driver=driver, layer=layer,
                          engine='pyogrio', geometry_type='Polygon',
                          **options)
        stem = osp.splitext(osp.basename(path))[0]
        for name in os.listdir(tmp):  # a Shapefile is several files
            target = osp.join(out_dir, stem + name[len(stem):])
            os.replace(osp.join(tmp, name), target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return path


MAX_LABELLED_BOXES = 2000


def draw_detections(path: str, img_bgr: np.ndarray, result: dict,
                    classes: Sequence[str], score_thr: float = 0.3,
                    palette=None) -> int:
    """The image with the boxes of score >= ``score_thr`` and their scores,
    drawn with OpenCV (mmdet's matplotlib visualiser needs ~6 ms a box:
    minutes for the thousands of a large raster), saved to ``path``.
    ``result['bboxes']``: M x 4, or rotated M x 5 (drawn as closed
    polylines through the four corners), in the image's pixels.
    ``palette``: RGB colour per class. Returns the number of boxes drawn."""
    import cv2
    bboxes, scores, labels = _rows(result['bboxes'], result['scores'],
                                   result['labels'])
    canvas = np.ascontiguousarray(img_bgr).copy()
    height, width = canvas.shape[:2]
    thick = max(1, int(round(max(height, width) / 600)))
    keep = scores >= score_thr
    # class and score beside each box while they can be read; a raster's
    # tens of thousands of boxes are drawn as boxes only (the text took
    # 3 s of 4 for 50,000 boxes; the scores are in the layer and the CSV)
    with_text = int(keep.sum()) <= MAX_LABELLED_BOXES
    rings = np.rint(box_outlines(bboxes[keep])[:, :4]).astype(np.int32)
    for ring, score, label in zip(rings, scores[keep], labels[keep]):
        rgb = (palette[label % len(palette)]
               if palette else _PALETTE[label % len(_PALETTE)])
        color = tuple(int(c) for c in rgb[::-1])
        cv2.polylines(canvas, [ring], True, color, thick)
        if not with_text:
            continue
        text = f'{_name(classes, int(label))} {score:.2f}'
        x1, y1 = int(ring[:, 0].min()), int(ring[:, 1].min())
        cv2.putText(canvas, text, (x1, max(y1 - 3, 8)),
                    cv2.FONT_HERSHEY_SIMPLEX, 0.3 * thick, color, 1,
                    cv2.LINE_AA)
    _makedirs(path)
    if not cv2.imwrite(path, canvas):
        raise OSError(f'cannot write {path!r}')
    return int(keep.sum())


def plot_layer_on_raster(path: str, raster: str, layers: Sequence,
                         bands=None, scale=None, max_side: int = 2048,
                         score_thr: float = 0.0,
                         title: Optional[str] = None) -> List[int]:
    """The raster (decimated to at most ``max_side`` px a side, bands and
    scaling as inference reads them) with the outlines of one or more
    vector layers on top, in **map coordinates**: the axes are the raster's
    CRS (eastings / northings, or longitude / latitude), so the picture
    reads like a map in QGIS. Layers in another CRS are reprojected to the
    raster's. Saved to ``path`` (PNG).

    Args:
        path (str): the PNG to write.
        raster (str): a georeferenced raster.
        layers (list): ``(layer, label, colour)`` per layer: ``layer`` a
            GeoDataFrame or a file geopandas reads (GeoPackage, Shapefile,
            GeoJSON, FlatGeobuf), ``label`` its legend entry, ``colour`` a
            matplotlib colour.
        bands, scale: as :class:`~mmretina.geo.raster.RasterSource`.
        max_side (int): the picture's raster at most this many px a side.
        score_thr (float): features with a ``score`` below it are not drawn.
        title (str, optional): the axes' title.

    Returns:
        list[int]: the number of features drawn per layer.

    Raises:
        ValueError: the raster has no CRS or a rotated transform (there are
            no map axes to draw).
    """
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    from matplotlib.collections import LineCollection
    from pyproj import CRS

    geopandas, shapely = require('writing GIS layers', 'geopandas',
                                  'shapely')
    src = RasterSource(raster, bands=bands, scale=scale)
    g = src.georef
    if g is None or g.crs_wkt is None:
        raise ValueError(f'{raster}: the raster has no CRS; draw the '
                         'detections in pixels instead (tools/infer.py '
                         'writes <stem>_detections.png)')
    a, b, c, d, e, f = g.transform
    if b or d:
        raise ValueError(f'{raster}: the raster\'s transform is rotated; '
                         'map axes need a north-up raster')
    img, _ = src.overview(max_side)
    extent = (c, c + a * src.width, f + e * src.height, f)
    crs = CRS.from_wkt(g.crs_wkt)
    fig, ax = plt.subplots(figsize=(8, 8 * src.height / src.width + 0.6),
                           dpi=150)
    ax.imshow(img[:, :, ::-1], extent=extent, interpolation='nearest')
    counts, handles = [], []
    for layer, label, colour in layers:
        frame = (layer if isinstance(layer, geopandas.GeoDataFrame) else
                 geopandas.read_file(layer))
        if frame.crs is not None and not crs.equals(frame.crs):
            frame = frame.to_crs(crs)
        if score_thr > 0 and 'score' in frame.columns:
            frame = frame[frame['score'] >= score_thr]
        lines = []
        for geom in frame.geometry.boundary:
            if geom is None or geom.is_empty:
                continue
            for part in getattr(geom, 'geoms', [geom]):
                lines.append(np.asarray(part.coords)[:, :2])
        ax.add_collection(LineCollection(lines, colors=colour,
                                         linewidths=0.8))
        handles.append(plt.Line2D([], [], color=colour,
                                  label=f'{label} ({len(frame)})'))
        counts.append(len(frame))
    ax.set_xlim(extent[0], extent[1])
    ax.set_ylim(extent[2], extent[3])
    unit = crs.axis_info[0].unit_name if crs.axis_info else ''
    names = [ax_.name for ax_ in crs.axis_info][:2] or ['x', 'y']
    ax.set_xlabel(f'{names[0]} ({unit})')
    ax.set_ylabel(f'{names[1]} ({unit})')
    ax.ticklabel_format(useOffset=False, style='plain')
    ax.tick_params(labelsize=7)
    ax.legend(handles=handles, loc='upper right', fontsize=7)
    ax.set_title(title or f'{osp.basename(raster)}: {crs.name}', fontsize=9)
    fig.tight_layout()
    _makedirs(path)
    fig.savefig(path)
    plt.close(fig)
    return counts


# a few distinct colours (RGB) for configs without a palette
_PALETTE = [(255, 56, 56), (56, 255, 56), (56, 56, 255), (255, 178, 29),
            (207, 210, 49), (72, 249, 10), (146, 204, 23), (61, 219, 134),
            (26, 147, 52), (0, 212, 187), (44, 153, 168), (0, 194, 255)]


def _makedirs(path: str) -> None:
    d = osp.dirname(osp.abspath(path))
    os.makedirs(d, exist_ok=True)
