"""Rasters + vector labels (a GIS project) -> COCO (or DOTA) training
chips.

``tools/dataset_converters/raster_to_coco.py`` is the command line over
:func:`raster_to_coco`; :func:`load_labels` and :func:`pixel_boxes` are also
what ``tools/analysis_tools/eval_field.py`` reads its ground truth with.

Coordinates
-----------
* Labels are read with geopandas (GeoPackage, Shapefile, GeoJSON,
  FlatGeobuf, or a CSV of map coordinates: ``x,y`` points or
  ``xmin,ymin,xmax,ymax`` boxes, CRS from ``label_crs``) and reprojected
  from their CRS to each raster's (pyproj, through ``GeoDataFrame.to_crs``).
* Then into the raster's pixels through the inverse of its affine transform
  (:class:`~mmretina.geo.raster.Georef`; the top-left corner of the
  top-left pixel is (0, 0)). A box or polygon becomes the pixel-space
  axis-aligned box around its vertices (its envelope), ``(x1, y1, x2, y2)``
  in continuous raster pixels; a point becomes a square of ``point_radius``
  metres each side of it (in a local UTM zone when the raster's CRS is not
  in metres).
* Chips are ``chip`` px windows (:func:`~mmretina.inference.merge.
  tile_windows`: ``overlap`` px or a fraction, the last row / column
  shifted to end at the raster's edge, as at inference). Their pixels are
  the raster's bands read and scaled by the inference rule
  (:class:`~mmretina.geo.raster.RasterSource`: ``bands``, uint16 / float
  percentile stretch or ``scale``), so the model trains on what it sees at
  inference. A chip whose pixels are all nodata is not written.

Boxes on chip edges
-------------------
A box that a chip edge cuts keeps ``visible = area inside the chip / area``
of itself. With ``visible >= min_visible`` it is kept, clipped to the chip;
below, its clipped part becomes an ignore region (COCO ``iscrowd=1``:
``mmretina.CocoDataset`` sets ``ignore_flag``, mmdet's ``PackDetInputs``
puts it in ``ignored_instances``, and the assigner with
``ignore_iof_thr > 0`` neither rewards nor punishes the anchors on it).
Kept boxes then go through the one validity rule
(:mod:`mmretina.structures.box_validity`; below 1 px a side: dropped).

Rotated boxes (``rotated=True``)
--------------------------------
For oriented detectors (mmrotate): each label's vertices in raster pixels
(as above) become their minimum-area rotated rectangle
(:func:`~mmretina.structures.rotated.min_area_rboxes`: the rectangle
OpenCV picks, as mmrotate's ``qbox2rbox``, computed in float64),
``(cx, cy, w, h, angle)``, le90. A chip
keeps a rectangle with at least ``min_visible`` of its area inside, whole
(not clipped), with the difficult flag 2 where the chip's edge cuts it: the
rule of DOTA's patches (:mod:`.dota_split`). Below, it is left out: the DOTA
layout has no ignore regions. Rectangles under 1 px a side are dropped.
Chips and labels are written in the layout of mmrotate's ``DOTADataset``:
``<split>/images/`` and ``<split>/annfiles/`` (a DOTA label file per chip,
the four corners in the chip's pixels).

Splits
------
``split={'train': 0.8, 'val': 0.2}``: each raster is cut into square blocks
of ``block`` px (or metres, through the raster's pixel size); blocks, over
all rasters, are shuffled (``seed``) and dealt to the splits in the ratios.
A chip belongs to the block of its centre. No pixel is shared between
splits: a chip that overlaps a chip of a split earlier in the order
``test, val, train`` (the scarcer evaluation chips win) is dropped.
"""
import csv as _csv
import os
import os.path as osp
import random
import warnings
from collections import Counter, OrderedDict
from typing import Dict, List, NamedTuple, Optional, Sequence, Tuple

import numpy as np

from mmretina.geo.formats import IMAGE_EXTS, require
from mmretina.geo.raster import RasterError, RasterSource, crs_name
from mmretina.geo.windows import tile_windows
from mmretina.structures.box_validity import DROPPED, MIN_SIDE, box_verdicts
from mmretina.structures.rotated import min_area_rboxes, rbox_corners
from .coco_writer import CocoWriter, write_json
from .dota import dota_config_lines, write_dota_labels
from .dota_split import TRUNCATED, polygon_iof
from .records import ConversionError

__all__ = [
    'LABEL_EXTS', 'Labels', 'list_rasters', 'list_layers',
    'load_labels', 'pixel_vertices', 'pixel_boxes', 'pixel_rboxes',
    'parse_split', 'parse_length', 'chip_boxes',
    'chip_rboxes', 'assign_splits', 'raster_to_coco', 'raster_config_lines'
]

LABEL_EXTS = ('.gpkg', '.shp', '.geojson', '.json', '.fgb', '.csv')
# the order in which splits keep their chips where chips of two splits
# would overlap (evaluation chips are scarcer)
SPLIT_PRIORITY = ('test', 'val', 'train')
_AREAL = ('Polygon', 'MultiPolygon')
_POINTS = ('Point', 'MultiPoint')


def _geo():
    return require('rasters + vector labels', 'geopandas', 'shapely')[0]


class Labels(NamedTuple):
    """Labels of one or more layers, concatenated.

    Attributes:
        frame (GeoDataFrame): ``geometry`` (in its CRS, ``frame.crs``),
            ``label`` (str), ``source`` (the file), ``fid`` (the feature's
            position in its file) and the layer's other attributes.
        kind (str): ``'areal'`` (boxes, polygons) or ``'point'``.
        repaired (int): invalid geometries repaired with ``make_valid``.
    """
    frame: object
    kind: str
    repaired: int


def list_rasters(path: str) -> List[Tuple[str, Optional[str]]]:
    """``(raster, label file or None)`` pairs from a raster file, a folder
    of rasters, or a CSV of ``raster,labels`` rows (relative paths are
    relative to the CSV)."""
    if osp.isdir(path):
        files = sorted(osp.join(path, f) for f in os.listdir(path)
                       if f.lower().endswith(IMAGE_EXTS))
        if not files:
            raise ConversionError(
                f'{path}: no raster ({", ".join(IMAGE_EXTS)}) in this '
                'folder')
        return [(f, None) for f in files]
    if not osp.isfile(path):
        raise ConversionError(f'{path}: no such raster, folder or CSV')
    if path.lower().endswith('.csv'):
        base = osp.dirname(path)
        pairs = []
        with open(path, newline='', encoding='utf-8-sig') as f:
            for i, row in enumerate(_csv.reader(f), 1):
                row = [c.strip() for c in row if c.strip()]
                if not row or row[0].lower() in ('raster', 'image',
                                                 'image_path'):
                    continue
                if len(row) != 2:
                    raise ConversionError(
                        f'{path}:{i}: expected raster,labels (two '
                        f'columns), got {row}')
                pairs.append(tuple(p if osp.isabs(p) else osp.join(base, p)
                                   for p in row))
        if not pairs:
            raise ConversionError(f'{path}: no raster,labels row')
        return pairs
    return [(path, None)]


def list_layers(path: str) -> List[str]:
    """A vector layer file, or the layers of a folder (sorted)."""
    if osp.isdir(path):
        files = sorted(osp.join(path, f) for f in os.listdir(path)
                       if f.lower().endswith(LABEL_EXTS))
        if not files:
            raise ConversionError(
                f'{path}: no vector layer ({", ".join(LABEL_EXTS)}) in this '
                'folder')
        return files
    if not osp.isfile(path):
        raise ConversionError(f'{path}: no such label file or folder')
    return [path]


def _read_csv_layer(path: str, label_crs: Optional[str]):
    """A CSV of map coordinates: ``x,y`` (points) or
    ``xmin,ymin,xmax,ymax`` (boxes) columns."""
    gpd = _geo()
    import pandas as pd
    from shapely.geometry import Point, box
    df = pd.read_csv(path)
    cols = {c.lower(): c for c in df.columns}
    if all(k in cols for k in ('xmin', 'ymin', 'xmax', 'ymax')):
        geom = [box(*(float(r[cols[k]]) for k in
                      ('xmin', 'ymin', 'xmax', 'ymax')))
                for _, r in df.iterrows()]
    elif 'x' in cols and 'y' in cols:
        geom = [Point(float(r[cols['x']]), float(r[cols['y']]))
                for _, r in df.iterrows()]
    else:
        raise ConversionError(
            f'{path}: a CSV of labels needs map-coordinate columns x,y '
            '(points) or xmin,ymin,xmax,ymax (boxes); it has '
            f'{list(df.columns)}. (A CSV of pixel boxes per image is '
            'to_coco.py csv.)')
    return gpd.GeoDataFrame(df, geometry=geom, crs=label_crs)


def _read_layer(path: str, label_crs: Optional[str]):
    gpd = _geo()
    if path.lower().endswith('.csv'):
        return _read_csv_layer(path, label_crs)
    try:
        frame = gpd.read_file(path)
    except Exception as e:  # pyogrio raises DataSourceError and others
        raise ConversionError(
            f'{path}: not a vector layer geopandas can read '
            f'({" ".join(str(e).split())[:200]}); give a GeoPackage, '
            'Shapefile, GeoJSON, FlatGeobuf or CSV') from None
    if frame.crs is None and label_crs:
        frame = frame.set_crs(label_crs)
    return frame


def load_labels(paths: Sequence[str],
                class_field: Optional[str] = None,
                label_crs: Optional[str] = None,
                log=print) -> Labels:
    """Read label layers, check them and concatenate them.

    Args:
        paths (list[str]): vector layer files (or CSVs of map coordinates).
        class_field (str, optional): the attribute holding the class; None:
            one class, ``'object'``.
        label_crs (str, optional): CRS of layers that carry none (a CSV, a
            Shapefile without .prj), e.g. ``'EPSG:32617'``.
        log (callable): prints the repairs.

    Returns:
        Labels

    Raises:
        ConversionError: an empty layer, an unknown class field, a feature
            without geometry or class, mixed points and polygons, lines, or
            layers in different CRSs without any.
    """
    gpd = _geo()
    import pandas as pd
    from shapely import make_valid
    frames, kinds, repaired = [], {}, 0
    for path in paths:
        frame = _read_layer(path, label_crs)
        if len(frame) == 0:
            raise ConversionError(
                f'{path}: the layer has no feature; label some objects or '
                'leave the file out')
        if class_field is not None and class_field not in frame.columns:
            attrs = [c for c in frame.columns if c != 'geometry']
            raise ConversionError(
                f'{path}: no attribute {class_field!r} (--class-field); the '
                f'layer has {attrs}')
        frame = frame.reset_index(drop=True)
        frame['fid'] = np.arange(len(frame))
        frame['source'] = path
        missing = frame.geometry.isna() | frame.geometry.is_empty
        if missing.any():
            raise ConversionError(
                f'{path}: feature(s) {frame.fid[missing].tolist()[:10]} have '
                'no geometry; delete them or draw their shape')
        invalid = ~frame.geometry.is_valid
        if invalid.any():
            ids = frame.fid[invalid].tolist()
            frame.loc[invalid, 'geometry'] = make_valid(
                frame.geometry[invalid].values)
            repaired += len(ids)
            log(f'{path}: {len(ids)} invalid geometr'
                f'{"y" if len(ids) == 1 else "ies"} (features {ids[:10]}'
                f'{" ..." if len(ids) > 10 else ""}) repaired with '
                'make_valid')
        types = Counter(frame.geometry.geom_type)
        areal = sum(v for k, v in types.items() if k in _AREAL)
        points = sum(v for k, v in types.items() if k in _POINTS)
        other = {k: v for k, v in types.items()
                 if k not in _AREAL + _POINTS + ('GeometryCollection', )}
        if other or (areal and points):
            raise ConversionError(
                f'{path}: mixed geometry types {dict(types)}; a layer holds '
                'boxes / polygons (crowns, used by their envelope) or points '
                '(stems, with --point-radius), not both, and no lines: '
                'split the layer by geometry type')
        kinds[path] = 'point' if points else 'areal'
        if class_field is None:
            frame['label'] = 'object'
        else:
            bad = frame[class_field].isna()
            if bad.any():
                raise ConversionError(
                    f'{path}: feature(s) {frame.fid[bad].tolist()[:10]} have '
                    f'no {class_field!r}; give them a class or delete them')
            frame['label'] = frame[class_field].astype(str)
        frames.append(frame)
    if len(set(kinds.values())) > 1:
        raise ConversionError(
            'mixed geometry types: '
            + ', '.join(f'{p} has {k}s' for p, k in kinds.items())
            + '; convert one set (points need --point-radius)')
    crss = {str(f.crs) if f.crs is not None else None for f in frames}
    if len(frames) > 1 and None in crss and len(crss) > 1:
        raise ConversionError(
            'some label layers have a CRS and some have none: '
            + ', '.join(p for p, f in zip(paths, frames) if f.crs is None)
            + '; give --label-crs')
    if len(frames) > 1 and len(crss) > 1:
        target = frames[0].crs
        frames = [f.to_crs(target) for f in frames]
    frame = gpd.GeoDataFrame(pd.concat(frames, ignore_index=True),
                             geometry='geometry', crs=frames[0].crs)
    return Labels(frame, next(iter(kinds.values())), repaired)


def _is_metres(crs) -> bool:
    try:
        unit = crs.axis_info[0].unit_name.lower()
    except (AttributeError, IndexError):
        return False
    return crs.is_projected and unit in ('metre', 'meter', 'm')


def _extent(bounds) -> str:
    return ('x {:.6g}..{:.6g}, y {:.6g}..{:.6g}'.format(
        bounds[0], bounds[2], bounds[1], bounds[3]))


def pixel_vertices(labels: Labels,
                   raster: str,
                   georef,
                   point_radius: Optional[float] = None
                   ) -> Tuple[np.ndarray, np.ndarray]:
    """The vertices of the labels in a raster's pixels: each label
    reprojected to the raster's CRS, a point buffered to a square of
    ``point_radius`` metres each side, then every vertex through the inverse
    of the raster's affine transform.

    Args:
        labels, raster, georef, point_radius: as :func:`pixel_boxes`.

    Returns:
        tuple: ``(coords, which)``: V x 2 float64 ``(col, row)`` in
        continuous raster pixels (NaN or inf where a vertex does not
        project); (V,) the position of each vertex's label in
        ``labels.frame`` (non-decreasing).

    Raises:
        ConversionError: as :func:`pixel_boxes`.
    """
    import shapely
    from pyproj import CRS
    frame = labels.frame
    if labels.kind == 'point' and not point_radius:
        first = frame.source.iloc[0]
        raise ConversionError(
            f'{first}: point labels (feature {int(frame.fid.iloc[0])} and '
            f'{len(frame) - 1} more) need --point-radius METRES, the half '
            'side of the box drawn around each point (e.g. 1.5 for crowns '
            '3 m across)')
    if georef is None or georef.crs_wkt is None:
        if frame.crs is not None:
            raise ConversionError(
                f'{raster}: the raster has no CRS but the labels '
                f'({frame.source.iloc[0]}) are in {crs_name(frame.crs)} map '
                'coordinates; assign the raster its CRS (gdal_edit.py -a_srs '
                'EPSG:XXXX) or give labels in pixel coordinates without a '
                'CRS')
        crs = None
        geoms = frame.geometry
    else:
        crs = CRS.from_wkt(georef.crs_wkt)
        if frame.crs is None:
            raise ConversionError(
                f'{frame.source.iloc[0]}: the labels have no CRS and '
                f'{raster} is in {crs_name(crs)}; give --label-crs (the '
                "labels' CRS)")
        geoms = frame.geometry.to_crs(crs)
    if labels.kind == 'point':
        if crs is not None and not _is_metres(crs):
            local = geoms.estimate_utm_crs()
            geoms = geoms.to_crs(local).buffer(point_radius,
                                               cap_style='square')
            geoms = geoms.to_crs(crs)
        else:
            geoms = geoms.buffer(point_radius, cap_style='square')
    # the vertices, into pixels: (col, row) = M^-1 ((X, Y) - (c, f))
    coords, which = shapely.get_coordinates(geoms.values, return_index=True)
    if georef is not None:
        a, b, c, d, e, f = georef.transform
        det = a * e - b * d
        x, y = coords[:, 0] - c, coords[:, 1] - f
        coords = np.stack([(e * x - b * y) / det, (-d * x + a * y) / det], 1)
    return coords, which


def pixel_boxes(labels: Labels,
                raster: str,
                georef,
                width: int,
                height: int,
                point_radius: Optional[float] = None
                ) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The labels in a raster's pixels.

    Args:
        labels (Labels): from :func:`load_labels`.
        raster (str): its path (for messages).
        georef (Georef | None): the raster's transform and CRS
            (:func:`mmretina.geo.raster.read_georef`); None: a plain image,
            whose labels must be in pixels (a layer without CRS, y down).
        width, height (int): raster size in px.
        point_radius (float, optional): half the side of a point's box, in
            metres; required for point labels.

    Returns:
        tuple: ``(boxes, index, on_raster)``: boxes N x 4 float64
        ``(x1, y1, x2, y2)`` in continuous raster pixels, for every label;
        ``index`` (N,) positions in ``labels.frame``; ``on_raster`` (N,)
        bool, the box meets ``[0, width] x [0, height]``.

    Raises:
        ConversionError: map labels over a raster without CRS, points
            without ``point_radius``.
    """
    coords, which = pixel_vertices(labels, raster, georef, point_radius)
    bounds, on = _envelopes(coords, which, len(labels.frame), width, height)
    return bounds, np.arange(len(labels.frame)), on


def _envelopes(coords: np.ndarray, which: np.ndarray, n: int, width: int,
               height: int) -> Tuple[np.ndarray, np.ndarray]:
    """N x 4 envelopes of the vertices of N labels (NaN for a label with a
    vertex that does not project) and whether each meets the raster."""
    bounds = np.full((n, 4), np.nan)
    with np.errstate(invalid='ignore'):
        np.fmin.at(bounds[:, 0], which, coords[:, 0])
        np.fmin.at(bounds[:, 1], which, coords[:, 1])
        np.fmax.at(bounds[:, 2], which, coords[:, 0])
        np.fmax.at(bounds[:, 3], which, coords[:, 1])
        # a vertex that does not project (far outside the CRS's area) makes
        # the label unplaceable: off the raster
        bad = np.zeros(n, bool)
        np.logical_or.at(bad, which, ~np.isfinite(coords).all(axis=1))
        bounds[bad] = np.nan
        on = ((bounds[:, 2] > 0) & (bounds[:, 0] < width)
              & (bounds[:, 3] > 0) & (bounds[:, 1] < height))
    return bounds, on


def pixel_rboxes(labels: Labels,
                 raster: str,
                 georef,
                 width: int,
                 height: int,
                 point_radius: Optional[float] = None,
                 scale: Tuple[float, float] = (1.0, 1.0)
                 ) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The labels as minimum-area rotated rectangles in a raster's pixels
    (the ground truth of oriented detectors).

    Each label's vertices in raster pixels (:func:`pixel_vertices`: from
    the layer's CRS to the raster's, then through the inverse affine
    transform), divided by ``scale``, and their minimum-area rectangle
    (:func:`~mmretina.structures.rotated.min_area_rboxes`).

    Args:
        labels, raster, georef, width, height, point_radius: as
            :func:`pixel_boxes`.
        scale (tuple): ``(fx, fy)``: the rectangles in the pixels of a grid
            ``fx`` x ``fy`` times coarser than the raster's (chips cut at
            another GSD); the vertices are scaled before the rectangle is
            fitted, so it stays the minimum-area one.

    Returns:
        tuple: ``(rboxes, index, on_raster)``: N x 5 float64 ``(cx, cy, w,
        h, angle)`` (le90, radians) in pixels of the grid, NaN for a label
        with a vertex that does not project; ``index`` and ``on_raster`` as
        :func:`pixel_boxes`.
    """
    coords, which = pixel_vertices(labels, raster, georef, point_radius)
    n = len(labels.frame)
    _, on = _envelopes(coords, which, n, width, height)
    coords = coords / np.asarray(scale, np.float64)
    return min_area_rboxes(coords, which, n), np.arange(n), on


def extent_message(labels: Labels, raster: str, georef, width: int,
                   height: int) -> str:
    """Both extents and CRSs, for labels that miss a raster."""
    if georef is not None:
        xs, ys = georef.apply(np.array([0, width, 0, width], float),
                              np.array([0, 0, height, height], float))
        r_ext = (xs.min(), ys.min(), xs.max(), ys.max())
        r_crs = crs_name(georef.crs_wkt)
    else:
        r_ext, r_crs = (0, 0, width, height), 'pixels'
    sources = sorted(set(labels.frame.source))
    return (f'the labels ({", ".join(sources)}) do not meet {raster}: '
            f'labels {_extent(labels.frame.total_bounds)} '
            f'({crs_name(labels.frame.crs)}), raster {_extent(r_ext)} '
            f'({r_crs}). Check that the layer\'s CRS is set right (a '
            'layer in degrees saved as metres, or the reverse) and that '
            'it belongs to this raster')


def parse_split(text: Optional[str]) -> 'OrderedDict[str, float]':
    """``'train=0.8,val=0.2'`` -> ordered ratios summing to 1; None: all
    chips in ``all``."""
    if not text:
        return OrderedDict(all=1.0)
    out = OrderedDict()
    for item in text.split(','):
        name, sep, value = item.partition('=')
        try:
            out[name.strip()] = float(value)
        except ValueError:
            raise ConversionError(
                f'--split {text!r}: expected NAME=RATIO,..., e.g. '
                'train=0.8,val=0.2') from None
        if not sep or name.strip() not in SPLIT_PRIORITY:
            raise ConversionError(
                f'--split {text!r}: names are train, val and test, e.g. '
                'train=0.8,val=0.2')
    if any(v < 0 for v in out.values()) or not 0.99 < sum(
            out.values()) < 1.01:
        raise ConversionError(f'--split {text!r}: ratios must be >= 0 and '
                              'sum to 1')
    return out


def parse_length(text: str, what: str = '--block') -> Tuple[float, str]:
    """``'50m'`` -> (50.0, 'm'); ``'512px'`` or ``'512'`` -> (512.0,
    'px')."""
    t = str(text).strip().lower()
    unit = 'm' if t.endswith('m') and not t.endswith('px') else 'px'
    num = t[:-2] if t.endswith('px') else t[:-1] if unit == 'm' else t
    try:
        value = float(num)
    except ValueError:
        value = -1
    if value <= 0:
        raise ConversionError(f'{what} {text!r}: give a length in pixels '
                              '(512 or 512px) or metres (50m)')
    return value, unit


def chip_boxes(boxes: np.ndarray, window, min_visible: float = 0.5
               ) -> Tuple[np.ndarray, np.ndarray, np.ndarray, Counter]:
    """The boxes of one chip.

    Args:
        boxes (ndarray): N x 4 ``(x1, y1, x2, y2)`` in raster pixels.
        window (Window): the chip, ``[x0, x1) x [y0, y1)`` raster pixels.
        min_visible (float): the smallest fraction of a box's area inside
            the chip for it to be kept (clipped); below, an ignore region.

    Returns:
        tuple: ``(boxes, index, iscrowd, report)``: K x 4 boxes in the
        chip's pixels, clipped to it; K indices into ``boxes``; K bool,
        True for ignore regions; ``report`` counts by reason.
    """
    b = np.asarray(boxes, np.float64).reshape(-1, 4)
    report = Counter()
    if not len(b):
        return np.zeros((0, 4)), np.zeros(0, np.int64), np.zeros(0, bool), \
            report
    off = np.array([window.x0, window.y0, window.x0, window.y0], float)
    local = b - off
    w, h = window.x1 - window.x0, window.y1 - window.y0
    ix = np.clip(local[:, 2], 0, w) - np.clip(local[:, 0], 0, w)
    iy = np.clip(local[:, 3], 0, h) - np.clip(local[:, 1], 0, h)
    inter = np.clip(ix, 0, None) * np.clip(iy, 0, None)
    area = (local[:, 2] - local[:, 0]) * (local[:, 3] - local[:, 1])
    touching = inter > 0
    visible = np.where(area > 0, inter / np.where(area > 0, area, 1), 0)
    clipped, verdicts = box_verdicts(local, w, h, clip=True)
    keep, crowd = [], []
    for i in np.nonzero(touching)[0]:
        if verdicts[i] in DROPPED:
            report[f'dropped: {verdicts[i]}'] += 1
            continue
        is_crowd = visible[i] < min_visible - 1e-9
        report['ignore regions (iscrowd=1, less than --min-visible '
               'inside)' if is_crowd else
               ('kept, clipped' if visible[i] < 1 - 1e-9 else 'kept')] += 1
        keep.append(i)
        crowd.append(is_crowd)
    idx = np.asarray(keep, np.int64)
    return clipped[idx].reshape(-1, 4), idx, np.asarray(crowd, bool), report


def chip_rboxes(polys: np.ndarray, window, min_visible: float = 0.5
                ) -> Tuple[np.ndarray, np.ndarray, np.ndarray, Counter]:
    """The rotated boxes of one chip, by the rule of DOTA's patches
    (:func:`~.dota_split.window_objects`: the IoF of the rectangle with the
    chip), ``min_visible`` as its ``iof_thr``.

    Args:
        polys (ndarray): N x 8 corners of the rectangles in raster pixels.
        window (Window): the chip, ``[x0, x1) x [y0, y1)`` raster pixels.
        min_visible (float): the smallest fraction of a rectangle's area
            inside the chip for it to be kept (unclipped; marked cut);
            below, it is left out (the DOTA layout has no ignore regions).

    Returns:
        tuple: ``(polys, index, cut, report)``: K x 8 corners in the chip's
        pixels; K indices into ``polys``; K bool, True where the chip's
        edge cuts the rectangle; ``report`` counts by reason.
    """
    win = np.array([[window.x0, window.y0, window.x1, window.y1]])
    p = np.asarray(polys, np.float64).reshape(-1, 8)
    iof, inside = polygon_iof(p, win)
    iof, inside = iof[:, 0], inside[:, 0]
    keep = (iof > 0) & (iof >= min_visible - 1e-9)
    report = Counter({
        'kept': int((keep & inside).sum()),
        f'kept, cut by the chip edge (difficult {TRUNCATED})':
        int((keep & ~inside).sum()),
        'left out: less than --min-visible inside (the DOTA layout has no '
        'ignore regions)': int(((iof > 0) & ~keep).sum())})
    idx = np.nonzero(keep)[0]
    local = p[idx] - np.tile([window.x0, window.y0], 4)
    return local, idx, ~inside[idx], report


def assign_splits(blocks: Sequence[tuple], ratios: 'OrderedDict[str, float]',
                  seed: int = 0) -> Dict[tuple, str]:
    """Deal ``blocks`` (hashable keys, e.g. ``(raster, bx, by)``) to the
    splits in the ratios: shuffled with ``seed``, then the first
    ``round(r * n)`` to the first split, and so on (the last split takes the
    rest)."""
    order = list(blocks)
    random.Random(seed).shuffle(order)
    out, start = {}, 0
    names = list(ratios)
    for k, name in enumerate(names):
        n = (len(order) - start if k == len(names) - 1 else
             int(round(ratios[name] * len(order))))
        for key in order[start:start + n]:
            out[key] = name
        start += n
    return out


def _overlaps(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(len(a),) bool: window i of ``a`` shares a pixel with a window of
    ``b`` (both K x 4 ``x0, y0, x1, y1`` integer pixel windows)."""
    if not len(a) or not len(b):
        return np.zeros(len(a), bool)
    out = np.zeros(len(a), bool)
    for s in range(0, len(a), 512):
        aa = a[s:s + 512, None, :]
        out[s:s + 512] = ((aa[..., 0] < b[None, :, 2])
                          & (b[None, :, 0] < aa[..., 2])
                          & (aa[..., 1] < b[None, :, 3])
                          & (b[None, :, 1] < aa[..., 3])).any(axis=1)
    return out


def raster_to_coco(rasters: str,
                   labels: Optional[str],
                   out_dir: str,
                   chip: int = 400,
                   overlap: float = 0.0,
                   class_field: Optional[str] = None,
                   classes: Optional[Sequence[str]] = None,
                   point_radius: Optional[float] = None,
                   label_crs: Optional[str] = None,
                   min_visible: float = 0.5,
                   empty_ratio: float = 0.1,
                   split: Optional[str] = None,
                   block: Optional[str] = None,
                   bands=None,
                   scale=None,
                   gsd: Optional[float] = None,
                   keep_geo: bool = False,
                   seed: int = 0,
                   rotated: bool = False,
                   log=print) -> dict:
    """Cut training chips and their COCO annotations (or, ``rotated``,
    DOTA label files) from rasters and vector labels (see the module
    docstring for the rules).

    Args:
        rasters (str): a raster, a folder of rasters, or a CSV of
            ``raster,labels`` rows.
        labels (str, optional): a layer or a folder of layers for every
            raster (None only with a CSV of pairs).
        out_dir (str): writes ``images/`` (chips) and
            ``annotations/<split>.json``.
        chip (int): chip side in px; overlap (float): px, or a fraction of
            ``chip`` when < 1.
        class_field, classes: the class attribute; the class order
            (default: the values found, sorted). An unknown value is an
            error.
        point_radius (float, optional): metres, for point labels.
        label_crs (str, optional): CRS of layers without one.
        min_visible (float): see :func:`chip_boxes`.
        empty_ratio (float): chips without a kept box are kept up to this
            many per chip with boxes (per split, drawn with ``seed``).
        split (str, optional): e.g. ``'train=0.8,val=0.2'``.
        block (str, optional): split block side, ``'50m'`` or ``'2000px'``
            (default: 5 chips).
        bands, scale: as at inference (:class:`~mmretina.geo.raster.
            RasterSource`).
        gsd (float, optional): cut the chips from rasters with a CRS
            resampled to this GSD in metres (the rule of inference:
            :class:`~mmretina.geo.raster.RasterSource`); None: at their
            own. The COCO files' ``info.gsd`` and the printed config lines
            state the chips' GSD.
        keep_geo (bool): GeoTIFF chips with their georeferencing instead of
            PNG.
        rotated (bool): labels as minimum-area rotated rectangles
            (:func:`pixel_rboxes`), chosen per chip by :func:`chip_rboxes`
            and written in the layout of mmrotate's ``DOTADataset``:
            ``<split>/images/`` and ``<split>/annfiles/`` (one DOTA label
            file per chip, the four corners in the chip's pixels).

    Returns:
        dict: ``splits`` (name -> ``path``, ``coco``; rotated: name ->
        ``path`` (the annfiles folder), ``img_dir``, ``chips``,
        ``objects``, ``cut``), ``classes``, ``img_dir``, ``report``
        (Counter of what happened to labels and chips), ``gsd`` (the
        chips', metres, or None), ``rotated``, ``img_suffix``,
        ``out_dir``.
    """
    import cv2
    import torch
    if chip <= 0:
        raise ConversionError(f'--chip {chip}: give a positive size in px')
    if not 0 <= min_visible <= 1:
        raise ConversionError(f'--min-visible {min_visible}: give a '
                              'fraction between 0 and 1')
    if empty_ratio < 0:
        raise ConversionError(f'--empty-ratio {empty_ratio}: give >= 0')
    pairs = list_rasters(rasters)
    if labels is None and any(lab is None for _, lab in pairs):
        raise ConversionError(
            'give LABELS (a layer or a folder of layers), or RASTERS as a '
            'CSV of raster,labels rows')
    ratios = parse_split(split)
    report = Counter()
    shared = None
    if labels is not None:
        shared = load_labels(list_layers(labels), class_field, label_crs,
                             log)
        report['invalid geometries repaired'] += shared.repaired
    # per raster: its labels in pixels
    jobs = []
    met = np.zeros(len(shared.frame), bool) if shared is not None else None
    for raster, lab_path in pairs:
        try:
            source = RasterSource(raster, bands, scale, gsd)
        except RasterError as e:
            raise ConversionError(str(e)) from None
        if source.resampled:
            log(source.resampling_note('cut into chips at'))
        if lab_path is not None:
            lab = load_labels(list_layers(lab_path), class_field, label_crs,
                              log)
            report['invalid geometries repaired'] += lab.repaired
        else:
            lab = shared
        if rotated:  # N x 8 corners of the rectangles in the chips' grid
            grid = (source.fx, source.fy) if source.resampled else (1, 1)
            rboxes, idx, on = pixel_rboxes(
                lab, raster, source.georef, source.native_width,
                source.native_height, point_radius, grid)
            boxes = rbox_corners(torch.from_numpy(rboxes)).reshape(
                -1, 8).numpy()
        else:
            boxes, idx, on = pixel_boxes(lab, raster, source.georef,
                                         source.native_width,
                                         source.native_height, point_radius)
            if source.resampled:  # raster px -> the chips' grid
                boxes = boxes / np.array([source.fx, source.fy, source.fx,
                                          source.fy])
        if lab is shared:
            met |= on
        elif not on.all():
            report['labels outside their raster'] += int((~on).sum())
            if not on.any():
                raise ConversionError(extent_message(
                    lab, raster, source.georef, source.native_width,
                    source.native_height))
        use = on
        if rotated:  # mmdet's rule, w < 1 or h < 1 px, on the rectangle
            small = on & ~((rboxes[:, 2] >= MIN_SIDE) &
                           (rboxes[:, 3] >= MIN_SIDE))
            report['dropped: rotated rectangles less than 1 px wide or '
                   'high'] += int(small.sum())
            use = on & ~small
        jobs.append((source, lab, boxes[use], idx[use]))
    if shared is not None:
        if not met.any():
            s = jobs[0][0]
            raise ConversionError(
                extent_message(shared, s.path, s.georef, s.native_width,
                               s.native_height)
                + (f' (nor any of the other {len(jobs) - 1} rasters)'
                   if len(jobs) > 1 else ''))
        if not met.all():
            off = shared.frame[~met]
            report['labels outside every raster'] += int((~met).sum())
            log(f'{int((~met).sum())} of {len(met)} labels lie outside every '
                'raster (features '
                + ', '.join(f'{osp.basename(s)}:{f}' for s, f in
                            zip(off.source[:10], off.fid[:10]))
                + (' ...' if len(off) > 10 else '') + '): not used')
    found = sorted({str(v) for _, lab, _, i in jobs
                    for v in lab.frame.label.values[i]})
    if classes is None:
        classes = found
    else:
        classes = list(classes)
        unknown = [v for v in found if v not in classes]
        if unknown:
            for _, lab, _, i in jobs:
                f = lab.frame.iloc[i]
                bad = f[f.label.isin(unknown)]
                if len(bad):
                    raise ConversionError(
                        f'{bad.source.iloc[0]}: feature '
                        f'{int(bad.fid.iloc[0])} has class '
                        f'{bad.label.iloc[0]!r}, not in --classes '
                        f'{classes}; add it or fix the feature')
    if not classes:
        raise ConversionError('no label meets any raster')
    spaced = [c for c in classes if len(str(c).split()) != 1]
    if rotated and spaced:
        raise ConversionError(
            f'classes {spaced}: a DOTA label file separates its fields by '
            'spaces, so a class name cannot hold one; rename the class in '
            'the layer (e.g. red_pine)')
    cat = {n: i + 1 for i, n in enumerate(classes)}

    # chips, their blocks and splits
    chips = []  # (job index, window, block key)
    blocks = set()
    for j, (source, lab, boxes, idx) in enumerate(jobs):
        if block:
            value, unit = parse_length(block)
            if unit == 'm':
                if source.georef is None or source.georef.crs_wkt is None:
                    raise ConversionError(
                        f'--block {block}: {source.path} has no CRS, so '
                        'metres cannot be converted to pixels; give --block '
                        'in px')
                side = max(1, int(round(value / (source.georef.gsd *
                                                 source.fx))))
            else:
                side = int(value)
        else:
            side = 5 * chip
        if side < chip and len(ratios) > 1:
            log(f'warning: --block ({side} px on {source.path}) is smaller '
                f'than a chip ({chip} px): many chips will be dropped at '
                'block edges')
        for win in tile_windows(source.width, source.height, chip, overlap):
            cx, cy = (win.x0 + win.x1) / 2, (win.y0 + win.y1) / 2
            key = (j, int(cx // side), int(cy // side))
            blocks.add(key)
            chips.append((j, win, key))
    where = assign_splits(sorted(blocks), ratios, seed)
    by_split = OrderedDict((name, []) for name in ratios)
    for c in chips:
        by_split[where[c[2]]].append(c)
    order = [s for s in SPLIT_PRIORITY if s in by_split] + [
        s for s in by_split if s not in SPLIT_PRIORITY]
    kept_windows: Dict[int, List[np.ndarray]] = {}
    for name in order:
        keep = []
        for j in sorted({c[0] for c in by_split[name]}):
            mine = [c for c in by_split[name] if c[0] == j]
            wins = np.array([[c[1].x0, c[1].y0, c[1].x1, c[1].y1]
                             for c in mine], np.int64).reshape(-1, 4)
            others = kept_windows.get(j, [])
            taken = (np.concatenate(others) if others else
                     np.zeros((0, 4), np.int64))
            clash = _overlaps(wins, taken)
            report[f'{name}: chips dropped at block edges (they would '
                   'share pixels with another split)'] += int(clash.sum())
            keep += [c for c, x in zip(mine, clash) if not x]
            kept_windows.setdefault(j, []).append(wins[~clash])
        by_split[name] = keep

    img_dir = osp.join(out_dir, 'images')
    ext = '.tif' if keep_geo else '.png'
    gsds = {round(src.gsd or src.native_gsd, 6)
            if (src.gsd or src.native_gsd) else None
            for src, _, _, _ in jobs}
    chips_gsd = gsds.pop() if len(gsds) == 1 else None
    rng = random.Random(seed)
    out = OrderedDict()
    for name in ratios:
        with_boxes, empty = [], []
        for j, win, _ in sorted(by_split[name],
                                key=lambda c: (c[0], c[1].y0, c[1].x0)):
            source, lab, boxes, idx = jobs[j]
            if rotated:  # flags: cut by the chip's edge
                b, k, flags, rep = chip_rboxes(boxes, win, min_visible)
                trained = len(k) > 0
            else:  # flags: ignore regions
                b, k, flags, rep = chip_boxes(boxes, win, min_visible)
                trained = (~flags).any()
            report.update(rep)
            (with_boxes if trained else empty).append((j, win, b, k, flags))
        n_empty = min(len(empty), int(round(empty_ratio * len(with_boxes))))
        report[f'{name}: empty chips left out (--empty-ratio)'] += \
            len(empty) - n_empty
        chosen = with_boxes + rng.sample(empty, n_empty)
        chosen.sort(key=lambda e: (e[0], e[1].y0, e[1].x0))
        if rotated:
            chip_dir = osp.join(out_dir, name, 'images')
            ann_dir = osp.join(out_dir, name, 'annfiles')
            os.makedirs(ann_dir, exist_ok=True)
            counts = Counter()
        else:
            chip_dir = img_dir
            writer = CocoWriter([dict(id=i, name=n) for n, i in cat.items()])
        os.makedirs(chip_dir, exist_ok=True)
        for j, win, b, k, flags in chosen:
            source, lab, boxes, idx = jobs[j]
            img, valid = source.read(win)
            if valid is not None and not valid.any():
                report[f'{name}: chips entirely nodata (not written)'] += 1
                continue
            stem = osp.splitext(osp.basename(source.path))[0]
            fname = f'{stem}_x{win.x0}_y{win.y0}{ext}'
            path = osp.join(chip_dir, fname)
            if keep_geo:
                _write_geotiff(path, img, source, win)
            elif not cv2.imwrite(path, img):
                raise ConversionError(f'{path}: cannot write the chip')
            names = [str(v) for v in lab.frame.label.values[idx[k]]]
            if rotated:
                write_dota_labels(
                    osp.join(ann_dir, osp.splitext(fname)[0] + '.txt'), b,
                    names, np.where(flags, TRUNCATED, 0))
                counts.update(chips=1, objects=len(k), cut=int(flags.sum()))
                continue
            img_id = writer.add_image(
                fname, win.x1 - win.x0, win.y1 - win.y0, b,
                [cat[v] for v in names], iscrowd=flags.tolist())
            im = writer.images[img_id - 1]
            im['raster'] = source.path
            im['window'] = [int(win.x0), int(win.y0), int(win.x1),
                            int(win.y1)]
        if rotated:
            out[name] = dict(path=ann_dir, img_dir=chip_dir,
                             chips=counts['chips'], objects=counts['objects'],
                             cut=counts['cut'])
            continue
        coco = writer.to_dict(info=dict(
            description='chips cut by mmretina raster_to_coco',
            chip=chip, overlap=overlap, min_visible=min_visible,
            bands=list(jobs[0][0].bands), gsd=chips_gsd))
        path = osp.join(out_dir, 'annotations', f'{name}.json')
        write_json(coco, path)
        out[name] = dict(path=path, coco=coco)
    return dict(splits=out, classes=list(classes), img_dir=img_dir,
                report=report, gsd=chips_gsd, rotated=rotated,
                img_suffix=ext[1:], out_dir=out_dir)


def _write_geotiff(path: str, img_bgr: np.ndarray, source, win) -> None:
    """A chip as a 3-band uint8 GeoTIFF (R, G, B: the scaled bands) with
    the window's transform and the raster's CRS."""
    import rasterio
    from rasterio.transform import Affine
    profile = dict(driver='GTiff', width=win.x1 - win.x0,
                   height=win.y1 - win.y0, count=3, dtype='uint8')
    if source.georef is not None:
        a, b, c, d, e, f = source.georef.transform
        # the window's corner in raster px, then the chip's px size
        t = (Affine(a, b, c, d, e, f) *
             Affine.translation(win.x0 * source.fx, win.y0 * source.fy) *
             Affine.scale(source.fx, source.fy))
        profile['transform'] = t
        if source.georef.crs_wkt:
            profile['crs'] = rasterio.crs.CRS.from_wkt(source.georef.crs_wkt)
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')  # NotGeoreferencedWarning
        with rasterio.open(path, 'w', **profile) as dst:
            dst.write(img_bgr[..., ::-1].transpose(2, 0, 1))


def raster_config_lines(result: dict) -> str:
    """The dataset lines to paste into a config (as ``to_coco.py``
    prints them), plus the ignore setting the chips need (rotated: the
    lines of mmrotate's ``DOTADataset``)."""
    from .convert import config_lines
    gsd_line = ''
    if result.get('gsd'):
        gsd_line = (f'\n# the chips\' ground sample distance (m): predict '
                    f'and evaluate read rasters at it\ngsd = '
                    f'{result["gsd"]:g}')
    if result.get('rotated'):
        return dota_config_lines(
            result['out_dir'],
            {name: (o['path'], o['img_dir'])
             for name, o in result['splits'].items()},
            result['classes'], result['img_suffix']) + gsd_line
    lines = config_lines(result['splits'], result['classes'],
                         result['img_dir']) + gsd_line
    return lines + (
        '\n# boxes cut by chip edges are ignore regions (iscrowd=1): '
        'let the assigner skip\n# the anchors on them\n'
        'model = dict(train_cfg=dict(assigner=dict(ignore_iof_thr=0.5)))')
