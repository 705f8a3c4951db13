"""Detections over a list of images / rasters, written to disk: the engine
of ``mmretina predict`` (``tools/infer.py``) and ``tools/dist_infer.sh``.

Every input goes through the one tiled-detection loop
(:func:`~mmretina.inference.tiled.detect_windows`): read window by window by
:class:`~mmretina.geo.raster.RasterSource` (at the model's ground sample
distance when the raster has a CRS and ``gsd`` is set), or in one window
when ``tile`` covers it, merged by ``TiledInferencer.merge_windows`` and
mapped back to the raster's pixels.

What is written (PNG, GIS layers, COCO results, CSV) and the lines logged
about it are :class:`~mmretina.inference.outputs.RunOutputs`'s. An oriented
model (rotated boxes, (M, 5) ``(cx, cy, w, h, angle)``) goes through the
same steps: rotated NMS and the rotated cut-box rule across windows, then
the same writers.

The run's record (``out_dir/.mmretina``), keyed by a fingerprint of what
determines the detections (model files, windows, merge, bands, scale, GSD;
not the output options):

* per input still running, ``<name>.<fingerprint>.parts/``: one file per
  batch of windows (the windows it accounts for and their detections). A
  killed run started again runs only the windows no part holds.
* per finished input, ``<name>.npz`` (its merged detections, classes and
  georeferencing) and ``<name>.preview.png`` (the image the PNG is drawn
  on). A rerun with the same fingerprint runs no model: it re-writes the
  outputs from these (another ``--score-thr``, ``--format``, ...).

Distributed (``world_size`` > 1, ranks started by torchrun, a gloo or NCCL
process group initialised): the windows still to do of all inputs, in input
order, are cut into ``world_size`` contiguous shares (a huge raster's
windows are spread over the ranks like a folder's rasters); each rank
records its batches in the same parts folders; after a barrier, rank 0
merges each input's windows and writes the outputs.
"""
import os
import os.path as osp
from typing import Callable, Dict, List, Optional, Sequence, Tuple

from mmengine.structures import InstanceData

from mmretina.geo.formats import IMAGE_EXTS
from mmretina.geo.raster import (ArraySource, Georef, PreviewCanvas,
                                 RasterSource, read_georef)
from mmretina.inference.outputs import (PREVIEW_SIDE, RunOutputs,
                                        check_writable)
from mmretina.inference.progress import progress_bar
from mmretina.inference.records import RunRecord, as_arrays, fingerprint
from mmretina.inference.tiled import (DEFAULT_MAX_PIXELS, TiledInferencer,
                                      detect_windows, load_image, to_native)

__all__ = ['list_inputs', 'InferenceRun']


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


class InferenceRun:
    """Detections over inputs, written to ``out_dir`` (or one PNG) by
    :attr:`outputs` (:class:`~mmretina.inference.outputs.RunOutputs`).

    Args:
        inferencer (TiledInferencer): backend (a
            :class:`~mmretina.inference.tiled.LazyBackend` is loaded only when
            a window has to run) and window / merge settings; a ``tile`` of
            ``1 << 30`` reads each input as one window.
        classes (list[str], optional), palette (list[tuple], optional):
            class names and RGB colours; default: the backend's (or, when
            no window runs, the records').
        out_dir (str, optional): output folder; out (str, optional): one
            PNG (one input, no other output).
        score_thr (float): drawn, CSV and GIS layer detections.
        bands, scale: :class:`~mmretina.geo.raster.RasterSource`'s.
        gsd (float, optional): read rasters with a CRS at this GSD (m);
            None: at their own.
        fmt (str, optional): GIS format (:data:`VECTOR_FORMATS`); None:
            GeoPackage for georeferenced inputs, none for the others.
        keep_crs (bool): GeoJSON in the raster's CRS, not RFC 7946.
        merge_layers (bool): one layer for all inputs.
        max_pixels (int, optional): an input read as one window may have
            at most this many pixels.
        settings (dict): what else determines the detections (model files,
            options), for the records.
        rank (int), world_size (int): distributed share.
        log (callable): prints a line (rank 0 only prints).
        progress (bool): progress lines / bar on stderr (rank 0).
    """

    def __init__(self,
                 inferencer: TiledInferencer,
                 classes: Optional[Sequence[str]] = None,
                 palette=None,
                 out_dir: Optional[str] = None,
                 out: Optional[str] = None,
                 score_thr: float = 0.3,
                 bands=None,
                 scale=None,
                 gsd: Optional[float] = None,
                 fmt: Optional[str] = None,
                 keep_crs: bool = False,
                 merge_layers: bool = False,
                 max_pixels: Optional[int] = DEFAULT_MAX_PIXELS,
                 settings: Optional[dict] = None,
                 rank: int = 0,
                 world_size: int = 1,
                 log: Callable[[str], None] = print,
                 progress: bool = True) -> None:
        self.inferencer = inferencer
        self.outputs = RunOutputs(out_dir, out, score_thr, fmt, keep_crs,
                                  merge_layers,
                                  None if self.whole else inferencer.tile,
                                  log=self.log)
        if world_size > 1 and not out_dir:
            raise ValueError('a distributed run needs --out-dir')
        self._classes = tuple(classes) if classes is not None else None
        self._palette = palette
        self.out_dir, self.out = out_dir, out
        self.bands, self.scale, self.gsd = bands, scale, gsd
        self.max_pixels = max_pixels
        inf = inferencer
        self.fingerprint = fingerprint(dict(
            settings or {}, tile=inf.tile, overlap=inf.overlap,
            merge=inf.merge, merge_iou=inf._iou_thr, border=inf.border,
            min_cover=inf.min_cover, max_dets=inf.max_dets, bands=bands,
            scale=scale, gsd=gsd))
        self.rank, self.world_size = rank, world_size
        self._log = log
        self.progress = progress and rank == 0
        self.state_dir = osp.join(out_dir, '.mmretina') if out_dir else None
        self.record = (RunRecord(self.state_dir, self.fingerprint, rank)
                       if out_dir else None)

    def log(self, line: str) -> None:
        if self.rank == 0:
            self._log(line)

    @property
    def whole(self) -> bool:
        """Each input read as one window."""
        return self.inferencer.tile >= 1 << 30

    # ------------------------------------------------------------ inputs
    def _source(self, path: str):
        try:
            source = RasterSource(path, self.bands, self.scale, self.gsd)
        except ImportError:
            # no rasterio (the geo extra): plain images only, decoded whole
            if self.bands is not None or self.scale is not None:
                raise
            source = ArraySource(load_image(path, self.max_pixels), path)
        if self.whole and self.max_pixels is not None and \
                source.width * source.height > self.max_pixels:
            raise ValueError(
                f'{path}: {source.width}x{source.height} px read as one '
                f'window is above the limit of {self.max_pixels / 1e6:.0f} '
                'megapixels: read it window by window (--tile 400, or '
                '--tile auto) or raise --max-pixels')
        return source

    @staticmethod
    def _header_georef(path: str) -> Optional[Georef]:
        """The georeferencing in ``path``'s header (no pixel read); None
        for a plain image, or without rasterio (then every input is one)."""
        try:
            return read_georef(path)
        except ImportError:
            return None

    def _note_source(self, source) -> None:
        tile = self.inferencer.tile
        if not self.whole and (tile > source.width or tile > source.height):
            self.log(f'{source.path}: the {tile} px window is larger than '
                     f'the raster ({source.width}x{source.height} px): it '
                     'is read as one window (or a row / column) of the '
                     'raster\'s size')
        if source.resampled:
            self.log(source.resampling_note() +
                     '; detections mapped back to the raster\'s pixels')
        elif self.gsd is not None and getattr(source, 'native_gsd',
                                              None) is None:
            self.log(f'{source.path}: no CRS, so no ground sample distance: '
                     'read at its own pixel size')

    # ------------------------------------------------------------- run
    def run(self, inputs: Sequence[str]) -> List[dict]:
        """Detect in every input and write the outputs.

        Returns:
            list[dict]: per input (rank 0; [] on the other ranks),
            ``image_path``, ``bboxes`` (M, 4), or rotated (M, 5), in its
            pixels, ``scores``, ``labels`` (all detections) and
            ``georef``.
        """
        if self.out_dir:
            check_writable(self.out_dir)
        # from the headers, before any model is built or window read
        self.outputs.check_inputs(inputs, self._header_georef)
        done, records = {}, {}
        if self.out_dir:
            for p in inputs:
                rec = self.record.load(p)
                if rec is not None:
                    records[p] = rec
            if records:
                self.log(f'{len(records)} input(s) finished before with '
                         f'these settings (records in {self.state_dir}): '
                         'outputs re-written from the records, no model run')
        todo = [p for p in inputs if p not in records]
        self._barrier()  # every rank has read the records
        for p in inputs:
            if p in records:
                done[p] = self._rewrite(records[p])
        if todo:
            self._run_windows(todo, done)
        self._barrier()
        if self.rank != 0:
            return []
        results = [done[p] for p in inputs]
        if self.out_dir:
            self.outputs.write_collections(results, self.classes)
        return results

    def _run_windows(self, todo: List[str], done: Dict[str, dict]) -> None:
        """Windows of ``todo`` not recorded yet, shared across ranks, run
        through the one loop; rank 0 merges each input."""
        sources, windows, units = {}, {}, []
        resumed = 0
        for k, path in enumerate(todo):
            sources[k] = self._source(path)
            if self.rank == 0:
                self._note_source(sources[k])
            windows[k] = self.inferencer.windows(sources[k].width,
                                                 sources[k].height)
            covered = self.record.parts(path)[0] if self.record else set()
            resumed += len(covered)
            units += [(k, w) for w in range(len(windows[k]))
                      if w not in covered]
        if resumed:
            self.log(f'resuming: {resumed} window(s) recorded before, '
                     f'{len(units)} to run')
        n, r, ws = len(units), self.rank, self.world_size
        mine = units[r * n // ws:(r + 1) * n // ws]
        fresh = ws == 1 and not resumed
        canvases, merged = {}, {}
        for pos, k in enumerate(sorted({u[0] for u in mine})):
            ids = [w for kk, w in mine if kk == k]
            src = sources[k]
            if fresh and (self.out_dir or self.out):
                # the preview is filled from the windows as they are read
                canvases[k] = PreviewCanvas(src.native_width,
                                            src.native_height, PREVIEW_SIDE)
            desc = (f'{osp.basename(todo[k])} {pos + 1}/{len(todo)}'
                    + (f' (rank {r} of {ws})' if ws > 1 else ''))
            bar = progress_bar(len(ids), desc, enabled=self.progress)
            try:
                per_window = detect_windows(
                    self.inferencer.backend, src, windows[k], ids,
                    self.inferencer.batch_size, progress=bar,
                    preview=canvases.get(k),
                    on_batch=(self.record.part_writer(todo[k])
                              if self.record else None))
            finally:
                bar.close()
            merged[k] = per_window  # without a record: merged from memory
        self._barrier()
        if self.rank != 0:
            return
        for k, path in enumerate(todo):
            src = sources[k]
            per_window = (self.record.parts(path)[1] if self.record
                          else merged.get(k, {}))
            inst = self.inferencer.merge_windows(
                per_window, windows[k], src.width, src.height,
                dict(img_path=path,
                     skipped=len(windows[k]) - len(per_window)))
            inst = to_native(inst, src)
            if k in canvases:
                preview, f = canvases[k].img, canvases[k].factor
            else:
                preview, f = src.overview(PREVIEW_SIDE)
            done[path] = self._finish(path, inst, src.georef, preview, f)
            if self.record:
                self.record.clear_parts(path)

    def _barrier(self) -> None:
        if self.world_size > 1:
            import torch.distributed as dist
            dist.barrier()

    # ------------------------------------------------ classes, records
    @property
    def classes(self) -> Tuple[str, ...]:
        if self._classes is None:
            self._classes = tuple(getattr(self.inferencer.backend,
                                          'classes', ()))
        return self._classes

    @property
    def palette(self):
        if self._palette is None:
            self._palette = getattr(self.inferencer.backend, 'palette', None)
        return self._palette

    def _rewrite(self, rec: dict) -> dict:
        """Outputs of a finished input from its record (rank 0)."""
        meta = rec.pop('meta')
        if self._classes is None and 'classes' in meta:
            self._classes = tuple(meta['classes'])
            if self._palette is None and 'palette' in meta:
                # [] for a model without one: known, so not loaded for it
                self._palette = [tuple(c) for c in meta['palette'] or ()]
        if self.rank != 0:
            return rec
        import cv2
        preview = cv2.imread(self.record.preview_path(rec['image_path']),
                             cv2.IMREAD_COLOR)
        self.outputs.write_input(rec, preview, meta.get('factor', 1.0), meta,
                                 self.classes, self.palette)
        return rec

    def _finish(self, path: str, inst: InstanceData, georef, preview,
                factor: float) -> dict:
        """Per-input outputs (PNG, GIS layer) and the finished record."""
        bboxes, scores, labels = as_arrays(inst)
        res = dict(image_path=path, bboxes=bboxes, scores=scores,
                   labels=labels, georef=georef)
        windows = inst.metainfo.get('windows', [None])
        meta = dict(classes=list(self.classes),
                    palette=[list(c) for c in self.palette]
                    if self.palette else None,
                    factor=float(factor), windows=len(windows),
                    skipped=int(inst.metainfo.get('skipped', 0)),
                    gsd=inst.metainfo.get('gsd'))
        self.outputs.write_input(res, preview, factor, meta, self.classes,
                                 self.palette)
        if self.record:
            self.record.save(res, meta, preview)
        return res
