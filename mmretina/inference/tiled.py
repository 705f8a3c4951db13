"""Tiled detection: one loop, windows -> batches -> a backend -> merge.

A *backend* is a callable that takes a list of H x W x 3 uint8 BGR images
(as ``mmcv.imread`` returns them) and returns, per image, an
``InstanceData`` with ``bboxes`` in that image's pixel coordinates,
``scores`` (M,) and ``labels`` (M,): every runtime of
:mod:`mmretina.deploy` (``PytorchBackend``, ``OrtBackend`` on onnxruntime or
OpenVINO) is one. ``bboxes`` are (M, 4) ``(x1, y1, x2, y2)``, or, from an
oriented model (a rotated box coder, ``encode_size == 5``), rotated boxes
(M, 5) ``(cx, cy, w, h, angle)`` (mmrotate's, angle in radians) as a tensor
or mmrotate's ``RotatedBoxes``; the loop turns them into tensors
(:func:`box_tensor`) and every later step (merge, records, writers)
follows their last dimension: there is no second loop.

:func:`detect_windows` is the loop: the windows of a source (a raster read
from disk, :class:`~mmretina.geo.raster.RasterSource`, possibly at another
GSD; an image in memory, :class:`~mmretina.geo.raster.ArraySource`) are
read ``batch_size`` at a time (memory is bounded by the batch, not by the
number of windows) and run through the backend. The same loop runs in
memory (:class:`TiledInferencer`), from disk (:func:`detect_raster`) and on
every rank of a distributed run (:class:`mmretina.inference.run.
InferenceRun`). :meth:`TiledInferencer.merge_windows` shifts the boxes back
by the window offsets, drops boxes cut by an inner window edge when a
neighbouring window sees the object whole, and merges the rest by
class-aware NMS or weighted boxes fusion (:mod:`.merge`; rotated boxes:
the cut-box rule in rotated form and rotated NMS); an image no larger than
one window is one window and its result is the backend's result,
untouched.
"""
import os.path as osp
from typing import Callable, Dict, List, Optional, Sequence, Union

import numpy as np
import torch
from mmengine.structures import InstanceData

from mmretina.geo.raster import (ArraySource, PreviewCanvas, RasterError,
                                 Source, drop_nodata_centres, image_size)
from mmretina.geo.windows import Window, tile_windows
from mmretina.inference.merge import (
    LOCAL_MERGE_MIN, cut_mask, drop_cut_boxes, drop_cut_boxes_local,
    merge_nms, merge_nms_local, shift_boxes, weighted_boxes_fusion)
from mmretina.inference.progress import progress_bar

__all__ = [
    'Backend', 'LazyBackend', 'TiledInferencer', 'load_image',
    'detect_windows', 'detect_raster', 'to_native', 'box_tensor',
    'DEFAULT_MAX_PIXELS'
]


Backend = Callable[[List[np.ndarray]], List[InstanceData]]


# Untiled inference decodes the whole image: 200 megapixels are 600 MB as
# BGR uint8 (plus OpenCV's and the pipeline's copies). Larger images go
# window by window (--tile), which reads rasters from disk.
DEFAULT_MAX_PIXELS = 200_000_000


def load_image(image: Union[str, np.ndarray],
               max_pixels: Optional[int] = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """H x W x 3 uint8 BGR, as mmcv's ``LoadImageFromFile`` decodes it.

    Args:
        image (str or ndarray): a path, or an image (returned as is).
        max_pixels (int, optional): refuse (ValueError) a file whose header
            declares more pixels than this, before decoding it (a tiny PNG
            can declare 30,000 x 30,000 px: 2.7 GB decoded); None: no limit.
    """
    import mmcv
    if isinstance(image, np.ndarray):
        return image
    if not osp.isfile(image):
        raise FileNotFoundError(f'image {image!r} does not exist')
    if max_pixels is not None:
        try:
            size = image_size(image)
        except RasterError as e:  # names the image and why
            raise OSError(f'cannot decode {e}') from None
        if size[0] * size[1] > max_pixels:
            raise ValueError(
                f'image {image!r} declares {size[0] * size[1] / 1e6:.0f} '
                f'megapixels, above the limit of {max_pixels / 1e6:.0f} for '
                'decoding an image whole: run it window by window (--tile '
                '400) or raise the limit (--max-pixels)')
    try:
        img = mmcv.imread(image, flag='color', channel_order='bgr')
    except Exception as e:  # OpenCV's raw assertions
        raise OSError(f'image {image!r} cannot be decoded: '
                      + ' '.join(str(e).split())[:200]) from None
    if img is None:
        raise OSError(f'image {image!r} cannot be decoded')
    return img


def box_tensor(bboxes) -> torch.Tensor:
    """A backend's boxes as a float32 CPU tensor: (M, 4) ``(x1, y1, x2,
    y2)`` or rotated (M, 5) ``(cx, cy, w, h, angle)``, from a tensor, an
    ndarray or an mmdet / mmrotate box type (``HorizontalBoxes``,
    ``RotatedBoxes``)."""
    from mmdet.structures.bbox import BaseBoxes
    if isinstance(bboxes, BaseBoxes):
        bboxes = bboxes.tensor
    return torch.as_tensor(bboxes).float().cpu()


class LazyBackend:
    """A backend built at its first use: a run whose inputs are all
    finished (outputs re-written from its records) never loads the model.

    Args:
        build (callable): () -> a backend (``PytorchBackend``, a runtime of
            :mod:`mmretina.deploy.backends`).
    """

    def __init__(self, build: Callable[[], Backend]) -> None:
        self._build, self._backend = build, None

    @property
    def loaded(self) -> bool:
        return self._backend is not None

    def get(self) -> Backend:
        if self._backend is None:
            self._backend = self._build()
        return self._backend

    def __call__(self, imgs: List[np.ndarray]) -> List[InstanceData]:
        return self.get()(imgs)

    def __getattr__(self, name: str):  # classes, palette, nms_iou, ...
        if name.startswith('_'):
            raise AttributeError(name)
        return getattr(self.get(), name)


class TiledInferencer:
    """Detections over a large image, window by window.

    Args:
        backend (callable): list of BGR images -> list of ``InstanceData``
            (``PytorchBackend``, ``OrtBackend``).
        tile (int): window side in px.
        overlap (float): window overlap, fraction of ``tile`` (< 1) or px.
        batch_size (int): windows per backend call.
        merge (str): ``'nms'`` (class-aware NMS; rotated boxes: rotated
            NMS) or ``'wbf'`` (weighted boxes fusion, axis-aligned boxes).
        iou_thr (float, optional): IoU of the merge; default: the backend's
            NMS IoU (``nms_iou``, 0.5 if it has none) for NMS, 0.55 for WBF.
        border (float): a box within this many px of an inner window edge
            is cut.
        min_cover (float): a cut box is dropped when a whole box of the
            same class from another window covers this fraction of it.
        max_dets (int, optional): keep at most this many detections (by
            score) after merging; all by default.
        progress (bool): show a progress bar over windows.
    """

    def __init__(self,
                 backend: Backend,
                 tile: int = 400,
                 overlap: float = 0.25,
                 batch_size: int = 4,
                 merge: str = 'nms',
                 iou_thr: Optional[float] = None,
                 border: float = 2.0,
                 min_cover: float = 0.5,
                 max_dets: Optional[int] = None,
                 progress: bool = True) -> None:
        if merge not in ('nms', 'wbf'):
            raise ValueError(f"merge must be 'nms' or 'wbf', got {merge!r}")
        if batch_size < 1:
            raise ValueError(f'batch_size must be >= 1, got {batch_size}')
        if border < 0:
            raise ValueError(f'border must be >= 0 px, got {border}')
        # validates tile and overlap
        tile_windows(tile, tile, tile, overlap)
        self.backend = backend
        self.tile = int(tile)
        self.overlap = overlap
        self.batch_size = int(batch_size)
        self.merge = merge
        self._iou_thr = None if iou_thr is None else float(iou_thr)
        self.border = float(border)
        self.min_cover = float(min_cover)
        self.max_dets = max_dets
        self.progress = progress

    def __call__(self, image: Union[str, np.ndarray]) -> InstanceData:
        """Detections of one image in memory (or decoded from a path by
        :func:`load_image`), through the same loop as a raster read from
        disk (:func:`~mmretina.inference.tiled.detect_raster`).

        Returns:
            InstanceData: ``bboxes`` (K, 4) float32 in image pixels (or
            (K, 5) rotated, from an oriented model), ``scores`` (K,),
            ``labels`` (K,) by descending score; its
            metainfo holds ``ori_shape`` (H, W), ``windows`` and, for a
            path, ``img_path``.
        """
        path = image if isinstance(image, str) else None
        return detect_raster(self, ArraySource(load_image(image), path))

    @property
    def iou_thr(self) -> float:
        """The merge's IoU: as given, else the backend's NMS IoU
        (``nms_iou``, 0.5 if it has none) for NMS, 0.55 for WBF (read when
        first merging: a :class:`LazyBackend` is not loaded for it)."""
        if self._iou_thr is None:
            self._iou_thr = float(getattr(self.backend, 'nms_iou', 0.5)
                                  if self.merge == 'nms' else 0.55)
        return self._iou_thr

    def windows(self, width: int, height: int) -> List[Window]:
        """The windows over a ``width`` x ``height`` px image."""
        return tile_windows(width, height, self.tile, self.overlap)

    def merge_windows(self, per_window: Dict[int, InstanceData],
              windows: List[Window], width: int, height: int,
              meta: Optional[dict] = None) -> InstanceData:
        """Detections of the windows of one image merged into the image's.

        Args:
            per_window (dict[int, InstanceData]): window index -> its
                detections (``bboxes`` (M, 4), or rotated (M, 5), in the
                **window's** pixels, ``scores`` (M,), ``labels`` (M,));
                windows without an entry (left out: entirely nodata) have
                no detection.
            windows (list[Window]): all windows of the image.
            width (int), height (int): image size in px.
            meta (dict, optional): added to the result's metainfo.

        Returns:
            InstanceData: ``bboxes`` (K, 4) (rotated: (K, 5)) float32 in
            the image's pixels, ``scores`` (K,), ``labels`` (K,) by
            descending score; metainfo ``ori_shape`` (H, W), ``windows``
            and ``meta``. One window: the backend's result, untouched.
        """
        meta = dict(meta or {}, ori_shape=(height, width), windows=windows)
        if len(windows) == 1 and 0 in per_window:
            result = per_window[0].clone()
            result.set_metainfo(meta)
            return result
        boxes, scores, labels, tile_ids, cut = [], [], [], [], []
        for t in sorted(per_window):
            inst, win = per_window[t], windows[t]
            b = shift_boxes(box_tensor(inst.bboxes), win.x0, win.y0)
            boxes.append(b)
            scores.append(torch.as_tensor(inst.scores).float().cpu())
            labels.append(torch.as_tensor(inst.labels).long().cpu())
            tile_ids.append(torch.full((len(b), ), t, dtype=torch.long))
            cut.append(cut_mask(b, win, width, height, self.border))
        if not boxes:  # every window left out
            boxes, scores = [torch.zeros((0, 4))], [torch.zeros(0)]
            labels, tile_ids = [torch.zeros(0, dtype=torch.long)], \
                [torch.zeros(0, dtype=torch.long)]
            cut = [torch.zeros(0, dtype=torch.bool)]
        dims = {b.size(-1) for b in boxes if len(b)}
        if len(dims) > 1:
            raise ValueError('the backend returned axis-aligned (M, 4) boxes '
                             'for some windows and rotated (M, 5) boxes for '
                             'others')
        if dims:  # a window without detections may say (0, 4)
            boxes = [b if len(b) else b.new_zeros((0, *dims)) for b in boxes]
        boxes, scores, labels = (torch.cat(boxes), torch.cat(scores),
                                 torch.cat(labels))
        tile_ids, cut = torch.cat(tile_ids), torch.cat(cut)
        # many boxes (a large raster): each box compared only with those of
        # the windows that overlap its own (tiling.LOCAL_MERGE_MIN); the
        # cut-box rule only when a cover > 0 is asked (0 would match boxes
        # anywhere)
        local = len(boxes) > LOCAL_MERGE_MIN
        if local and self.min_cover > 0:
            keep = drop_cut_boxes_local(boxes, labels, tile_ids, cut,
                                        windows, self.min_cover)
        else:
            keep = drop_cut_boxes(boxes, labels, tile_ids, cut,
                                  self.min_cover)
        boxes, scores, labels = boxes[keep], scores[keep], labels[keep]
        tile_ids = tile_ids[keep]
        if self.merge == 'nms' and local:
            idx = merge_nms_local(boxes, scores, labels, tile_ids, windows,
                                  self.iou_thr)
            boxes, scores, labels = boxes[idx], scores[idx], labels[idx]
        elif self.merge == 'nms':
            idx = merge_nms(boxes, scores, labels, self.iou_thr)
            boxes, scores, labels = boxes[idx], scores[idx], labels[idx]
        else:
            boxes, scores, labels = weighted_boxes_fusion(
                boxes, scores, labels, self.iou_thr, windows)
        if self.max_dets is not None:
            boxes, scores, labels = (boxes[:self.max_dets],
                                     scores[:self.max_dets],
                                     labels[:self.max_dets])
        result = InstanceData(metainfo=meta)
        result.bboxes = boxes
        result.scores = scores
        result.labels = labels
        return result


def detect_windows(backend, source: Source, windows: Sequence[Window],
                   ids: Optional[Sequence[int]] = None, batch_size: int = 4,
                   progress=None,
                   preview: Optional[PreviewCanvas] = None,
                   on_batch: Optional[Callable[[List[int], Dict[
                       int, 'InstanceData']], None]] = None
                   ) -> Dict[int, 'InstanceData']:
    """The tiled-detection loop: windows of ``source`` -> batches ->
    ``backend``. In memory, from disk and on every rank of a distributed
    run, this is the one loop; :meth:`TiledInferencer.merge_windows`
    merges its result.

    Args:
        backend (callable): list of h x w x 3 uint8 BGR -> list of
            ``InstanceData`` (``bboxes`` (M, 4) or rotated (M, 5) in the
            window's pixels, a tensor or an mmdet / mmrotate box type,
            ``scores`` (M,), ``labels`` (M,)).
        source (RasterSource | ArraySource): the image.
        windows (list[Window]): all windows of the image (model px).
        ids (list[int], optional): the windows to run (default: all).
        batch_size (int): windows per backend call.
        progress: an object with ``update(n)`` (:func:`progress_bar`), or
            None.
        preview (PreviewCanvas, optional): filled with the windows read.
        on_batch (callable, optional): called after each batch with the
            window ids it accounts for (nodata windows included) and their
            detections (what a run's record keeps, batch by batch).

    Returns:
        dict[int, InstanceData]: per window run and not entirely nodata,
        its detections in the **window's** pixels (``bboxes`` a float32
        tensor, :func:`box_tensor`), those centred on nodata dropped.
        Windows left out (nodata) have no entry.
    """
    ids = list(range(len(windows))) if ids is None else list(ids)
    out = {}
    for batch in source.batches(windows, ids, batch_size):
        results = backend(batch.imgs) if batch.imgs else []
        if preview is not None:
            for i, img in zip(batch.ids, batch.imgs):
                preview.paste(source.native_bounds(windows[i]), img)
        done = {}
        for i, inst, valid in zip(batch.ids, results, batch.valid):
            inst.bboxes = box_tensor(inst.bboxes)
            if valid is not None and len(inst):
                keep = drop_nodata_centres(inst.bboxes.numpy(), valid)
                inst = inst[torch.from_numpy(keep)]
            done[i] = inst
        out.update(done)
        if on_batch is not None:
            on_batch(batch.covered, done)
        if progress is not None:  # skipped windows count as done
            progress.update(len(batch.covered))
    return out


def to_native(inst: 'InstanceData', source: Source) -> 'InstanceData':
    """A merged result in the model px grid of ``source`` -> its raster
    px (boxes scaled by ``fx, fy``, :meth:`~mmretina.geo.raster.
    RasterSource.to_native`; ``ori_shape`` the raster's)."""
    if source.resampled:
        inst.bboxes = source.to_native(inst.bboxes)
    inst.set_metainfo(dict(ori_shape=(source.native_height,
                                      source.native_width),
                           gsd=source.gsd))
    return inst


def detect_raster(inferencer, source: Source,
                  progress: bool = True,
                  preview: Optional[PreviewCanvas] = None) -> 'InstanceData':
    """Detections over a whole raster (or image), window by window,
    merged across windows (cut-box rule, NMS / WBF) and mapped back to the
    raster's pixels.

    Args:
        inferencer (TiledInferencer): backend, tile, overlap, batch size
            and merge settings.
        source (RasterSource | ArraySource): the raster.
        progress (bool): a progress bar over windows on stderr.
        preview (PreviewCanvas, optional): filled with the windows read.

    Returns:
        InstanceData: ``bboxes`` (K, 4) (an oriented model: rotated
        (K, 5)) float32 in the raster's pixels, ``scores`` (K,),
        ``labels`` (K,) by descending score; metainfo
        ``ori_shape`` (H, W) of the raster, ``windows`` (model px),
        ``img_path``, ``gsd`` (the GSD read at, None: the raster's own),
        ``skipped`` (the number of windows left out as entirely nodata).
    """
    windows = inferencer.windows(source.width, source.height)
    bar = progress_bar(
        len(windows),
        desc=f'{osp.basename(source.path or "image")} '
        f'{source.width}x{source.height} px',
        enabled=progress and inferencer.progress)
    try:
        per_window = detect_windows(inferencer.backend, source, windows,
                                    batch_size=inferencer.batch_size,
                                    progress=bar, preview=preview)
    finally:
        bar.close()
    inst = inferencer.merge_windows(
        per_window, windows, source.width, source.height,
        dict(img_path=source.path, skipped=len(windows) - len(per_window)))
    return to_native(inst, source)
