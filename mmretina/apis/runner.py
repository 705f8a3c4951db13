"""Detections over a list of images / rasters, written to disk: the engine
of ``tools/infer.py`` and ``tools/dist_infer.sh``.

Per input, the detections are

* window by window from disk (``tile``): :class:`~mmretina.apis.raster.
  RasterSource` + :func:`~mmretina.apis.raster.detect_windows`, merged by
  ``TiledInferencer.merge_windows``;
* or, untiled, the whole image decoded (:func:`~mmretina.apis.inference.
  load_image`, refusing headers above ``max_pixels``) and run once.

Outputs in ``out_dir``: per input ``<stem>_detections.png`` (the boxes with
score >= ``score_thr`` over the image, decimated to 4096 px a side for a
larger raster) and, for a georeferenced raster (or any input when a format
is asked for), ``<stem>.<format>`` (:func:`~mmretina.apis.outputs.
write_layer`); for all inputs ``results.json`` (COCO results) and
``detections.csv``. ``merge_layers``: one ``detections.<format>`` for all
inputs instead of one layer each.

Distributed (``world_size`` > 1, ranks started by torchrun, a gloo or NCCL
process group initialised): the windows of all inputs still to do, in input
order, are cut into ``world_size`` contiguous shares (a huge raster's
windows are spread over the ranks like a folder's rasters); each rank saves
its per-window detections to ``out_dir/.mmretina/parts``; after a barrier,
rank 0 merges each raster's windows (``TiledInferencer.merge_windows``:
NMS / WBF and the cut-box rule across windows of different ranks) and
writes the outputs. Every finished input leaves a record (``out_dir/.mmretina/<name>
.npz``: its merged detections and a fingerprint of the model and settings):
a rerun with the same fingerprint skips it.
"""
import hashlib
import json
import os
import os.path as osp
import shutil
import warnings
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from mmengine.structures import InstanceData

from .inference import DEFAULT_MAX_PIXELS, TiledInferencer, load_image
from .outputs import (VECTOR_FORMATS, detections_frame, draw_detections,
                      write_coco_json, write_csv, write_layer)

__all__ = ['IMAGE_EXTS', 'list_inputs', 'check_writable', 'InferenceRun']

IMAGE_EXTS = ('.png', '.jpg', '.jpeg', '.tif', '.tiff', '.bmp', '.jp2',
              '.vrt', '.img')
PREVIEW_SIDE = 4096


def list_inputs(path: str) -> List[str]:
    """The images / rasters of a directory (sorted), or ``[path]``."""
    if osp.isdir(path):
        files = sorted(
            osp.join(path, f) for f in os.listdir(path)
            if f.lower().endswith(IMAGE_EXTS))
        if not files:
            raise ValueError(f'no image ({", ".join(IMAGE_EXTS)}) in '
                             f'directory {path}')
        return files
    if not osp.isfile(path):
        raise ValueError(f'image {path!r} does not exist')
    return [path]


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


def _fingerprint(settings: dict) -> str:
    return hashlib.sha1(
        json.dumps(settings, sort_keys=True, default=str).encode()
    ).hexdigest()[:16]


def _stem(path: str) -> str:
    return osp.splitext(osp.basename(path))[0]


def _numpy(inst: InstanceData) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    return (torch.as_tensor(inst.bboxes).float().cpu().numpy().reshape(-1, 4),
            torch.as_tensor(inst.scores).float().cpu().numpy(),
            torch.as_tensor(inst.labels).long().cpu().numpy())


class InferenceRun:
    """Detections over inputs, written to ``out_dir`` (or one PNG).

    Args:
        inferencer (TiledInferencer): backend and window / merge settings.
        tiled (bool): window by window from disk (rasterio); False: each
            image decoded whole and run once.
        classes (list[str]), palette (list[tuple], optional): class names
            and RGB colours.
        out_dir (str, optional): output folder; out (str, optional): one
            PNG (one input, no other output).
        score_thr (float): drawn, CSV and GIS layer detections.
        bands, scale: :class:`~mmretina.apis.raster.RasterSource`'s.
        fmt (str, optional): GIS format (:data:`VECTOR_FORMATS`); None:
            GeoPackage for georeferenced inputs, none for the others.
        keep_crs (bool): GeoJSON in the raster's CRS, not RFC 7946.
        merge_layers (bool): one layer for all inputs.
        max_pixels (int, optional): untiled: refuse larger images.
        settings (dict): what determines the detections (model, options),
            for the finished-input records.
        rank (int), world_size (int): distributed share.
        log (callable): prints a line (rank 0 only prints).
    """

    def __init__(self,
                 inferencer: TiledInferencer,
                 tiled: bool,
                 classes: Sequence[str],
                 palette=None,
                 out_dir: Optional[str] = None,
                 out: Optional[str] = None,
                 score_thr: float = 0.3,
                 bands=None,
                 scale=None,
                 fmt: Optional[str] = None,
                 keep_crs: bool = False,
                 merge_layers: bool = False,
                 max_pixels: Optional[int] = DEFAULT_MAX_PIXELS,
                 settings: Optional[dict] = None,
                 rank: int = 0,
                 world_size: int = 1,
                 log: Callable[[str], None] = print) -> None:
        if fmt is not None and fmt not in VECTOR_FORMATS:
            raise ValueError(f'--format {fmt}: choose one of '
                             f'{", ".join(VECTOR_FORMATS)}')
        if not tiled and (bands is not None or scale is not None):
            raise ValueError('bands / scale apply to rasters read window by '
                             'window: add --tile (e.g. --tile 400)')
        if world_size > 1 and not out_dir:
            raise ValueError('a distributed run needs --out-dir')
        self.inferencer = inferencer
        self.tiled = tiled
        self.classes, self.palette = tuple(classes), palette
        self.out_dir, self.out = out_dir, out
        self.score_thr = score_thr
        self.bands, self.scale = bands, scale
        self.fmt, self.keep_crs = fmt, keep_crs
        self.merge_layers = merge_layers
        self.max_pixels = max_pixels
        self.fingerprint = _fingerprint(dict(settings or {}, tiled=tiled,
                                             bands=bands, scale=scale))
        self.rank, self.world_size = rank, world_size
        self._log = log
        if out_dir:
            self.state_dir = osp.join(out_dir, '.mmretina')
            self.parts_dir = osp.join(self.state_dir, 'parts')

    def log(self, line: str) -> None:
        if self.rank == 0:
            self._log(line)

    # ---------------------------------------------------------------- state
    def _record_path(self, path: str) -> str:
        return osp.join(self.state_dir, osp.basename(path) + '.npz')

    def _load_record(self, path: str) -> Optional[dict]:
        rec = self._record_path(path)
        if not osp.isfile(rec):
            return None
        with np.load(rec, allow_pickle=False) as z:
            if str(z['fingerprint']) != self.fingerprint:
                return None
            georef = None
            if z['transform'].size:
                from .raster import Georef
                wkt = str(z['crs_wkt'])
                georef = Georef(tuple(float(v) for v in z['transform']),
                                wkt or None)
            return dict(image_path=path, bboxes=z['bboxes'],
                        scores=z['scores'], labels=z['labels'],
                        georef=georef)

    def _save_record(self, res: dict) -> None:
        rec = self._record_path(res['image_path'])
        os.makedirs(osp.dirname(rec), exist_ok=True)
        g = res['georef']
        tmp = rec + f'.tmp{os.getpid()}.npz'
        np.savez(tmp, bboxes=res['bboxes'], scores=res['scores'],
                 labels=res['labels'], fingerprint=self.fingerprint,
                 transform=np.array(g.transform if g else [], float),
                 crs_wkt=(g.crs_wkt or '') if g else '')
        os.replace(tmp, rec)

    # ------------------------------------------------------------ inference
    def _source(self, path: str):
        from .raster import RasterSource
        return RasterSource(path, self.bands, self.scale)

    def _georef(self, path: str):
        try:
            from .raster import RasterError, read_georef
            return read_georef(path)
        except ImportError:
            if path.lower().endswith(('.tif', '.tiff')):
                warnings.warn(f'{path}: its georeferencing is not read (no '
                              'rasterio): pip install "mmretina[geo]"')
            return None
        except RasterError:
            return None

    def run(self, inputs: Sequence[str]) -> List[dict]:
        """Detect in every input and write the outputs.

        Returns:
            list[dict]: per input (rank 0; [] on the other ranks),
            ``image_path``, ``bboxes`` (M, 4) in its pixels, ``scores``,
            ``labels`` (all detections) and ``georef``.
        """
        if self.out_dir:
            check_writable(self.out_dir)
        done = {}
        if self.out_dir:
            for p in inputs:
                rec = self._load_record(p)
                if rec is not None:
                    done[p] = rec
            if done:
                self.log(f'{len(done)} input(s) finished before with these '
                         f'settings (records in {self.state_dir}): skipped')
        todo = [p for p in inputs if p not in done]
        self._barrier()  # every rank has read the records
        if self.world_size > 1:
            self._run_shared(todo, done)
        else:
            for path in todo:
                done[path] = self._finish(path, *self._detect_one(path))
        self._barrier()
        if self.rank != 0:
            return []
        results = [done[p] for p in inputs]
        if self.out_dir:
            self._write_collections(results)
        return results

    def _detect_one(self, path: str):
        """(InstanceData, georef, preview image, preview factor)."""
        if not self.tiled:
            img = load_image(path, self.max_pixels)
            inst = self.inferencer(img)
            return inst, self._georef(path), img, 1.0
        from .raster import PreviewCanvas, detect_raster
        source = self._source(path)
        self._note_window(source)
        # the preview PNG is filled from the windows as they are read
        canvas = (PreviewCanvas(source.width, source.height, PREVIEW_SIDE)
                  if self.out_dir or self.out else None)
        inst = detect_raster(self.inferencer, source, preview=canvas)
        if canvas is None:
            return inst, source.georef, None, 1.0
        return inst, source.georef, canvas.img, canvas.factor

    def _note_window(self, source) -> None:
        tile = self.inferencer.tile
        if tile > source.width or tile > source.height:
            self.log(f'{source.path}: the {tile} px window is larger than '
                     f'the raster ({source.width}x{source.height} px): it '
                     'is read as one window (or a row / column) of the '
                     'raster\'s size')

    def _run_shared(self, todo: List[str], done: Dict[str, dict]) -> None:
        """Windows of ``todo`` shared across ranks; rank 0 merges."""
        units = []  # (input index, window index or -1 for untiled)
        sources, windows = {}, {}
        for k, path in enumerate(todo):
            if self.tiled:
                sources[k] = self._source(path)
                if self.rank == 0:
                    self._note_window(sources[k])
                windows[k] = self.inferencer.windows(sources[k].width,
                                                     sources[k].height)
                units += [(k, w) for w in range(len(windows[k]))]
            else:
                units.append((k, -1))
        n, r, ws = len(units), self.rank, self.world_size
        mine = units[r * n // ws:(r + 1) * n // ws]
        os.makedirs(self.parts_dir, exist_ok=True)
        for k in sorted({u[0] for u in mine}):
            ids = [w for kk, w in mine if kk == k]
            if self.tiled:
                from .raster import detect_windows
                per_window = detect_windows(self.inferencer.backend,
                                            sources[k], windows[k], ids,
                                            self.inferencer.batch_size)
            else:
                img = load_image(todo[k], self.max_pixels)
                per_window = {-1: self.inferencer(img)}
            part = {  # tensors: torch.load(weights_only=True) reads them
                w: tuple(torch.from_numpy(a) for a in _numpy(inst))
                for w, inst in per_window.items()
            }
            name = osp.join(self.parts_dir,
                            f'{osp.basename(todo[k])}.{self.fingerprint}'
                            f'.rank{r}.pt')
            torch.save(part, name + '.tmp')
            os.replace(name + '.tmp', name)
        self._barrier()
        if self.rank != 0:
            return
        for k, path in enumerate(todo):
            per_window = {}
            for q in range(ws):
                name = osp.join(self.parts_dir,
                                f'{osp.basename(path)}.{self.fingerprint}'
                                f'.rank{q}.pt')
                if osp.isfile(name):
                    per_window.update(torch.load(name, weights_only=True))
            per_window = {w: _instance(*v) for w, v in per_window.items()}
            if self.tiled:
                src = sources[k]
                inst = self.inferencer.merge_windows(
                    per_window, windows[k], src.width, src.height,
                    dict(img_path=path,
                         skipped=len(windows[k]) - len(per_window)))
                preview, f = src.overview(PREVIEW_SIDE)
                georef = src.georef
            else:
                inst = per_window[-1]
                preview, f, georef = load_image(path, self.max_pixels), 1.0, \
                    self._georef(path)
            done[path] = self._finish(path, inst, georef, preview, f)
            for q in range(ws):
                name = osp.join(self.parts_dir,
                                f'{osp.basename(path)}.{self.fingerprint}'
                                f'.rank{q}.pt')
                if osp.isfile(name):
                    os.remove(name)
        shutil.rmtree(self.parts_dir, ignore_errors=True)

    def _barrier(self) -> None:
        if self.world_size > 1:
            import torch.distributed as dist
            dist.barrier()

    # -------------------------------------------------------------- outputs
    def _shown(self, res: dict) -> dict:
        keep = res['scores'] >= self.score_thr
        return dict(res, bboxes=res['bboxes'][keep],
                    scores=res['scores'][keep], labels=res['labels'][keep])

    def _finish(self, path: str, inst: InstanceData, georef, preview,
                factor: float) -> dict:
        """Per-input outputs (PNG, GIS layer) and the finished record."""
        bboxes, scores, labels = _numpy(inst)
        res = dict(image_path=path, bboxes=bboxes, scores=scores,
                   labels=labels, georef=georef)
        shown = self._shown(res)
        png = self.out or osp.join(self.out_dir,
                                   _stem(path) + '_detections.png')
        drawn = draw_detections(png, preview,
                                dict(shown, bboxes=shown['bboxes'] / factor),
                                self.classes, self.score_thr, self.palette)
        windows = inst.metainfo.get('windows', [None])
        skipped = inst.metainfo.get('skipped', 0)
        self.log(f'{drawn} detections with score >= {self.score_thr} '
                 f'(of {len(scores)}) drawn into {png}'
                 + (f' ({len(windows)} windows of {self.inferencer.tile} px'
                    + (f', {skipped} all nodata' if skipped else '') + ')'
                    if self.tiled else '')
                 + (f' (decimated {factor:.1f}x)' if factor > 1 else ''))
        if self.tiled and skipped == len(windows):
            self.log(f'  {path}: every window is nodata: no detection '
                     '(the layer is empty)')
        if self.out_dir and not self.merge_layers:
            self._write_layer(
                [shown], [georef],
                osp.join(self.out_dir, _stem(path)))
        if len(scores) < 50 or self.out:
            for box, score, label in zip(shown['bboxes'], shown['scores'],
                                         shown['labels']):
                name = (self.classes[label]
                        if label < len(self.classes) else str(label))
                x1, y1, x2, y2 = (float(v) for v in box)
                self.log(f'  {name}\t{float(score):.3f}\t'
                         f'[{x1:.1f}, {y1:.1f}, {x2:.1f}, {y2:.1f}]')
        if self.out_dir:
            self._save_record(res)
        return res

    def _write_layer(self, shown: List[dict], georefs: list,
                     base: str) -> None:
        fmt = self.fmt
        located = [g is not None for g in georefs]
        if fmt is None:
            if not any(located):
                return  # plain images: PNG, JSON and CSV as before
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
        if any(located) and all(located):
            georefs = _common_crs(georefs, self.log)
        frame = detections_frame(shown, self.classes, georefs)
        path = base + VECTOR_FORMATS[fmt][1]
        write_layer(path, frame, fmt, self.keep_crs)
        crs = frame.crs
        where = ('EPSG:4326 (RFC 7946)' if fmt == 'geojson' and crs
                 and not self.keep_crs else
                 (crs.to_string() if crs is not None else 'pixels'))
        self.log(f'  {len(frame)} polygons ({where}) -> {path}')

    def _write_collections(self, results: List[dict]) -> None:
        js = osp.join(self.out_dir, 'results.json')
        write_coco_json(js, results)
        csv_path = osp.join(self.out_dir, 'detections.csv')
        write_csv(csv_path, [self._shown(r) for r in results], self.classes)
        if self.merge_layers:
            self._write_layer([self._shown(r) for r in results],
                              [r['georef'] for r in results],
                              osp.join(self.out_dir, 'detections'))
        self.log(f'wrote {js} (all detections) and {csv_path} '
                 f'(score >= {self.score_thr})')


def _instance(bboxes, scores, labels) -> InstanceData:
    inst = InstanceData()
    inst.bboxes = torch.as_tensor(bboxes)
    inst.scores = torch.as_tensor(scores)
    inst.labels = torch.as_tensor(labels)
    return inst


def _common_crs(georefs: list, log) -> list:
    """The georefs of a merged layer, which must share one CRS."""
    first = georefs[0].crs_wkt
    if all(g.crs_wkt == first for g in georefs):
        return georefs
    raise ValueError('--merge-layers: the rasters are in different CRSs; '
                     'write one layer per raster (without --merge-layers) '
                     'or reproject the rasters to one CRS first')
