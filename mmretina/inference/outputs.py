"""What a run of detections writes (:class:`RunOutputs`), from the merged
detections of each input, its georeferencing and the preview it is drawn
on; :mod:`mmretina.geo.writers` writes each file.

Outputs in ``out_dir``: per input ``<stem>_detections.png`` (the boxes with
score >= ``score_thr`` over the image, decimated to :data:`PREVIEW_SIDE` px
a side for a larger raster) and, for a georeferenced raster (or any input
when a format is asked for), ``<stem>.<format>`` (:func:`~mmretina.geo.
writers.write_layer`); for all inputs ``results.json`` (COCO results, all
detections) and ``detections.csv``. ``merge_layers``: one
``detections.<format>`` for all inputs instead of one layer each; one layer
holds one CRS (:func:`check_one_crs`, asked before any window runs).

An oriented model's rotated boxes, (M, 5) ``(cx, cy, w, h, angle)``, are
written as layers of rotated polygons (the four corners through the
raster's affine transform), CSV ``image_path,cx,cy,w,h,angle,label,score``
and rotated rectangles in the PNG.
"""
import os
import os.path as osp
from typing import Callable, List, Optional, Sequence

import numpy as np

from mmretina.geo.raster import Georef, crs_groups, crs_name, scale_boxes
from mmretina.geo.writers import (VECTOR_FORMATS, detections_frame,
                                  draw_detections, write_coco_json,
                                  write_csv, write_layer)

__all__ = ['PREVIEW_SIDE', 'check_writable', 'check_one_crs', 'above',
           'RunOutputs']

# the longest side of the image a PNG is drawn on
PREVIEW_SIDE = 4096


def check_writable(out_dir: str) -> None:
    """Create ``out_dir`` and check a file can be written there, before any
    inference (an hour of windows is not lost to a typo)."""
    try:
        os.makedirs(out_dir, exist_ok=True)
        probe = osp.join(out_dir, f'.mmretina_write_test_{os.getpid()}')
        with open(probe, 'w'):
            pass
        os.remove(probe)
    except OSError as e:
        raise ValueError(f'--out-dir {out_dir}: cannot write there '
                         f'({e.strerror or e}); choose a writable folder'
                         ) from None


def check_one_crs(paths: Sequence[str],
                  georefs: Sequence[Optional[Georef]]) -> None:
    """Refuse georeferenced rasters in more than one CRS for one layer.

    Rasters without georeferencing are not checked: with any of them the
    merged layer holds pixel coordinates (:meth:`RunOutputs.write_layer`
    says so).

    Args:
        paths (list[str]): the rasters.
        georefs (list[Georef | None]): theirs, in the same order.

    Raises:
        ValueError: naming the files of each CRS and what to change.
    """
    if not georefs or any(g is None for g in georefs):
        return
    groups = crs_groups([g.crs_wkt for g in georefs])
    if len(groups) == 1:
        return

    def listed(positions: List[int]) -> str:
        names = [osp.basename(paths[i]) for i in positions]
        return ', '.join(names[:3]) + (f' and {len(names) - 3} more'
                                       if len(names) > 3 else '')

    parts = '; '.join(f'{crs_name(wkt)}: {listed(positions)}'
                      for wkt, positions in groups)
    raise ValueError(
        f'--merge-layers: the rasters are in {len(groups)} different CRSs '
        f'({parts}), and one layer holds one CRS; write one layer per '
        'raster (without --merge-layers) or reproject the rasters to one '
        'CRS first (gdalwarp -t_srs)')


def above(res: dict, score_thr: float) -> dict:
    """``res`` with only its detections of score >= ``score_thr``
    (``bboxes`` (M, 4) or (M, 5), ``scores`` (M,), ``labels`` (M,)
    arrays)."""
    keep = res['scores'] >= score_thr
    return dict(res, bboxes=res['bboxes'][keep], scores=res['scores'][keep],
                labels=res['labels'][keep])


class RunOutputs:
    """The files a run writes, and the lines it logs about them.

    Each result is a dict: ``image_path``; ``bboxes`` (M, 4) ``(x1, y1,
    x2, y2)`` or rotated (M, 5) ``(cx, cy, w, h, angle)``, float32, in the
    pixels of the input (its native grid); ``scores`` (M,) float32;
    ``labels`` (M,) int64; ``georef`` (:class:`~mmretina.geo.raster.
    Georef` or None).

    Args:
        out_dir (str, optional): output folder; out (str, optional): one
            PNG (one input, no other output).
        score_thr (float): drawn, CSV and GIS layer detections.
        fmt (str, optional): GIS format (:data:`VECTOR_FORMATS`); None:
            GeoPackage for georeferenced inputs, none for the others.
        keep_crs (bool): GeoJSON in the raster's CRS, not RFC 7946.
        merge_layers (bool): one layer for all inputs.
        tile (int, optional): the window side (px) named in the log lines;
            None: each input was read as one window.
        log (callable): prints a line.
    """

    def __init__(self,
                 out_dir: Optional[str] = None,
                 out: Optional[str] = None,
                 score_thr: float = 0.3,
                 fmt: Optional[str] = None,
                 keep_crs: bool = False,
                 merge_layers: bool = False,
                 tile: Optional[int] = None,
                 log: Callable[[str], None] = print) -> None:
        if fmt is not None and fmt not in VECTOR_FORMATS:
            raise ValueError(f'--format {fmt}: choose one of '
                             f'{", ".join(VECTOR_FORMATS)}')
        self.out_dir, self.out = out_dir, out
        self.score_thr = score_thr
        self.fmt, self.keep_crs = fmt, keep_crs
        self.merge_layers = merge_layers
        self.tile = tile
        self.log = log

    def check_inputs(self, paths: Sequence[str],
                     georef: Callable[[str], Optional[Georef]]) -> None:
        """Refuse, before any window runs, inputs these outputs cannot
        hold: with ``merge_layers``, rasters in different CRSs
        (:func:`check_one_crs`).

        Args:
            paths (list[str]): the inputs.
            georef (callable): path -> its :class:`~mmretina.geo.raster.
                Georef` or None, read from the header (called only when
                there is something to check).
        """
        if self.out_dir and self.merge_layers:
            check_one_crs(paths, [georef(p) for p in paths])

    def write_input(self, res: dict, preview: Optional[np.ndarray],
                    factor: float, meta: dict, classes: Sequence[str],
                    palette: Optional[Sequence[tuple]] = None) -> None:
        """One input's PNG and (without ``merge_layers``) GIS layer.

        Args:
            res (dict): the input's result (all detections).
            preview (ndarray, optional): H x W x 3 BGR uint8, the input
                decimated ``factor`` times; None: no PNG.
            factor (float): input pixels per preview pixel (>= 1).
            meta (dict): ``windows`` (int, the windows read) and
                ``skipped`` (int, those all nodata).
            classes (list[str]), palette (list[tuple], optional): class
                names and RGB colours.
        """
        path = res['image_path']
        shown = above(res, self.score_thr)
        png = self.out or osp.join(self.out_dir,
                                   _stem(path) + '_detections.png')
        drawn = 0
        if preview is not None:
            drawn = draw_detections(
                png, preview,
                dict(shown, bboxes=scale_boxes(shown['bboxes'], 1 / factor,
                                               1 / factor)),
                classes, self.score_thr, palette)
        n_win, skipped = meta['windows'], meta['skipped']
        self.log(f'{drawn} detections with score >= {self.score_thr} '
                 f'(of {len(res["scores"])}) drawn into {png}'
                 + (f' ({n_win} windows of {self.tile} px'
                    + (f', {skipped} all nodata' if skipped else '') + ')'
                    if self.tile is not None else '')
                 + (f' (decimated {factor:.1f}x)' if factor > 1 else ''))
        if skipped and skipped == n_win:
            self.log(f'  {path}: every window is nodata: no detection '
                     '(the layer is empty)')
        if self.out_dir and not self.merge_layers:
            self.write_layer([shown], [res['georef']],
                             osp.join(self.out_dir, _stem(path)), classes)
        if len(res['scores']) < 50 or self.out:
            for box, score, label in zip(shown['bboxes'], shown['scores'],
                                         shown['labels']):
                name = classes[label] if label < len(classes) else str(label)
                # [x1, y1, x2, y2]; rotated: [cx, cy, w, h, angle (rad)]
                text = ', '.join(f'{float(v):.1f}' for v in box[:4]) + (
                    f', {float(box[4]):.3f}' if len(box) == 5 else '')
                self.log(f'  {name}\t{float(score):.3f}\t[{text}]')

    def write_layer(self, shown: List[dict],
                    georefs: List[Optional[Georef]], base: str,
                    classes: Sequence[str]) -> None:
        """One GIS layer ``base.<format>`` of the results ``shown`` (their
        boxes through their georefs), if a format is asked for or any
        input is georeferenced; inputs without a CRS: pixel or unprojected
        coordinates, with a warning."""
        fmt = self.fmt
        located = [g is not None for g in georefs]
        if fmt is None:
            if not any(located):
                return  # plain images: PNG, JSON and CSV only
            fmt = 'gpkg'
        if not all(located) or any(g.crs_wkt is None for g in georefs
                                   if g is not None):
            names = [r['image_path'] for r, g in zip(shown, georefs)
                     if g is None or g.crs_wkt is None]
            self.log(f'warning: {", ".join(names[:3])}'
                     + (' ...' if len(names) > 3 else '')
                     + ' has no CRS: the '
                     f'{fmt} layer holds '
                     + ('pixel coordinates (x right, y down)'
                        if not any(located) else 'unprojected coordinates'))
            if any(located) and not all(located):
                georefs = [None] * len(georefs)
        check_one_crs([r['image_path'] for r in shown], georefs)
        frame = detections_frame(shown, classes, georefs)
        path = base + VECTOR_FORMATS[fmt][1]
        write_layer(path, frame, fmt, self.keep_crs)
        crs = frame.crs
        where = ('EPSG:4326 (RFC 7946)' if fmt == 'geojson' and crs
                 and not self.keep_crs else
                 (crs.to_string() if crs is not None else 'pixels'))
        self.log(f'  {len(frame)} polygons ({where}) -> {path}')

    def write_collections(self, results: List[dict],
                          classes: Sequence[str]) -> None:
        """``results.json`` (all detections), ``detections.csv`` and, with
        ``merge_layers``, the one layer ``detections.<format>``, for all
        ``results``."""
        js = osp.join(self.out_dir, 'results.json')
        write_coco_json(js, results)
        csv_path = osp.join(self.out_dir, 'detections.csv')
        shown = [above(r, self.score_thr) for r in results]
        write_csv(csv_path, shown, classes)
        if self.merge_layers:
            self.write_layer(shown, [r['georef'] for r in results],
                             osp.join(self.out_dir, 'detections'), classes)
        self.log(f'wrote {js} (all detections) and {csv_path} '
                 f'(score >= {self.score_thr})')


def _stem(path: str) -> str:
    return osp.splitext(osp.basename(path))[0]
