"""DOTA's large images as patches, and patch detections merged back.

The rules are mmrotate 1.x's ``tools/data/dota/split/img_split.py``
(open-mmlab/mmrotate, branch 1.x; not in the mmrotate wheel) with the
values of its ``split_configs/ss_*.json`` (what mmrotate's DOTA results
were trained and tested on), so that patches cut here are the patches
mmrotate's configs expect:

* **Windows** (:func:`sliding_windows`): for each window side ``size``
  (``int(size / rate)`` for each rate: the window grows, the image is not
  resized) and ``gap``, starts ``size - gap`` apart along each axis, the
  last one moved back to end at the image's edge; an axis no longer than
  ``size`` has one window at 0, which then reaches past the image. Windows
  with no more than ``img_rate_thr`` (0.6) of their area on the image are
  dropped, unless none has more: then those within 0.01 of the largest
  share are kept. The order is column by column (x, then y).
* **Objects** (:func:`window_objects`): an object goes to a window when the
  intersection of its quadrilateral with the window, over its own area
  (IoF, shapely), is at least ``iof_thr`` (0.7). Its four corners are
  written as they are (not clipped), moved to the patch's pixels; an
  object the window cuts (IoF < 1) gets the difficult flag 2, the others
  keep theirs.
* **Patches**: the window's pixels of the image as OpenCV decodes it (BGR,
  8 bit); a window reaching past the image is padded at the right and
  bottom with ``padding_value`` (``104, 116, 124``, BGR; ``padding=False``:
  the patch is cut at the edge). Names are ``{image}__{size}__{x}___{y}``
  (``size``: the window's side in pixels of the image; ``x``, ``y``: its
  top-left corner), written as ``images/{name}.png`` and
  ``annfiles/{name}.txt`` (also for a window without objects), the layout
  mmrotate's ``DOTADataset`` reads.

Two differences, both where mmrotate's script fails or rounds: the IoF
divides by the object's float64 area (the script rounds it to float32, so
an object entirely inside a window can come out at IoF 0.99999997 and be
flagged cut; here an object is cut when a corner lies outside the window),
and a self-crossing quadrilateral (corners out of order) is measured as
GEOS's ``make_valid`` of it (shapely stops on it in the script).

Merging (:func:`merge_patch_results`) is the rule of mmrotate's
``DOTAMetric.merge_results``: the offset read from each patch's name is
added to its boxes' centres, then per class and whole image,
``mmcv.ops.nms_rotated`` at IoU 0.1 (the metric's ``iou_thr``). The metric
itself writes the task-1 files with scores and corners rounded to 0.01;
this function returns the merged boxes unrounded, for evaluation or
:func:`~.dota.write_task1`.
"""
import os
import os.path as osp
import re
from collections import Counter, defaultdict
from functools import partial
from itertools import product
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from mmretina.geo.formats import has_image_ext
from mmretina.geo.raster import RasterError, image_size
from mmretina.geo.windows import tile_starts
from .dota import DotaLabels, read_dota_labels, write_dota_labels
from .records import ConversionError

__all__ = [
    'SIZE', 'GAP', 'IMG_RATE_THR', 'IOF_THR', 'PADDING_VALUE', 'MERGE_IOU',
    'MAX_PIXELS', 'TRUNCATED', 'patch_name', 'parse_patch_name',
    'sliding_windows', 'polygon_iof', 'window_objects', 'read_image_size',
    'split_image',
    'split_dota', 'load_split_config', 'merge_patch_results'
]

# split_configs/ss_trainval.json and ss_test.json of mmrotate 1.x
SIZE = 1024
GAP = 200
IMG_RATE_THR = 0.6
IOF_THR = 0.7
PADDING_VALUE = (104, 116, 124)  # BGR: about ImageNet's mean
# DOTAMetric(iou_thr=0.1): the NMS that merges patches
MERGE_IOU = 0.1
# OpenCV decodes at most 2**30 pixels (CV_IO_MAX_IMAGE_PIXELS): 3.2 GB as
# BGR; DOTA-v2.0's largest image (29,200 x 27,620) is 0.81e9
MAX_PIXELS = 2**30
TRUNCATED = 2  # the difficult flag of an object cut by a patch edge
SAVE_EXTS = ('.png', '.jpg', '.bmp', '.tif')
_PATCH_RE = re.compile(r'^(?P<image>.+?)__(?P<size>\d+(?:\.\d+)?)__'
                       r'(?P<x>\d+)___(?P<y>\d+)$')


def patch_name(image_id: str, size: int, x: int, y: int) -> str:
    """``{image_id}__{size}__{x}___{y}``: a window of side ``size`` px at
    ``(x, y)`` of the image (mmrotate's patch names)."""
    return f'{image_id}__{size}__{x}___{y}'


def parse_patch_name(name: str) -> Tuple[str, int, int]:
    """``'P0001__1024__824___0'`` -> ``('P0001', 824, 0)``: the image and
    the patch's top-left corner in its pixels (a path or an extension is
    dropped; DOTA devkit's names with a rate, ``P0001__1.0__824___0``,
    read too)."""
    stem = osp.basename(str(name))
    m = _PATCH_RE.match(stem) or _PATCH_RE.match(osp.splitext(stem)[0])
    if m is None:
        raise ValueError(
            f'{name!r} is not a patch name {{image}}__{{size}}__{{x}}___{{y}} '
            '(e.g. P0001__1024__824___0): merge the detections of patches '
            'cut by mmretina dota split or mmrotate\'s img_split.py')
    return m.group('image'), int(m.group('x')), int(m.group('y'))


def sliding_windows(width: int,
                    height: int,
                    sizes: Sequence[int] = (SIZE, ),
                    gaps: Sequence[int] = (GAP, ),
                    img_rate_thr: float = IMG_RATE_THR) -> np.ndarray:
    """The patches' windows over a ``width`` x ``height`` image (the
    module's rules; mmrotate's ``get_sliding_window``).

    Returns:
        ndarray: K x 4 int64 ``(x0, y0, x1, y1)`` in pixels of the image;
        ``x1 - x0`` is the window's side, also where it reaches past the
        image.
    """
    if len(sizes) != len(gaps):
        raise ValueError(f'{len(sizes)} sizes and {len(gaps)} gaps: give '
                         'one gap per size')
    windows = []
    for size, gap in zip(sizes, gaps):
        if not 0 <= gap < size:
            raise ValueError(f'window side {size} px and gap {gap} px: the '
                             'gap must be >= 0 and smaller than the side')
        # tile_starts is the script's rule: ceil((W - size) / step + 1)
        # starts step apart, the last moved back to W - size
        xs = tile_starts(width, size, size - gap)
        ys = tile_starts(height, size, size - gap)
        start = np.array(list(product(xs, ys)), np.int64).reshape(-1, 2)
        windows.append(np.concatenate([start, start + size], axis=1))
    windows = np.concatenate(windows, axis=0)
    on_image = windows.copy()
    on_image[:, 0::2] = np.clip(on_image[:, 0::2], 0, width)
    on_image[:, 1::2] = np.clip(on_image[:, 1::2], 0, height)
    rates = ((on_image[:, 2] - on_image[:, 0]) *
             (on_image[:, 3] - on_image[:, 1]) /
             ((windows[:, 2] - windows[:, 0]) *
              (windows[:, 3] - windows[:, 1])))
    if not (rates > img_rate_thr).any():
        rates[abs(rates - rates.max()) < 0.01] = 1
    return windows[rates > img_rate_thr]


def polygon_iof(polys: np.ndarray,
                windows: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """Intersection over each object's own area, object by window.

    Args:
        polys (ndarray): N x 8 corners in pixels of the image.
        windows (ndarray): K x 4 ``(x0, y0, x1, y1)``.

    Returns:
        tuple: ``(iof, inside)``, both N x K: float64 IoF (0 where the
        bounding boxes do not overlap, 1 for an object of positive area
        entirely inside); bool, all four corners inside the window.
    """
    import shapely
    rings = np.asarray(polys, np.float64).reshape(-1, 4, 2)
    win = np.asarray(windows, np.float64).reshape(-1, 4)
    n, k = len(rings), len(win)
    if n == 0 or k == 0:
        return np.zeros((n, k)), np.zeros((n, k), bool)
    geoms = shapely.polygons(rings)
    bad = ~shapely.is_valid(geoms)
    if bad.any():  # corners out of order: a bow-tie
        geoms[bad] = shapely.make_valid(geoms[bad])
    areas = shapely.area(geoms)
    lo, hi = rings.min(axis=1), rings.max(axis=1)  # N x 2
    x0, y0, x1, y1 = (win[None, :, i] for i in range(4))
    overlap = ((np.minimum(hi[:, None, 0], x1) > np.maximum(lo[:, None, 0],
                                                           x0))
               & (np.minimum(hi[:, None, 1], y1) > np.maximum(lo[:, None, 1],
                                                             y0)))
    inside = ((lo[:, None, 0] >= x0) & (hi[:, None, 0] <= x1)
              & (lo[:, None, 1] >= y0) & (hi[:, None, 1] <= y1))
    iof = np.zeros((n, k))
    # mmrotate's script: the area clipped at 1e-6 (a degenerate object's
    # IoF is 0); overlaps only where the bounding boxes meet
    pairs = overlap & ~(inside & (areas[:, None] > 1e-6))
    i, j = np.nonzero(pairs)
    if len(i):
        boxes = shapely.box(win[j, 0], win[j, 1], win[j, 2], win[j, 3])
        inter = shapely.area(shapely.intersection(geoms[i], boxes))
        iof[i, j] = inter / np.maximum(areas[i], 1e-6)
    iof[inside & (areas[:, None] > 1e-6)] = 1.0
    return iof, inside


def window_objects(polys: np.ndarray,
                   windows: np.ndarray,
                   iof_thr: float = IOF_THR
                   ) -> List[Tuple[np.ndarray, np.ndarray]]:
    """The objects each window keeps (the module's rule).

    Args:
        polys (ndarray): N x 8 corners in pixels of the image.
        windows (ndarray): K x 4 ``(x0, y0, x1, y1)``.
        iof_thr (float): the smallest IoF kept.

    Returns:
        list[tuple]: per window, ``(index, cut)``: the (M,) indices of the
        objects kept and (M,) bool, True where the window cuts the object.
    """
    if not 0 <= iof_thr <= 1:
        raise ValueError(f'iof_thr {iof_thr}: give a fraction in [0, 1]')
    iof, inside = polygon_iof(polys, windows)
    out = []
    for j in range(iof.shape[1]):
        idx = np.nonzero(iof[:, j] >= iof_thr)[0]
        out.append((idx, ~inside[idx, j]))
    return out


def read_image_size(path: str,
                    max_pixels: Optional[int] = MAX_PIXELS
                    ) -> Tuple[int, int]:
    """(width, height) from an image's header, without decoding it.

    Raises:
        ConversionError: not an image, or more than ``max_pixels`` pixels
            (a small file can declare 100,000 x 100,000 px).
    """
    try:
        size = image_size(path)
    except RasterError as e:
        raise ConversionError(str(e)) from None
    if max_pixels is not None and size[0] * size[1] > max_pixels:
        raise ConversionError(
            f'{path}: {size[0]} x {size[1]} px ({size[0] * size[1] / 1e6:.0f}'
            f' megapixels, {3 * size[0] * size[1] / 2**30:.1f} GiB decoded), '
            f'above the limit of {max_pixels / 1e6:.0f} megapixels; raise '
            'max_pixels (--max-pixels) if the machine has the memory')
    return size


def _read_bgr(path: str, max_pixels: Optional[int]) -> np.ndarray:
    """The image as mmrotate's script reads it (``cv2.imread``: H x W x 3
    uint8 BGR), its size checked from the header first."""
    import cv2
    width, height = read_image_size(path, max_pixels)
    img = cv2.imread(path)
    if img is None:
        raise ConversionError(f'{path}: OpenCV cannot decode this image')
    if img.shape[:2] != (height, width):
        raise ConversionError(
            f'{path}: the header says {width} x {height} px, OpenCV decodes '
            f'{img.shape[1]} x {img.shape[0]}; the file may be damaged')
    return img


def split_image(img_path: str,
                out_dir: str,
                labels: Optional[DotaLabels] = None,
                image_id: Optional[str] = None,
                sizes: Sequence[int] = (SIZE, ),
                gaps: Sequence[int] = (GAP, ),
                img_rate_thr: float = IMG_RATE_THR,
                iof_thr: float = IOF_THR,
                padding: bool = True,
                padding_value: Union[int,
                                     Sequence[int]] = PADDING_VALUE,
                ext: str = '.png',
                max_pixels: Optional[int] = MAX_PIXELS) -> List[dict]:
    """Cut one image (and its labels) into patches (the module's rules).

    Args:
        img_path (str): the image.
        out_dir (str): writes ``images/{patch}{ext}`` and
            ``annfiles/{patch}.txt`` under it (the folders must exist).
        labels (DotaLabels, optional): its objects, in pixels of the image;
            None: no objects (a test image).
        image_id (str, optional): the image's name in the patch names;
            default the file's name without extension.
        sizes, gaps (list[int]): window sides and their gaps, in px.
        img_rate_thr, iof_thr (float): see the module docstring.
        padding (bool): pad windows that reach past the image to their
            side; padding_value (int | list[int]): one value or one per
            channel, BGR.
        ext (str): the patches' image format.
        max_pixels (int, optional): refuse larger images (see
            :func:`read_image_size`).

    Returns:
        list[dict]: per patch: ``id`` (its name), ``ori_id``, ``x_start``,
        ``y_start``, ``width``, ``height``, ``filename``, ``objects`` and
        ``cut`` (how many objects it holds, and how many of them it cuts).
    """
    import cv2
    if ext not in SAVE_EXTS:
        raise ValueError(f'ext {ext!r}: give one of {SAVE_EXTS}')
    img = _read_bgr(img_path, max_pixels)
    height, width = img.shape[:2]
    if image_id is None:
        image_id = osp.splitext(osp.basename(img_path))[0]
    if labels is None:
        labels = DotaLabels(np.zeros((0, 8)), [], np.zeros(0, np.int64))
    value = np.asarray(padding_value, np.uint8).reshape(-1)
    if len(value) not in (1, img.shape[2]):
        raise ValueError(f'padding_value {list(value)}: give one value or '
                         f'{img.shape[2]} (BGR)')
    windows = sliding_windows(width, height, sizes, gaps, img_rate_thr)
    infos = []
    for (x0, y0, x1, y1), (idx, cut) in zip(
            windows.tolist(), window_objects(labels.polys, windows,
                                             iof_thr)):
        name = patch_name(image_id, x1 - x0, x0, y0)
        patch = img[y0:y1, x0:x1]
        if padding and patch.shape[:2] != (y1 - y0, x1 - x0):
            full = np.empty((y1 - y0, x1 - x0, img.shape[2]), np.uint8)
            full[...] = value
            full[:patch.shape[0], :patch.shape[1]] = patch
            patch = full
        path = osp.join(out_dir, 'images', name + ext)
        if not cv2.imwrite(path, patch):
            raise ConversionError(f'{path}: OpenCV cannot write the patch')
        write_dota_labels(
            osp.join(out_dir, 'annfiles', name + '.txt'),
            labels.polys[idx] - np.tile([x0, y0], 4),
            [labels.labels[i] for i in idx],
            np.where(cut, TRUNCATED, labels.difficult[idx]))
        infos.append(dict(id=name, ori_id=image_id, x_start=x0, y_start=y0,
                          width=patch.shape[1], height=patch.shape[0],
                          filename=name + ext, objects=len(idx),
                          cut=int(cut.sum())))
    return infos


def _split_one(job: Tuple[str, Optional[str], str], out_dir: str,
               classes: Optional[Sequence[str]], **kwargs) -> dict:
    img_path, ann_path, image_id = job
    labels, missing = None, False
    if ann_path is not None:
        if osp.isfile(ann_path):
            labels = read_dota_labels(ann_path, classes)
        else:
            missing = True  # the script's rule: an image without objects
    patches = split_image(img_path, out_dir, labels, image_id, **kwargs)
    return dict(image=img_path, patches=patches, missing=missing,
                objects=0 if labels is None else len(labels.labels))


def split_dota(img_dirs: Sequence[str],
               out_dir: str,
               ann_dirs: Optional[Sequence[Optional[str]]] = None,
               sizes: Sequence[int] = (SIZE, ),
               gaps: Sequence[int] = (GAP, ),
               rates: Sequence[float] = (1.0, ),
               img_rate_thr: float = IMG_RATE_THR,
               iof_thr: float = IOF_THR,
               padding: bool = True,
               padding_value: Union[int, Sequence[int]] = PADDING_VALUE,
               ext: str = '.png',
               classes: Optional[Sequence[str]] = None,
               max_pixels: Optional[int] = MAX_PIXELS,
               nproc: int = 1,
               log=print) -> dict:
    """Split folders of DOTA images and labels into patches (mmrotate's
    ``img_split.py``; the module's rules).

    Args:
        img_dirs (list[str]): folders of images.
        out_dir (str): a new (or empty) folder; writes ``images/`` and
            ``annfiles/`` (``DOTADataset(ann_file='annfiles/',
            data_prefix=dict(img_path='images/'))``).
        ann_dirs (list[str | None], optional): the label folder of each
            image folder (``P0001.png`` -> ``P0001.txt``; a missing file is
            an image without objects, as in the script); None: no labels
            (a test set).
        sizes, gaps (list[int]): window sides and gaps in px, one gap per
            side; rates (list[float]): windows of ``int(size / rate)``
            (and gaps of ``int(gap / rate)``) for each rate. Several sizes
            or several rates, not both.
        img_rate_thr, iof_thr, padding, padding_value, ext, max_pixels:
            see :func:`split_image`.
        classes (list[str], optional): refuse labels of other classes.
        nproc (int): images split in parallel processes.
        log (callable): one line per image.

    Returns:
        dict: ``images``, ``patches`` (lists of :func:`split_image`'s
        dicts), ``report`` (Counter), ``img_dir``, ``ann_dir``.
    """
    if ann_dirs is not None and len(ann_dirs) != len(img_dirs):
        raise ConversionError(f'{len(img_dirs)} image folders and '
                              f'{len(ann_dirs)} label folders: give one '
                              'label folder per image folder')
    if len(sizes) != len(gaps):
        raise ConversionError(f'{len(sizes)} sizes and {len(gaps)} gaps: '
                              'give one gap per size')
    if len(sizes) > 1 and len(rates) > 1:
        raise ConversionError('give several sizes or several rates, not '
                              'both (as mmrotate\'s img_split.py)')
    if any(r <= 0 for r in rates):
        raise ConversionError(f'rates {list(rates)}: give positive rates')
    if not 0 <= iof_thr <= 1:
        raise ConversionError(f'iof_thr {iof_thr}: give a fraction in '
                              '[0, 1]')
    win_sizes = [int(s / r) for r in rates for s in sizes]
    win_gaps = [int(g / r) for r in rates for g in gaps]
    for s, g in zip(win_sizes, win_gaps):
        if not 0 <= g < s:
            raise ConversionError(
                f'window side {s} px and gap {g} px: the gap must be >= 0 '
                'and smaller than the side')
    jobs, seen = [], {}
    for k, img_dir in enumerate(img_dirs):
        if not osp.isdir(img_dir):
            raise ConversionError(f'{img_dir}: no such image folder')
        ann_dir = None if ann_dirs is None else ann_dirs[k]
        if ann_dir is not None and not osp.isdir(ann_dir):
            raise ConversionError(f'{ann_dir}: no such label folder')
        for f in sorted(os.listdir(img_dir)):
            if not has_image_ext(f):
                continue
            image_id = osp.splitext(f)[0]
            if image_id in seen:
                raise ConversionError(
                    f'{osp.join(img_dir, f)} and {seen[image_id]}: two '
                    f'images named {image_id!r}; their patches would '
                    'overwrite each other')
            seen[image_id] = osp.join(img_dir, f)
            jobs.append((osp.join(img_dir, f), None if ann_dir is None else
                         osp.join(ann_dir, image_id + '.txt'), image_id))
    if not jobs:
        raise ConversionError(f'no image in {", ".join(img_dirs)}')
    if osp.isdir(out_dir) and os.listdir(out_dir):
        raise ConversionError(f'{out_dir}: the folder exists and is not '
                              'empty; give a new one')
    for sub in ('images', 'annfiles'):
        os.makedirs(osp.join(out_dir, sub), exist_ok=True)
    worker = partial(_split_one, out_dir=out_dir, classes=classes,
                     sizes=win_sizes, gaps=win_gaps,
                     img_rate_thr=img_rate_thr, iof_thr=iof_thr,
                     padding=padding, padding_value=padding_value, ext=ext,
                     max_pixels=max_pixels)
    if nproc > 1:
        from multiprocessing import Pool
        with Pool(min(nproc, len(jobs))) as pool:
            done = pool.imap(worker, jobs)
            results = _logged(done, len(jobs), log)
    else:
        results = _logged(map(worker, jobs), len(jobs), log)
    report = Counter()
    for r in results:
        report['images'] += 1
        report['patches'] += len(r['patches'])
        report['objects in the images'] += r['objects']
        report['objects in the patches'] += sum(p['objects']
                                                for p in r['patches'])
        report['of which cut by a patch edge (difficult 2)'] += sum(
            p['cut'] for p in r['patches'])
        report['images without a label file (no objects)'] += r['missing']
    return dict(images=[r['image'] for r in results],
                patches=[p for r in results for p in r['patches']],
                report=report, img_dir=osp.join(out_dir, 'images'),
                ann_dir=osp.join(out_dir, 'annfiles'))


# the keys of mmrotate's split_configs/*.json: type, and whether a list
_CONFIG_KEYS = {
    'nproc': (int, False), 'img_dirs': (str, True), 'ann_dirs': (str, True),
    'sizes': (int, True), 'gaps': (int, True), 'rates': (float, True),
    'img_rate_thr': (float, False), 'iof_thr': (float, False),
    'no_padding': (bool, False), 'padding_value': (int, True),
    'save_dir': (str, False), 'save_ext': (str, False)
}


def _is_a(value, kind: type) -> bool:
    """JSON's types: an int is a float; a bool is neither."""
    if kind is bool or isinstance(value, bool):
        return kind is bool and isinstance(value, bool)
    if kind is float:
        return isinstance(value, (int, float))
    return isinstance(value, kind)


def load_split_config(path: str, max_bytes: int = 2**20) -> dict:
    """Read one of mmrotate's split configs (``split_configs/ss_trainval.
    json``: ``img_dirs``, ``sizes``, ``gaps``, ``rates``, ...), checking
    its keys and value types.

    Returns:
        dict: its items, the names of ``img_split.py``'s options.

    Raises:
        ConversionError: not a JSON object of those keys, or too large.
    """
    import json
    if not osp.isfile(path):
        raise ConversionError(f'{path}: no such split config')
    if osp.getsize(path) > max_bytes:
        raise ConversionError(f'{path}: over {max_bytes} bytes; a split '
                              'config is a small JSON object')
    try:
        with open(path, encoding='utf-8') as f:
            cfg = json.load(f)
    except (ValueError, OSError) as e:
        raise ConversionError(f'{path}: not a JSON file ({e})') from None
    if not isinstance(cfg, dict):
        raise ConversionError(f'{path}: expected a JSON object of '
                              f'{sorted(_CONFIG_KEYS)}')
    unknown = sorted(set(cfg) - set(_CONFIG_KEYS))
    if unknown:
        raise ConversionError(f'{path}: unknown keys {unknown}; a split '
                              f'config has {sorted(_CONFIG_KEYS)}')
    for key, value in cfg.items():
        kind, is_list = _CONFIG_KEYS[key]
        items = value if is_list and isinstance(value, list) else [value]
        if (is_list and not isinstance(value, list)) or not all(
                _is_a(v, kind) or (key == 'ann_dirs' and v is None)
                for v in items):
            raise ConversionError(
                f'{path}: {key} is {value!r}; give '
                + (f'a list of {kind.__name__}' if is_list else
                   f'a {kind.__name__}'))
    return cfg


def _logged(results, total: int, log) -> List[dict]:
    out = []
    for r in results:
        out.append(r)
        log(f'({len(out)}/{total}) {r["image"]}: {r["objects"]} objects, '
            f'{len(r["patches"])} patches')
    return out


def _numpy(x) -> np.ndarray:
    return x.detach().cpu().numpy() if hasattr(x, 'detach') else \
        np.asarray(x)


def merge_patch_results(results: Sequence[dict],
                        iou_thr: float = MERGE_IOU) -> Dict[str, dict]:
    """Detections of patches -> detections of their whole images
    (mmrotate's ``DOTAMetric.merge_results``; see the module docstring).

    Args:
        results (list[dict]): per patch: ``img_id`` (its name,
            ``{image}__{size}__{x}___{y}``), ``bboxes`` (N x 5 rotated
            ``(cx, cy, w, h, angle)`` in pixels of the patch, radians),
            ``scores`` (N,) and ``labels`` (N,) int; arrays or tensors (the
            dicts ``DOTAMetric.process`` keeps).
        iou_thr (float): the rotated NMS's IoU threshold.

    Returns:
        dict: image id -> dict of ``bboxes`` (K x 5 float64, pixels of the
        image), ``scores`` (K,) float64 and ``labels`` (K,) int64: class
        by class (increasing label), each by decreasing score.
    """
    import torch
    from mmcv.ops import nms_rotated
    parts = defaultdict(list)
    for r in results:
        image_id, x, y = parse_patch_name(r['img_id'])
        boxes = _numpy(r['bboxes']).reshape(-1, 5)
        shifted = boxes.copy()
        # the metric adds the offset in the boxes' dtype (float32)
        shifted[:, :2] += np.array([x, y], dtype=boxes.dtype)
        parts[image_id].append((shifted, _numpy(r['scores']).reshape(-1),
                                _numpy(r['labels']).reshape(-1)))
    out = {}
    for image_id, items in parts.items():
        # the metric's concatenation with the labels makes them float64
        boxes = np.concatenate([b for b, _, _ in items]).astype(np.float64)
        scores = np.concatenate([s for _, s, _ in items]).astype(np.float64)
        labels = np.concatenate([lab for _, _, lab in items]).astype(
            np.int64)
        keep_boxes, keep_scores, keep_labels = [], [], []
        for c in np.unique(labels):
            sel = labels == c
            dets, _ = nms_rotated(torch.from_numpy(boxes[sel]),
                                  torch.from_numpy(scores[sel]), iou_thr)
            dets = dets.numpy()
            keep_boxes.append(dets[:, :5])
            keep_scores.append(dets[:, 5])
            keep_labels.append(np.full(len(dets), c, np.int64))
        out[image_id] = dict(
            bboxes=np.concatenate(keep_boxes).reshape(-1, 5)
            if keep_boxes else np.zeros((0, 5)),
            scores=np.concatenate(keep_scores) if keep_scores else
            np.zeros(0),
            labels=np.concatenate(keep_labels) if keep_labels else
            np.zeros(0, np.int64))
    return out
